"""Per-slide tasks: module-level functions of paths and plain settings dicts, so that a
Dask worker can run them from nothing but their arguments. Each returns a
:class:`~histotile.workflows.report.SlideRecord` as a dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histotile.wsi import open_slide


def slide_info(path: str | Path) -> dict[str, Any]:
    """A slide's metadata as plain data (what ``histotile info`` prints)."""
    with open_slide(path) as slide:
        return {
            "path": str(slide.path),
            "name": slide.name,
            "vendor": slide.vendor,
            "dimensions": list(slide.dimensions),
            "mpp": slide.mpp,
            "objective_power": slide.objective_power,
            "levels": [
                {"level": i, "width": w, "height": h, "downsample": d,
                 "mpp": slide.level_mpp(i)}
                for i, ((w, h), d) in enumerate(zip(slide.level_dimensions,
                                                    slide.level_downsamples))
            ],
            "associated_images": slide.associated_images,
        }


# -- shared helpers ---------------------------------------------------------------------

def _set_threads() -> None:
    """Inside a Dask worker, use the thread budget the cluster gave (HISTOTILE_THREADS)."""
    import os

    threads = os.environ.get("HISTOTILE_THREADS")
    if threads:
        import cv2

        cv2.setNumThreads(int(threads))
        if "torch" in __import__("sys").modules:
            import torch

            torch.set_num_threads(int(threads))


_PREDICTORS: dict[str, Any] = {}


def load_predictor(model_dir: str | Path, batch_size: int | None = None):
    """A Predictor per model folder, kept per process: a worker serving many slides loads
    the weights once."""
    from histotile.models import Predictor

    key = f"{Path(model_dir).resolve()}|{batch_size}"
    if key not in _PREDICTORS:
        _predictor = Predictor(model_dir, batch_size=batch_size)
        _PREDICTORS[key] = _predictor
    return _PREDICTORS[key]


def positive_class(classes: list[str], card: dict[str, Any], requested: str | None) -> str:
    """The class heatmaps and decisions are about: ``requested``, else the model card's
    positive class, else the second of two classes."""
    from histotile.errors import ModelError

    if requested is not None:
        if requested not in classes:
            raise ModelError(f"class {requested!r} is not one of the model's classes "
                             f"{classes} (choose --class among them)")
        return requested
    declared = card.get("positive_class")
    if declared in classes:
        return declared
    if len(classes) == 2:
        return classes[1]
    raise ModelError(f"the model has {len(classes)} classes {classes}: choose the one to "
                     "show with --class")


def class_fractions(table, classes: list[str]) -> dict[str, float]:
    """Share of tiles whose most probable class is each class."""
    import numpy as np

    if len(table) == 0:
        return dict.fromkeys(classes, 0.0)
    probabilities = table[[f"prob_{c}" for c in classes]].to_numpy()
    winners = np.bincount(probabilities.argmax(axis=1), minlength=len(classes))
    return {c: float(n) / len(table) for c, n in zip(classes, winners)}
