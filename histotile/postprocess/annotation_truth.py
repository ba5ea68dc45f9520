"""The truth of each predicted tile, from an annotation: the tile boxes, the labelling
settings (the model's tiling settings with the positive and default class) and the
annotation loaded for them. Shared by the scoring (:mod:`~histotile.postprocess.evaluation`)
and the pictures (:mod:`~histotile.postprocess.evaluation_pictures`), so both label a tile
as training did."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from histotile.errors import ConfigError
from histotile.postprocess.predictions import SlidePredictions


def tile_boxes(predictions: SlidePredictions) -> np.ndarray:
    """The predicted tiles as level-0 boxes, int64 (N, 4): x, y, width, height."""
    tiles = predictions.tiles
    extent = tiles["extent"].to_numpy(np.int64)
    return np.stack([tiles["x"].to_numpy(np.int64), tiles["y"].to_numpy(np.int64),
                     extent, extent], axis=1) if len(tiles) else np.zeros((0, 4), np.int64)


def labelling_settings(predictions: SlidePredictions, *, positive_class: str,
                       min_label_fraction: float | None = None,
                       default_class: str | None = None,
                       palette: dict[str, tuple[int, int, int]] | None = None):
    """The tiling settings that label tiles from an annotation for evaluation: those the
    predictions were made with (as in training), with the model's classes and any
    override given. Without saved settings, a painted overlay is read with the positive
    class painted green (the original workflow's convention).

    The default class (the truth of unannotated tiles) is never taken from the class
    order: ``default_class``, else the model card's (the predictions' model reference),
    else the saved tiling's explicit one, else, for two classes, the one that is not
    positive; otherwise :class:`ConfigError` asks for it."""

    from histotile.tiling import TilingSettings

    classes = tuple(predictions.classes)
    saved = dict(predictions.settings.get("tiling") or {})
    default = _default_class(predictions, saved, positive_class, default_class)
    if saved:
        saved["classes"] = list(classes)
        saved["palette"] = {k: v for k, v in (saved.get("palette") or {}).items()
                            if k in classes}
        saved["positive_class"] = None
        saved["default_class"] = default
        settings = TilingSettings.from_dict(saved)
    else:
        settings = TilingSettings(classes=classes, palette={positive_class: (0, 255, 0)},
                                  default_class=default)
    changes: dict[str, Any] = {}
    if min_label_fraction is not None:
        changes["min_label_fraction"] = float(min_label_fraction)
    if palette is not None:
        changes["palette"] = dict(palette)
    if not settings.palette and palette is None:
        changes["palette"] = {positive_class: (0, 255, 0)}
    settings = dataclasses.replace(settings, **changes) if changes else settings
    if settings.roles.default_class == positive_class and len(classes) > 1:
        raise ConfigError(f"the default class (the label of unannotated tiles) is the "
                          f"positive class {positive_class!r}; set default_class to the "
                          "negative class")
    return settings


def _default_class(predictions: SlidePredictions, saved: dict[str, Any],
                   positive_class: str, explicit: str | None) -> str:
    """The truth of unannotated tiles (see :func:`labelling_settings`)."""
    classes = tuple(predictions.classes)
    candidates = (explicit, (predictions.model or {}).get("default_class"),
                  saved.get("default_class"))
    for name in candidates:
        if name is not None:
            if name not in classes:
                raise ConfigError(f"default class {name!r} is not one of the model's "
                                  f"classes {list(classes)} (pass --default-class with one "
                                  "of them)")
            return str(name)
    if len(classes) == 2:
        return next(c for c in classes if c != positive_class)
    raise ConfigError(f"slide {predictions.slide_name!r}: the model does not record which "
                      f"of {list(classes)} unannotated tiles belong to; pass "
                      "--default-class (default_class=...) to evaluate")


def resolve_annotation(annotation: Any, settings) -> Any:
    """A loaded annotation (a path is loaded through the tiling stage)."""
    if isinstance(annotation, (str, Path)):
        from histotile.tiling import load_annotation

        return load_annotation(annotation, palette=settings.palette,
                               classes=tuple(settings.classes))
    return annotation
