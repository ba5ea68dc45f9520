"""Tile predictions of one slide: the table, its provenance, saving and loading.

A :class:`SlidePredictions` is what :func:`histotile.postprocess.predict_slide` returns
and what every later step (probability maps, heatmaps, decisions, evaluation) reads. It
is saved as a CSV (one row per tile: ``slide, x, y, extent, prob_<class>...``; x, y and
extent in level-0 pixels) with a JSON sidecar beside it (``<name>.json`` for
``<name>.csv``) that records the slide (name, path, dimensions, mpp), the classes, the
tiling settings and a reference to the model card, so a table can always be checked
against the slide it is applied to.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histotile._atomic import atomic_path, check_writable
from histotile.errors import DatasetError, HistotileError, ModelError
from histotile.postprocess.maps import ProbabilityGrid

FORMAT = "histotile.predictions/1"
COORDINATE_COLUMNS = ("x", "y", "extent")
PROB_PREFIX = "prob_"
# Rounding a saved table may leave (6 significant digits): a probability may exceed 0-1
# by this much and no more.
PROBABILITY_SLACK = 1e-5


def prob_column(class_name: str) -> str:
    """The table column holding the probability of ``class_name``."""
    return f"{PROB_PREFIX}{class_name}"


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a predictions CSV: same folder and stem, ``.json``."""
    return Path(path).with_suffix(".json")


