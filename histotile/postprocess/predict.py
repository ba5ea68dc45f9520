"""Slide prediction: stream a slide's tissue tiles through a model, no tile files.

The tiling stage's plan (:func:`histotile.tiling.plan_tiles`, the tiler's own) gives the
tiles touching tissue at the model's resolution and how each is judged tissue; its reader
reads them in large blocks; a reader thread fills a bounded queue with batches while the
model classifies the previous batch, so reading and inference overlap and memory stays
at a few batches whatever the slide size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from histotile._threads import thread_budget
from histotile.errors import ModelError
from histotile.postprocess.predictions import SlidePredictions, prob_column
from histotile.wsi import open_slide

if TYPE_CHECKING:
    from histotile.tiling import TilingSettings

Progress = Callable[[int, int], None]
"""``progress(done, total)``: tiles classified so far out of the slide's tissue tiles."""

DEFAULT_BATCH = 64
# Card entries copied into the predictions' model reference.
_CARD_KEYS = ("format", "format_version", "created", "architecture", "backend",
              "description", "classes", "tile_size", "weights_file")


@runtime_checkable
class TilePredictor(Protocol):
    """What :func:`predict_slide` needs of a model (``histotile.models.Predictor`` is
    one): class names, the tile side it takes, its card, and ``predict``."""

    tile_size: int
    card: dict[str, Any]

    @property
    def classes(self) -> Sequence[str]:
        """The class names (read only here: a list or a tuple)."""
        ...

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 (N, tile_size, tile_size, 3) -> float32 (N, len(classes))."""
        ...


def settings_from_card(predictor: TilePredictor) -> TilingSettings:
    """Tiling settings that cut tiles like the model's training tiles: the card's tiling
    settings and tile geometry (microns per tile pixel, or level-0 pixels per tile pixel
    when the slides had no mpp), no overlap, the model's tile size."""
    from histotile.tiling import TilingSettings

    geometry = predictor.card.get("tiling") or {}
    saved = geometry.get("settings")
    if saved and not set(saved) <= {f.name for f in dataclasses.fields(TilingSettings)}:
        # Not a slide tiling: an image folder's patchify settings, or synthetic tiles'
        # own geometry. Tiles are then cut from the card's tile size and resolution.
        saved = None
    if saved:
        settings = TilingSettings.from_dict(saved)
    else:
        classes = tuple(str(c) for c in predictor.classes)
        palette = {k: v for k, v in TilingSettings().palette.items() if k in classes}
        default = (predictor.card or {}).get("default_class")
        settings = TilingSettings(tile_size=int(predictor.tile_size), classes=classes,
                                  palette=palette,
                                  default_class=default if default in classes else None)
    changes: dict[str, Any] = {"tile_size": int(predictor.tile_size), "stride": None}
    tile_mpp = geometry.get("tile_mpp")
    tile_downsample = geometry.get("tile_downsample")
    if tile_mpp:
        changes.update(mpp=float(tile_mpp), magnification=None, level=None)
    elif tile_downsample is not None and abs(float(tile_downsample) - 1.0) < 1e-6:
        changes.update(level=0, mpp=None, magnification=None)
    elif not any((saved or {}).get(k) is not None for k in ("magnification", "mpp", "level")):
        warn_unknown_resolution(predictor)
    return dataclasses.replace(settings, **changes)


def warn_unknown_resolution(predictor: TilePredictor) -> None:
    """Warn that a card records no tiling resolution, so tiles are cut at level 0."""
    import warnings

    where = getattr(predictor, "model_dir", None) or "the model"
    warnings.warn(f"{where}: the model card records no tiling resolution (no tiling "
                  "settings, tile_mpp or tile_downsample), so tiles are cut at level 0 "
                  "(full resolution); if the model was trained on reduced tiles, say so with "
                  "--magnification, --mpp or --level, or retrain from a 'histotile tile' "
                  "manifest, whose settings the card records", UserWarning, stacklevel=3)


