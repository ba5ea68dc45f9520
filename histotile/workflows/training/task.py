"""The ``train`` command's task: training settings from CLI-style options."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def train_task(data: str | Path, out_dir: str | Path, options: dict[str, Any],
               show_progress: bool = True, fold_runner: Any = None):
    """Train from CLI-style options (see :func:`histotile.models.train`)."""
    import dataclasses

    from histotile.models import TrainSettings, train

    # Every training setting is accepted (flags and --config alike).
    names = {f.name for f in dataclasses.fields(TrainSettings)}
    values = {k: v for k, v in options.items() if k in names and v is not None}
    if options.get("patch_size"):
        values["patchify"] = True
    if options.get("no_augment"):
        values["augment"] = "none"
    settings = TrainSettings(**values)
    if not show_progress:
        return train(data, out_dir, settings, overwrite=bool(options.get("overwrite")),
                     fold_runner=fold_runner)
    from histotile.workflows.cli.console import training_progress

    with training_progress() as progress:
        return train(data, out_dir, settings, progress=progress,
                     overwrite=bool(options.get("overwrite")), fold_runner=fold_runner)
