"""Per-process state of the tasks: the thread budget of a task on a Dask worker, and the
predictors loaded in this process (a worker serving many slides loads the weights once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histotile.workflows.options import ModelUse


def set_threads() -> None:
    """Keep a task within its worker's share of the cores. On a Dask worker running N
    tasks at once, each may use cores // N threads (unless HISTOTILE_THREADS says
    otherwise): OpenCV, torch and histotile's own reader and writer threads follow it."""
    import os
    import sys

    from histotile._threads import ENVIRONMENT, available_cores, thread_budget

    if not os.environ.get(ENVIRONMENT):
        try:
            from distributed import get_worker

            slots = int(getattr(get_worker(), "nthreads", 1) or 1)
        except (ImportError, ValueError):
            return  # not on a cluster: the whole machine is ours
        os.environ[ENVIRONMENT] = str(max(1, available_cores() // slots))
    threads = thread_budget()
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


_PREDICTORS: dict[str, Any] = {}


def load_predictor(model_dir: str | Path, use: ModelUse | None = None):
    """A Predictor per model folder and :class:`ModelUse` (batch size, engine, test-time
    augmentation), kept per process: a worker serving many slides loads the weights
    once."""
    from histotile.models import Predictor

    use = use or ModelUse()
    key = f"{Path(model_dir).resolve()}|{use.batch_size}|{use.engine}|{use.tta}"
    if key not in _PREDICTORS:
        _PREDICTORS[key] = Predictor(model_dir, batch_size=use.batch_size, engine=use.engine,
                                     tta=use.tta)
        set_threads()  # torch is loaded now: give it the task's thread budget too
    return _PREDICTORS[key]
