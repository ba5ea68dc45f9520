"""Measuring a benchmark stage: wall and CPU time of the section it times, and the peak
memory of its process."""

from __future__ import annotations

import resource
import time


class Meter:
    """Accumulates wall and CPU seconds (this process, its threads and its finished child
    processes) over the ``with`` blocks it times."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    @staticmethod
    def _cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def __enter__(self) -> Meter:
        self._wall, self._cpu_start = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds += time.perf_counter() - self._wall
        self.cpu_seconds += self._cpu() - self._cpu_start


def own_peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB. Linux's ``VmHWM`` starts afresh at
    exec; ``ru_maxrss`` does not (a child inherits the high-water mark of the process that
    started it, which would charge every stage with the benchmark runner's memory)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
