"""Cross-validation folds, and then the final model, as tasks on a Dask cluster.

:class:`DaskFolds` is a fold runner for :func:`histotile.models.train`: each
:class:`~histotile.models.folds.FoldJob` becomes one task. Only the data's path (or the
manifest DataFrame), the resolved :class:`~histotile.models.TrainSettings`, whole, and row
indices travel (one :class:`FoldTask`); the worker reads the
tiles itself, so the data must be visible to every worker at the same path, as for
``histotile run``. Retries follow :mod:`histotile.workflows.tasks.execution`: a task that
crashes, or whose worker dies, is retried (``retries``); a histotile error (bad data, bad
settings) fails at once, since it would fail the same way again; a fold that keeps
failing fails the whole command with a message naming it. Each fold trains from its own
seed and rows, so the results equal those of the sequential run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from histotile._settings import required
from histotile.errors import HistotileError, ModelError
from histotile.models.settings import TrainSettings
from histotile.workflows.tasks.execution import Execution, open_client

log = logging.getLogger("histotile.models")


class _Lines(logging.Handler):
    """Collects a task's log lines, which go back to the training log of the run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass(frozen=True)
class FoldTask:
    """What one fold's task on the cluster gets (it pickles; the tiles do not travel).

    Attributes:
        data: the manifest's or image folder's absolute path, or the manifest DataFrame.
        settings: the run's resolved training settings.
        classes, tiles: the client's classes and tile count, which the worker's table
            must match (the same data at the same path).
        job: the fold (or final model) to train: a :class:`~histotile.models.folds.FoldJob`.
    """

    data: str | pd.DataFrame
    settings: TrainSettings
    classes: list[str]
    tiles: int
    job: Any


def fold_task(task: FoldTask) -> tuple[str, Any, list[str]]:
    """On a worker: rebuild the tile table, train one job, return
    ``("ok", FoldResult, log lines)``, or ``("error", HistotileError, log lines)`` for an
    error that a retry would repeat. Anything else raises, so Dask retries it."""
    from histotile._threads import thread_budget
    from histotile.models.folds import FoldSetup, load_table, train_fold

    handler, models_log = _Lines(), logging.getLogger("histotile.models")
    level = models_log.level
    models_log.addHandler(handler)
    models_log.setLevel(logging.INFO)
    try:
        # One torch thread per core this worker was given; tiles are read in the task
        # (Dask worker processes are daemons and may not start DataLoader processes).
        threads = min(required(task.settings.threads, "threads"), thread_budget())
        settings = dataclasses.replace(task.settings, workers=0, threads=threads)
        table = load_table(task.data, settings)
        if table.classes != task.classes or len(table.frame) != task.tiles:
            raise ModelError(f"{table.source}: this worker sees {len(table.frame)} tiles of "
                             f"classes {table.classes}, the client {task.tiles} of "
                             f"{task.classes}; the data must be the same file at the "
                             "same path on every worker")
        setup = FoldSetup(task.data, settings, table, rows=task.job.rows())
        try:
            _set_torch_threads(threads)
            result = train_fold(setup, task.job, lambda event, **info: None)
        finally:
            setup.close()
        return "ok", result, handler.lines
    except HistotileError as error:
        return "error", error, handler.lines
    finally:
        models_log.removeHandler(handler)
        models_log.setLevel(level)


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))


class DaskFolds:
    """Fold runner on a Dask cluster; a context manager that holds the client (and a
    local cluster it started) for the run.

    Example::

        with DaskFolds(Execution(workers=2)) as runner:
            train("tiles/manifest.csv", "model/", settings, fold_runner=runner)
    """

    def __init__(self, execution: Execution) -> None:
        if not execution.distributed:
            raise ValueError("DaskFolds needs Execution(workers=N) or Execution(scheduler=...)")
        self.execution = execution
        self._stack: contextlib.ExitStack | None = None
        self.client: Any = None

    def __enter__(self) -> DaskFolds:
        self._stack = contextlib.ExitStack()
        self.client = self._stack.enter_context(open_client(self.execution))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack, self.client = None, None

    def describe(self) -> dict[str, Any]:
        e = self.execution
        return {"engine": "dask", "world_size": 1,
                "cluster": e.scheduler or f"local, {e.workers} worker process(es)",
                "retries": e.retries}

    def __call__(self, setup, jobs: list, progress) -> list:
        if self.client is None:
            raise RuntimeError("use DaskFolds as a context manager: with DaskFolds(...) as r")
        from distributed import as_completed

        data = setup.data
        if not isinstance(data, pd.DataFrame):
            data = str(Path(data).resolve())
        run = uuid.uuid4().hex[:8]
        futures = {}
        for index, job in enumerate(jobs):
            task = FoldTask(data, setup.settings, setup.table.classes,
                            int(len(setup.table.frame)), job)
            future = self.client.submit(fold_task, task, pure=False,
                                        retries=self.execution.retries,
                                        key=f"histotile-train-{job.tag}-{run}")
            futures[future] = index
            progress("fold_start", tag=job.tag, fold=job.fold, folds=job.folds,
                     epochs=job.epochs, n_train=int(job.train_rows.size),
                     n_val=0 if job.val_rows is None else int(job.val_rows.size))
        results: list[Any] = [None] * len(jobs)
        try:
            for future in as_completed(futures):
                job = jobs[futures[future]]
                results[futures[future]] = self._collect(future, job, progress)
        finally:
            for future in futures:
                future.cancel()
        return results

    def _collect(self, future: Any, job: Any, progress) -> Any:
        try:
            status, value, lines = future.result()
        except Exception as error:  # noqa: BLE001 - KilledWorker, crashes after retries
            raise ModelError(
                f"{job.tag}: failed on the Dask cluster after {self.execution.retries} "
                f"retries ({type(error).__name__}: {error}); see the workers' logs, or "
                "train without --workers/--scheduler to see the error here") from None
        for line in lines:
            log.info("[%s on the cluster] %s", job.tag, line)
        if status == "error":
            raise value
        for record in value.fitted.history:
            progress("epoch", tag=job.tag, epochs=job.epochs,
                     losses={"train": record.get("train_loss"), "val": record.get("val_loss")},
                     **record)
        if job.val_rows is not None:
            progress("fold_end", tag=job.tag, fold=job.fold, metrics=value.metrics)
        elif value.metrics is not None:
            progress("test", metrics=value.metrics)
        return value


@contextlib.contextmanager
def fold_runner(execution: Execution | None) -> Iterator[Any]:
    """A :class:`DaskFolds` for a distributed ``execution``, else None (in-process)."""
    if execution is None or not execution.distributed:
        yield None
        return
    with DaskFolds(execution) as runner:
        yield runner
