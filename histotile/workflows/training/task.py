"""The ``train`` command's task: one :class:`~histotile.models.TrainSettings`, built once at
the edge (the CLI, the API), trained into a model folder with the console's progress and
summary; and :class:`TrainPlacement`, where that training runs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histotile._settings import refuse_unknown
from histotile.errors import ConfigError
from histotile.models.settings import DDP_TIMEOUT_S, TrainSettings
from histotile.workflows.tasks.execution import Execution


@dataclass(frozen=True)
class TrainPlacement:
    """Where a training runs: the ``train`` options that change where the work happens,
    never the model (the card records them under ``execution``).

    Attributes:
        workers: train the folds (then the final model) as tasks on a local Dask cluster
            of this many worker processes (None: in this process).
        scheduler: train the folds on a running Dask cluster (``tcp://host:8786``).
        retries: extra attempts for a fold whose Dask worker crashed.
        ddp: train each model data-parallel on this many processes of this machine
            (torchrun; gloo on CPU, NCCL on CUDA; None: one process).
        ddp_timeout: seconds a rank waits for the others before the job fails.
    """

    workers: int | None = None
    scheduler: str | None = None
    retries: int = Execution.retries
    ddp: int | None = None
    ddp_timeout: float = DDP_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"retries={self.retries}: must be 0 or more")
        if self.ddp is not None and self.ddp < 1:
            raise ConfigError(f"ddp={self.ddp}: the number of processes must be 1 or more")
        if not self.ddp_timeout > 0:
            raise ConfigError(f"ddp_timeout={self.ddp_timeout}: must be a number of seconds "
                              "> 0")
        if self.ddp and self.execution().distributed:
            raise ConfigError(DDP_AND_DASK)

    def execution(self) -> Execution:
        """Where the folds run (a Dask cluster with ``workers`` or ``scheduler``)."""
        return Execution(scheduler=self.scheduler, workers=self.workers,
                         retries=self.retries)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainPlacement:
        """From option names and values; unknown names are a :class:`ConfigError`."""
        refuse_unknown(cls, values, "training placement")
        return cls(**values)


DDP_AND_DASK = ("--ddp (or torchrun) trains one model on several processes; "
                "--workers/--scheduler spread the folds over a Dask cluster: choose one")


def train_task(data: str | Path, out_dir: str | Path, settings: TrainSettings, *,
               overwrite: bool = False, show_progress: bool = True,
               fold_runner: Any = None) -> Any:
    """Train (see :func:`histotile.models.train`) with the console's progress bars, then
    print the data's notes, the summary table and the time taken (``show_progress``).
    ``fold_runner``: where the folds train (default: in this process). Returns the
    :class:`~histotile.models.TrainResult`."""
    from histotile.models import train

    if not show_progress:
        return train(data, out_dir, settings, overwrite=overwrite, fold_runner=fold_runner)
    from rich.markup import escape

    from histotile.workflows.cli.console import out, training_progress, training_summary

    started = time.perf_counter()
    with training_progress() as progress:
        result = train(data, out_dir, settings, progress=progress, overwrite=overwrite,
                       fold_runner=fold_runner)
    for note in (result.card.get("data") or {}).get("notes") or []:
        out.print(f"note: {escape(str(note))}")  # skipped images, left-out tiles
    out.print(training_summary(result))
    out.print(f"model written to {escape(str(out_dir))} in "
              f"{time.perf_counter() - started:.0f} s")
    return result