def model_reference(predictor: TilePredictor) -> dict[str, Any]:
    """The model's identity for the predictions' sidecar: its directory, selected card
    entries and a digest of the whole card."""
    card = dict(predictor.card or {})
    digest = hashlib.sha256(json.dumps(card, sort_keys=True, default=str).encode()
                            ).hexdigest()[:16]
    reference = {key: card[key] for key in _CARD_KEYS if key in card}
    # The class the model detects (heatmaps and decisions default to it) and the label
    # of unannotated tiles (evaluation's truth), as recorded; what an old card lacks is
    # None here and each stage applies (and reports) the documented default.
    from histotile.class_roles import Role, card_roles

    if card.get("classes"):
        roles = card_roles(card)
        reference["positive_class"] = roles.positive_class
        reference["default_class"] = (None if roles.assumes(Role.DEFAULT)
                                      else roles.default_class)
        reference["assumed"] = list(roles.assumed)
    model_dir = getattr(predictor, "model_dir", None)
    reference.update({"model_dir": None if model_dir is None else str(model_dir),
                      "name": card.get("name") or (Path(model_dir).name if model_dir
                                                   else card.get("architecture")),
                      "card_sha256": digest})
    return reference


def _check_predictor(predictor: Any) -> tuple[str, ...]:
    missing = [name for name in ("classes", "tile_size", "card", "predict")
               if not hasattr(predictor, name)]
    if missing:
        raise ModelError(f"{type(predictor).__name__} is not a predictor: it lacks "
                         f"{', '.join(missing)}; load one with histotile.models.Predictor"
                         "(model_dir)")
    classes = tuple(str(c) for c in predictor.classes)
    if not classes:
        raise ModelError(f"{type(predictor).__name__}: the model names no classes; its "
                         "card must list them")
    return classes


def predict_slide(
    slide_path: str | Path,
    predictor: TilePredictor,
    *,
    tiling: TilingSettings | None = None,
    batch_size: int | None = None,
    queue_size: int = 3,
    progress: Progress | None = None,
    part: tuple[int, int] | None = None,
    threshold: float | None = None,
) -> SlidePredictions:
    """Classify every tissue tile of a slide.

    Args:
        slide_path: the slide.
        predictor: the model (see :class:`TilePredictor`; e.g.
            ``histotile.models.Predictor(model_dir)``).
        tiling: how to cut tiles; default :func:`settings_from_card` (as in training).
            Tiles whose own tissue fraction (per pixel, as the tiler measures it) is
            below ``tiling.min_tissue`` are not predicted (they stay background in
            maps and heatmaps).
        batch_size: tiles per batch handed to the model (default: the predictor's
            ``batch_size`` attribute, else 64).
        queue_size: batches read ahead of the model (memory: about ``queue_size + 2``
            batches of tiles).
        progress: ``progress(tiles_done, tiles_total)`` after every batch.
        part: ``(index, count)``: predict only the ``index``-th of ``count`` contiguous,
            equal slices of the tissue tiles (raster order), so a very large slide can be
            spread over several workers; :func:`concat_predictions` of all the parts
            equals the whole slide's predictions.
        threshold: the positive-class tile threshold to record for later stages
            (default: the model card's operating point, else
            :data:`~histotile.models.operating_point.DEFAULT_TILE_THRESHOLD`); the sidecar's
            ``settings.threshold`` says which it was (``value``, ``source``).

    Returns:
        :class:`SlidePredictions`: x, y, extent (level-0 px), tissue_fraction and
        ``prob_<class>`` per tile, with the slide, settings and model reference.
    """
    from histotile.models.operating_point import tile_threshold
    from histotile.tiling import plan_tiles

    classes = _check_predictor(predictor)
    settings = tiling if tiling is not None else settings_from_card(predictor)
    if int(settings.tile_size) != int(predictor.tile_size):
        raise ModelError(f"the model takes {predictor.tile_size} px tiles but the tiling "
                         f"settings cut {settings.tile_size} px tiles; set tile_size="
                         f"{predictor.tile_size} (or omit tiling= to use the model card's)")
    batch_size = int(batch_size or getattr(predictor, "batch_size", None) or DEFAULT_BATCH)
    if batch_size < 1 or queue_size < 1:
        raise ModelError(f"batch_size={batch_size}, queue_size={queue_size}: both must be "
                         "at least 1")
    with open_slide(slide_path) as slide:
        plan = plan_tiles(slide, settings)
        grid = plan.grid.subset(_part(plan.candidates, part))
        probabilities = np.zeros((len(grid), len(classes)), np.float32)
        fraction = np.zeros(len(grid), np.float32)
        kept = np.zeros(len(grid), bool)
        for indices, fractions, result in _classify(slide, grid, plan, predictor, batch_size,
                                                    queue_size, len(classes), progress):
            probabilities[indices] = result
            fraction[indices] = fractions
            kept[indices] = True
        table = pd.DataFrame({"x": grid.xs[kept], "y": grid.ys[kept],
                              "extent": np.full(int(kept.sum()), grid.extent, np.int64),
                              "tissue_fraction": fraction[kept]})
        for column, name in enumerate(classes):
            table[prob_column(name)] = probabilities[kept, column]
        run = {"tiling": settings.to_dict(), "level": int(grid.level),
               "read_size": int(grid.read_size), "size": int(grid.size),
               "extent": int(grid.extent), "stride": int(grid.stride),
               "tissue_threshold": float(plan.threshold), "batch_size": batch_size,
               "engine": getattr(predictor, "engine", None),
               "tta": bool(getattr(predictor, "tta", False)),
               "temperature": getattr(predictor, "temperature", None),
               "threshold": tile_threshold(predictor.card, threshold).to_dict()}
        if part is not None:
            run["part"] = [int(part[0]), int(part[1])]
        return SlidePredictions(slide.name, str(slide_path), slide.dimensions, slide.mpp,
                                classes, table, run, model_reference(predictor))


