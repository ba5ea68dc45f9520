"""Shared inputs for the per-stage benchmarks: the synthetic 5-gigapixel slide and its
overlay, written once and cached under ``benchmarks/_work/`` (git-ignored) by the same
code as ``histotile bench`` (so both share the cache)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from histotile._threads import available_cores
from histotile.workflows.benchmark.inputs import TUMOUR_GREEN, BenchInput, cached_input
from histotile.workflows.benchmark.meter import own_peak_rss_mib
from histotile.workflows.benchmark.suite import FULL_SIZE

WORK = Path(__file__).resolve().parent / "_work"
# The scale the issues name: 100,000 x 50,000 px (5 GP) at 0.5 um/px (20x), 30 % tissue.
BIG_SIZE = FULL_SIZE
__all__ = ["BIG_SIZE", "TUMOUR_GREEN", "WORK", "big_input", "cpu_count", "peak_rss_mib"]


def big_input() -> BenchInput:
    """The cached 5-GP slide and its painted overlay (1/16 resolution).

    A missing one is written by a child process: on Linux a process's peak memory
    (``ru_maxrss``) carries over into the processes it starts, so a benchmark that wrote
    the slide itself would report that peak for every stage it measures in a child."""
    here = str(Path(__file__).resolve().parent)
    subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {here!r}); "
                    "import _common; _common.write_big_input()"], check=True)
    return cached_input(WORK, *BIG_SIZE, seed=7)


def write_big_input() -> None:
    """Write the cached input when it is missing (saying how long it took)."""
    result = cached_input(WORK, *BIG_SIZE, seed=7)
    if result.seconds_written > 0.5:
        print(f"(wrote {result.slide.name} in {result.seconds_written:.0f} s)", flush=True)


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory in MiB of this process (its own ``VmHWM``, see
    :func:`~histotile.workflows.benchmark.meter.own_peak_rss_mib`), or of its largest
    waited-for child (``ru_maxrss``, which counts what the child inherited: hence
    :func:`big_input` writes in a child of its own)."""
    if not children:
        return own_peak_rss_mib()
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def cpu_count() -> int:
    return available_cores()
