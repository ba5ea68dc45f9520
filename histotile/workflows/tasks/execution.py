"""Running one task per slide in-process, on a local Dask cluster, or on an existing one.

Only paths and settings (plain dicts) travel to workers; pixels never do. A task returns
a :class:`SlideRecord` as a dict. Errors histotile raises on purpose are turned into
``failed`` records inside the task (retrying them would fail the same way); anything
else, including a worker that dies, is retried up to ``retries`` times on another
worker and then reported as failed, so a run always finishes with a full report.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histotile._threads import available_cores
from histotile.errors import ConfigError, HistotileError
from histotile.workflows.tasks.inputs import slide_stem
from histotile.workflows.tasks.report import FAILED, OK, SKIPPED, SlideRecord

log = logging.getLogger(__name__)

Task = Callable[..., dict]
Progress = Callable[[SlideRecord], None]


@dataclass
class Execution:
    """Where per-slide tasks run.

    Attributes:
        scheduler: address of a running Dask scheduler (``tcp://host:8786``), or None.
        workers: start a local cluster of this many worker processes, or None.
        retries: extra attempts for a slide whose task crashed; also how many worker
            deaths a slide may cause on a local cluster (an existing cluster applies
            its scheduler's own ``distributed.scheduler.allowed-failures``, default 3).
        threads_per_worker: intra-op threads for torch/OpenCV inside each local worker
            (default: cores divided by workers, at least 1).
        connect_timeout: seconds to wait for the scheduler before giving up.
        region_megapixels: on a cluster, slides larger than this (level-0 megapixels) are
            predicted in parts of about this size, each a task on any worker.
    """

    scheduler: str | None = None
    workers: int | None = None
    retries: int = 2
    threads_per_worker: int | None = None
    connect_timeout: float = 30.0
    region_megapixels: float = 2000.0

    def __post_init__(self) -> None:
        if self.scheduler and self.workers:
            raise ConfigError("give either --scheduler (an existing Dask cluster) or --workers "
                              "(start a local one), not both")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")

    @property
    def distributed(self) -> bool:
        return bool(self.scheduler or self.workers)

    def parts(self) -> SlideParts:
        """How the per-slide tasks split a very large slide on this cluster."""
        return SlideParts(self.region_megapixels, self.retries)


@dataclass(frozen=True)
class SlideParts:
    """How a slide task predicts a very large slide on a cluster: in parts of about
    ``megapixels`` level-0 megapixels (None: never in parts), each part a task of its own
    with ``retries`` extra attempts (the run's ``--retries``, as for its slides)."""

    megapixels: float | None = None
    retries: int = Execution.retries


def guarded(task: Task, job: dict[str, Any]) -> dict:
    """Run ``task(**job)``, turning histotile errors into a failed record (no retry: the
    same input fails the same way). Other exceptions propagate, so Dask retries them.

    The job travels as one dict, never as keyword arguments of ``Client.submit``, whose
    own keywords (``workers``, ``resources``, ``key``...) would otherwise capture it."""
    started = time.perf_counter()
    slide_path = job["slide_path"]
    try:
        return task(**job)
    except HistotileError as error:
        return SlideRecord(slide=slide_stem(Path(slide_path)), path=str(slide_path),
                           status=FAILED, error=str(error),
                           seconds=time.perf_counter() - started).to_dict()


def run_tasks(task: Task, jobs: list[dict[str, Any]], execution: Execution | None = None,
              progress: Progress | None = None) -> list[SlideRecord]:
    """Run ``task(**job)`` for every job (each has a ``slide_path``); return the records
    in the order of ``jobs``."""
    execution = execution or Execution()
    if not execution.distributed:
        return [_record(_run_local(task, job), progress) for job in jobs]
    return _run_dask(task, jobs, execution, progress)


def _run_local(task: Task, job: dict[str, Any]) -> dict:
    try:
        return guarded(task, job)
    except Exception as error:
        log.debug("task failed", exc_info=True)
        return _failure(job, error)


def _failure(job: dict[str, Any], error: BaseException) -> dict:
    path = Path(job["slide_path"])
    message = f"{type(error).__name__}: {error}"
    if not isinstance(error, HistotileError):
        frames = traceback.extract_tb(error.__traceback__)
        if frames:
            where = frames[-1]
            message += f" (at {Path(where.filename).name}:{where.lineno})"
    return SlideRecord(slide=slide_stem(path), path=str(path), status=FAILED,
                       error=message).to_dict()


def _recomputed(result: dict) -> dict:
    """The record of a slide whose finished result was lost with its worker and computed
    again: the second run found the first's finished output folder and skipped, but the
    slide was done in this run (its stored record is the first run's), so it is ok. (A
    slide already finished before the run, whose skip was lost, is reported ok too: the
    outputs are the same either way.)"""
    return {**result, "status": OK, "skip_reason": None,
            "warning": "; ".join(filter(None, [result.get("warning"), (
                "its worker died after the slide finished; the record is the one its "
                "finished output folder holds")]))}


def _record(result: dict, progress: Progress | None) -> SlideRecord:
    record = SlideRecord(**result)
    if progress is not None:
        progress(record)
    return record


@contextlib.contextmanager
def open_client(execution: Execution) -> Iterator[Any]:
    """A ``distributed.Client`` on the cluster ``execution`` names (a local one it starts,
    or a running scheduler), configured for histotile's retry rules; closed on exit."""
    import dask
    from distributed import Client, LocalCluster

    cluster = None
    # A worker that dies mid-task counts as a failure of that task; after this many the
    # scheduler gives up on it (KilledWorker) instead of retrying forever. Saturation 1.0
    # keeps waiting slides on the scheduler, not queued on a worker: a worker that dies
    # then takes down only the slide it was running, never bystanders queued behind it.
    with dask.config.set({"distributed.scheduler.allowed-failures": execution.retries,
                          "distributed.scheduler.worker-saturation": 1.0}):
        if execution.workers:
            threads = execution.threads_per_worker or max(
                1, available_cores() // execution.workers)
            cluster = LocalCluster(
                n_workers=execution.workers, threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.ERROR,
                env={"OMP_NUM_THREADS": str(threads), "HISTOTILE_THREADS": str(threads),
                     "OMP_WAIT_POLICY": "PASSIVE"})
            address: LocalCluster | str | None = cluster
        else:
            address = execution.scheduler
        try:
            client = Client(address, timeout=f"{execution.connect_timeout}s")
        except OSError as error:
            if cluster is not None:
                cluster.close()
            raise ConfigError(f"cannot reach the Dask scheduler at {execution.scheduler}: "
                              f"{error} (start one with 'dask scheduler' and workers with "
                              "'dask worker ADDRESS', or use --workers N)") from None
        try:
            yield client
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


LOST_RESULT_WAITS = 3
"""How many times a slide whose finished result was lost with its worker is waited for
again (the scheduler recomputes it) before it is reported failed."""


def _run_dask(task: Task, jobs: list[dict[str, Any]], execution: Execution,
              progress: Progress | None) -> list[SlideRecord]:
    from distributed import as_completed

    with open_client(execution) as client:
        index_of: dict[str, int] = {}
        pending = as_completed()
        for index, job in enumerate(jobs):
            future = client.submit(guarded, task, job, pure=False,
                                   retries=execution.retries,
                                   key=f"histotile-{Path(job['slide_path']).name}-{index}")
            index_of[future.key] = index
            pending.add(future)
            del future  # only ``pending`` holds it, so releasing it below frees the result
        results: list[SlideRecord | None] = [None] * len(jobs)
        waits = dict.fromkeys(index_of, 0)
        for future in pending:
            index = index_of[future.key]
            try:
                result = future.result()
            except Exception as error:  # noqa: BLE001 - KilledWorker, crashes: report
                if future.status != "error" and waits[future.key] < LOST_RESULT_WAITS:
                    # Not the slide's failure: its result was lost between finishing and
                    # being read (the worker holding it died), and the scheduler computes
                    # it again. Wait for that, a bounded number of times.
                    waits[future.key] += 1
                    pending.add(future)
                    continue
                result = _failure(jobs[index], error)
            if waits[future.key] and result.get("status") == SKIPPED and not result.get("error"):
                result = _recomputed(result)
            # Release the finished slide at once: a result left on a worker that later
            # dies would be recomputed, and could fail with that worker's next task.
            future.release()
            del future
            results[index] = _record(result, progress)
        return [r for r in results if r is not None]