def _part(candidates: np.ndarray, part: tuple[int, int] | None) -> np.ndarray:
    """The ``part = (index, count)`` contiguous slice (raster order) of the plan's
    candidate tiles; all of them when ``part`` is None."""
    if part is None:
        return candidates
    index, count = int(part[0]), int(part[1])
    if not 0 <= index < count:
        raise ValueError(f"part={part}: need 0 <= index < count")
    bounds = np.linspace(0, len(candidates), count + 1).round().astype(np.int64)
    return candidates[bounds[index]:bounds[index + 1]]


_DONE = object()


def _classify(slide, grid, plan, predictor: TilePredictor, batch_size: int,
              queue_size: int, num_classes: int, progress: Progress | None):
    """Yield (indices, tissue fractions, probabilities) of each batch's tissue tiles (the
    plan's rule: as the tiler judges them); the others are not classified. A reader thread
    keeps up to ``queue_size`` batches of tiles ready while the model works, unless this
    process may use only one core (a one-thread Dask worker), where reading and
    classifying take turns instead of competing for the core."""
    total, done = len(grid), 0
    with _tile_source(slide, grid, batch_size, queue_size, plan.block_size) as source:
        for indices, tiles in source:
            fractions = plan.tissue_fractions(tiles, indices)
            selected = plan.is_tissue(fractions)
            if selected.any():
                scores = np.asarray(predictor.predict(tiles[selected]), dtype=np.float32)
                if scores.shape != (int(selected.sum()), num_classes):
                    raise ModelError(
                        f"the model returned probabilities of shape {scores.shape} for "
                        f"{int(selected.sum())} tiles and {num_classes} classes; its "
                        "predict() must return (N, number of classes)")
                yield indices[selected], fractions[selected], scores
            done += len(indices)
            if progress is not None:
                progress(done, total)


@contextlib.contextmanager
def _tile_source(slide, grid, batch_size: int, queue_size: int, block_size: int):
    """Batches of (indices, tiles): read ahead by a thread into a bounded queue, or read
    in turn when the thread budget is one core."""
    from histotile.tiling import iter_tile_batches

    if thread_budget() < 2:
        yield iter_tile_batches(slide, grid, batch_size, block_size=block_size)
        return
    batches: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for item in iter_tile_batches(slide, grid, batch_size, block_size=block_size):
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, re-raised
            put(error)

    def drain():
        while True:
            item = batches.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    thread = threading.Thread(target=reader, name="histotile-tile-reader", daemon=True)
    thread.start()
    try:
        yield drain()
    finally:
        stop.set()
        while thread.is_alive():
            try:
                batches.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