@dataclass
class SlidePredictions:
    """Per-tile class probabilities of one slide.

    Attributes:
        slide_name: the slide's name (file name without extension).
        slide_path: the slide file as given when predicting.
        dimensions: level-0 (width, height) of the slide, pixels.
        mpp: level-0 microns per pixel of the slide (None when not recorded).
        classes: class names, in the model's output order.
        tiles: one row per tile: ``x``, ``y`` (top-left), ``extent`` (side), all level-0
            pixels, and ``prob_<class>`` for every class.
        settings: the tiling settings used (a plain dict) and prediction options.
        model: reference to the model card (model directory, name, architecture, card
            entries that identify it).
    """

    slide_name: str
    slide_path: str
    dimensions: tuple[int, int]
    mpp: float | None
    classes: tuple[str, ...]
    tiles: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dimensions = (int(self.dimensions[0]), int(self.dimensions[1]))
        self.classes = tuple(str(c) for c in self.classes)
        if not self.classes:
            raise DatasetError(f"predictions of slide {self.slide_name!r} name no classes "
                               "(the model card must list its classes)")
        missing = [c for c in (*COORDINATE_COLUMNS, *map(prob_column, self.classes))
                   if c not in self.tiles.columns]
        if missing:
            raise DatasetError(f"predictions of slide {self.slide_name!r} lack the columns "
                               f"{', '.join(missing)} (a predictions table needs x, y, extent "
                               "and prob_<class> for every class); predict the slide again")

    def __len__(self) -> int:
        return len(self.tiles)

    # -- access ----------------------------------------------------------------------
    def check_class(self, class_name: str) -> str:
        """``class_name`` if the predictions have it, else :class:`ModelError`."""
        if class_name not in self.classes:
            raise ModelError(
                f"class {class_name!r} is not among the model's classes "
                f"({', '.join(self.classes)}) in the predictions of slide "
                f"{self.slide_name!r}; choose one of those classes")
        return class_name

    def probabilities(self, class_name: str) -> np.ndarray:
        """Probability of ``class_name`` per tile, float32 (N,)."""
        column = prob_column(self.check_class(class_name))
        return self.tiles[column].to_numpy(np.float32)

    def probability_matrix(self) -> np.ndarray:
        """All class probabilities, float32 (N, C), in ``classes`` order."""
        return self.tiles[[prob_column(c) for c in self.classes]].to_numpy(np.float32)

    def predicted_labels(self) -> np.ndarray:
        """Index of the most probable class per tile, int64 (N,)."""
        if len(self) == 0:
            return np.zeros(0, np.int64)
        return np.argmax(self.probability_matrix(), axis=1).astype(np.int64)

    def grid(self, class_name: str) -> ProbabilityGrid:
        """The probability of ``class_name`` averaged over overlapping tiles."""
        probability = self.probabilities(class_name)
        return ProbabilityGrid.from_tiles(self.tiles["x"].to_numpy(), self.tiles["y"].to_numpy(),
                                          self.tiles["extent"].to_numpy(), probability)

    def check_slide(self, slide: Any, *, match_name: bool = True) -> None:
        """Raise :class:`DatasetError` unless these predictions belong to ``slide`` (an
        open :class:`histotile.wsi.Slide`): same level-0 dimensions and, with
        ``match_name``, the same slide name."""
        if tuple(slide.dimensions) != self.dimensions:
            raise DatasetError(
                f"{slide.path}: the predictions were made on slide {self.slide_name!r} of "
                f"{self.dimensions[0]}x{self.dimensions[1]} px, but this slide is "
                f"{slide.dimensions[0]}x{slide.dimensions[1]} px; pass the slide the "
                "predictions belong to, or predict this slide first")
        if match_name and slide.name != self.slide_name:
            raise DatasetError(
                f"{slide.path}: the predictions belong to slide {self.slide_name!r}, not "
                f"{slide.name!r}; pass the matching slide (or match_name=False / "
                "--ignore-name if the slide file was only renamed)")

    # -- saving ----------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        """The JSON sidecar's content."""
        return {
            "format": FORMAT,
            "slide": {"name": self.slide_name, "path": self.slide_path,
                      "dimensions": list(self.dimensions), "mpp": self.mpp},
            "classes": list(self.classes),
            "tiles": len(self),
            "settings": _jsonable(self.settings),
            "model": _jsonable(self.model),
        }

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the table as CSV at ``path`` and the sidecar beside it, atomically:
        both are refused if either exists (unless ``overwrite``) and both appear only
        when both are complete. Returns the CSV path."""
        path = Path(path)
        sidecar = sidecar_path(path)
        if path.suffix.lower() != ".csv":
            raise DatasetError(f"{path}: save predictions to a .csv file (the JSON sidecar "
                               "goes beside it)")
        check_writable(path, overwrite)
        check_writable(sidecar, overwrite)
        table = self.tiles.copy()
        table.insert(0, "slide", self.slide_name)
        with atomic_path(path, overwrite=overwrite) as tmp_csv, \
                atomic_path(sidecar, overwrite=overwrite) as tmp_json:
            table.to_csv(tmp_csv, index=False, float_format="%.6g")
            tmp_json.write_text(json.dumps(self.metadata(), indent=2) + "\n", encoding="utf-8")
        return path


def load_predictions(path: str | Path) -> SlidePredictions:
    """Read predictions written by :meth:`SlidePredictions.save` (the CSV path)."""
    path = Path(path)
    sidecar = sidecar_path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such predictions file; run the predict step first "
                           "or check the path")
    if not sidecar.is_file():
        raise DatasetError(f"{path}: its sidecar {sidecar.name} is missing; it records the "
                           "slide and classes the table belongs to. Copy it along with the "
                           "CSV, or predict the slide again")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(f"{sidecar}: not a predictions sidecar ({type(error).__name__}: "
                           f"{error}); predict the slide again") from None
    slide, classes, dimensions = _sidecar_fields(sidecar, meta)
    try:
        tiles = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise DatasetError(f"{path}: cannot read the predictions table ({error}); the file "
                           "is damaged, predict the slide again") from None
    tiles = tiles.drop(columns=["slide"], errors="ignore")
    try:
        result = SlidePredictions(slide["name"], str(slide.get("path") or ""), dimensions,
                                  slide.get("mpp"), classes, tiles,
                                  meta.get("settings") or {}, meta.get("model") or {})
    except HistotileError as error:
        raise DatasetError(f"{path}: {error}") from None
    for column in COORDINATE_COLUMNS:
        result.tiles[column] = _integral(result.tiles[column], path, column)
    for name in result.classes:
        _check_probabilities(result.tiles[prob_column(name)], path, prob_column(name))
    if len(result) != meta.get("tiles", len(result)):
        raise DatasetError(f"{path}: {len(result)} rows but the sidecar records "
                           f"{meta['tiles']}; the CSV is truncated, predict the slide again")
    return result


def _sidecar_fields(sidecar: Path, meta: Any) -> tuple[dict, tuple[str, ...],
                                                       tuple[int, int]]:
    """The slide entry, classes and level-0 dimensions of a sidecar, each checked: a
    file edited by hand or by other software is refused with what is wrong."""
    def refuse(problem: str) -> DatasetError:
        return DatasetError(f"{sidecar}: not a predictions sidecar ({problem}); predict "
                            "the slide again")

    if not isinstance(meta, dict):
        raise refuse("not a JSON object")
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{sidecar}: unknown format {meta.get('format')!r} (expected "
                           f"{FORMAT!r}); predict the slide again with this version")
    slide, classes = meta.get("slide"), meta.get("classes")
    if not isinstance(slide, dict) or not isinstance(slide.get("name"), str):
        raise refuse("'slide' must be an object with the slide's 'name'")
    dimensions = slide.get("dimensions")
    if not (isinstance(dimensions, list) and len(dimensions) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in dimensions)):
        raise refuse("'slide.dimensions' must be the slide's width and height in pixels")
    mpp = slide.get("mpp")
    if mpp is not None and not (isinstance(mpp, (int, float)) and not isinstance(mpp, bool)
                                and math.isfinite(mpp) and mpp > 0):
        raise refuse("'slide.mpp' must be a positive number or null")
    if not (isinstance(classes, list) and classes and len(set(map(str, classes))) ==
            len(classes) and all(isinstance(c, str) and c for c in classes)):
        raise refuse("'classes' must list the model's class names, each once")
    if not all(isinstance(meta.get(k) or {}, dict) for k in ("settings", "model")):
        raise refuse("'settings' and 'model' must be objects")
    if not isinstance(meta.get("tiles", 0), int):
        raise refuse("'tiles' must be the number of rows")
    return slide, tuple(classes), (dimensions[0], dimensions[1])


def _integral(column: pd.Series, path: Path, name: str) -> pd.Series:
    values = column.to_numpy()
    if values.size and (not np.issubdtype(values.dtype, np.number)
                        or not np.all(np.isfinite(values))):
        raise DatasetError(f"{path}: column {name!r} holds non-numeric or missing values; "
                           "the table is damaged, predict the slide again")
    if values.size and np.all(np.mod(values, 1) == 0):
        return column.astype(np.int64)
    return column


def _check_probabilities(column: pd.Series, path: Path, name: str) -> None:
    """Refuse a probability column with missing, non-numeric or out-of-range values (a
    table edited by hand or written by other software): read as they are, 7.0 would
    colour a heatmap and call a slide positive."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values) | (values < -PROBABILITY_SLACK) | (values > 1 + PROBABILITY_SLACK)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{path}: column {name!r} holds {column.iloc[row]!r} in row "
                           f"{row + 1}, not a probability between 0 and 1 ({int(bad.sum())} "
                           "such values); the table is damaged or not histotile's, predict "
                           "the slide again")


def _jsonable(value: Any) -> Any:
    """Plain JSON types for settings and card excerpts (paths, numpy scalars, tuples)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    return str(value)


def concat_predictions(parts: list[SlidePredictions]) -> SlidePredictions:
    """Join the parts of one slide's predictions (``predict_slide(..., part=(i, n))`` for
    every ``i``, in order) into the whole slide's predictions."""
    if not parts:
        raise DatasetError("no prediction parts to join")
    first = parts[0]
    for other in parts[1:]:
        if (other.slide_name, other.dimensions, other.classes) != (
                first.slide_name, first.dimensions, first.classes):
            raise DatasetError(f"prediction parts of {first.slide_name!r} and "
                               f"{other.slide_name!r} (or other classes) cannot be joined")
    tiles = pd.concat([p.tiles for p in parts], ignore_index=True)
    settings = {k: v for k, v in first.settings.items() if k != "part"}
    return SlidePredictions(first.slide_name, first.slide_path, first.dimensions, first.mpp,
                            first.classes, tiles, settings, first.model)
