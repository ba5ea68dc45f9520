"""Jobs started from the pages: ``histotile run`` on one slide the server already shows,
one job at a time in a background thread, its state polled by the page."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from histotile.workflows.options import Geometry
from histotile.workflows.slide_options import RunOptions

MAX_WAITING = 16


@dataclass
class Job:
    """One run. ``state``: queued, running, done or failed."""

    id: str
    slide: str
    state: str = "queued"
    stage: str = "waiting for the previous job"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    decision: str | None = None
    tiles_done: int | None = None
    tiles_total: int | None = None

    def report(self, stage: str, done: int, total: int) -> None:
        """``run_task``'s progress: the stage, and the tiles classified so far."""
        if stage == "predicting" and total:
            self.tiles_done, self.tiles_total = done, total
            self.stage = f"predicting: {done:,} of {total:,} tiles"
        else:
            self.stage = stage

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        end = self.finished or time.time()
        data["seconds"] = None if self.started is None else round(end - self.started, 2)
        return data


class JobsFull(Exception):
    """Too many jobs are waiting."""


class Jobs:
    """Runs ``run_task`` for slides into the results folder with the served model."""

    def __init__(self, results: Path, model: Path) -> None:
        self.results = Path(results)
        self.model = Path(model)
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="histotile-job")

    def start(self, slide: str, path: Path, annotation: Path | None,
              resolution: Geometry | None = None) -> Job:
        """Queue a run of ``path`` (``run``'s defaults); ``resolution``: a level or a
        magnification to predict at instead of the model card's."""
        with self._lock:
            waiting = sum(j.state in ("queued", "running") for j in self._jobs.values())
            if waiting >= MAX_WAITING:
                raise JobsFull(f"{waiting} jobs are waiting; try again when some finish")
            job = Job(id=f"job{next(self._ids)}", slide=slide)
            self._jobs[job.id] = job
        options = RunOptions(geometry=resolution or Geometry())
        self._pool.submit(self._run, job, path, annotation, options)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def _run(self, job: Job, path: Path, annotation: Path | None,
             options: RunOptions) -> None:
        from histotile.workflows.tasks.inputs import slide_stem
        from histotile.workflows.tasks.slide import run_task

        job.state, job.stage, job.started = "running", "starting", time.time()
        folder = self.results / slide_stem(path)
        new_folder = not folder.exists()
        try:
            self.results.mkdir(parents=True, exist_ok=True)
            record = run_task(str(path), str(self.results), str(self.model), options,
                              annotation=None if annotation is None else str(annotation),
                              progress=job.report)
            job.decision = record.get("decision")
            job.finished = time.time()
            job.state, job.stage = "done", "finished"
        except Exception as error:  # noqa: BLE001 - a failed job is reported, never raised
            # The state changes last: a client that sees "failed" finds the folder gone.
            if new_folder:
                _remove_if_only_state(folder)
            job.error = f"{type(error).__name__}: {error}"
            job.finished = time.time()
            job.state, job.stage = "failed", "failed"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _remove_if_only_state(folder: Path) -> None:
    """Remove the slide folder a failed job created when it holds nothing but histotile's
    hidden state files (``.histotile-run.json``, the lock): no result lost, no empty
    folder that looks like a started run left behind."""
    import shutil

    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    if all(e.name.startswith(".histotile") and e.is_file() for e in entries):
        shutil.rmtree(folder, ignore_errors=True)
