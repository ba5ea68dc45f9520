"""Patch-majority decisions and the threshold sweep that chooses their threshold.

A slide (or an image cut into patches, as in the BreakHis study) is called positive when
the fraction of its tiles called positive is *at least* ``fraction_threshold``
(:func:`called_positive`, the one function for the rule: ``fraction >= t``); a tile is
called positive when its positive-class probability is at least ``tile_threshold``.
:func:`threshold_sweep` tabulates TN, FP, FN, TP, sensitivity, specificity and the
precision of each class over a set of slides for several fraction thresholds, and names
the threshold to use for a target sensitivity (screening wants 1.0: no missed slide).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histotile._atomic import write_text_atomic
from histotile.errors import ConfigError, DatasetError, ModelError
from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
from histotile.postprocess.predictions import PROB_PREFIX, SlidePredictions, prob_column

DEFAULT_THRESHOLDS = (0.10, 0.25, 0.50, 0.75, 0.90)
DEFAULT_FRACTION_THRESHOLD = 0.5
"""The slide fraction threshold when none is given: a slide (or image) is positive when at
least this share of its tiles is (``--decision-threshold``)."""
DEFAULT_TARGET_SENSITIVITY = 1.0
"""A sweep's chosen threshold is the highest whose sensitivity reaches this (every
positive slide or image called positive)."""
RULE = "positive when at least t of its tiles are (fraction >= t)"


def called_positive(fraction: float | np.ndarray, threshold: float) -> bool | np.ndarray:
    """The decision rule of slides and images: positive when the fraction of positive
    tiles is at least ``threshold`` (``>=``; 1e-12 absorbs the rounding of k/n, so that
    6 of 15 tiles meets 0.4)."""
    result = np.asarray(fraction, dtype=np.float64) >= float(threshold) - 1e-12
    return bool(result) if result.ndim == 0 else result
SWEEP_COLUMNS = ("threshold", "TN", "FP", "FN", "TP", "sensitivity", "specificity",
                 "precision_negative", "precision_positive", "accuracy", "meets_target")


@dataclass(frozen=True)
class Decision:
    """The patch-majority call of one slide or image.

    Attributes:
        positive: True when ``fraction >= fraction_threshold`` (:func:`called_positive`).
        fraction: fraction of tiles called positive (0.0 when there are no tiles).
        tiles, positive_tiles: tile counts.
        positive_class: the class called positive.
        tile_threshold, fraction_threshold: the two thresholds applied.
    """

    positive: bool
    fraction: float
    tiles: int
    positive_tiles: int
    positive_class: str
    tile_threshold: float
    fraction_threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {"positive": self.positive, "fraction": self.fraction, "tiles": self.tiles,
                "positive_tiles": self.positive_tiles, "positive_class": self.positive_class,
                "tile_threshold": self.tile_threshold,
                "fraction_threshold": self.fraction_threshold}


def _check_unit(name: str, value: float | np.floating) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={value}: must lie between 0 and 1")
    return value


def positive_probabilities(predictions: Any, positive_class: str | None) -> np.ndarray:
    """The positive-class probability of every tile, float64 (N,), from a
    :class:`SlidePredictions`, a DataFrame with ``prob_<class>`` columns, or an array of
    probabilities already (1-D)."""
    if isinstance(predictions, SlidePredictions):
        if positive_class is None:
            raise ConfigError("name the positive class (positive_class=...) to decide from "
                              f"predictions of classes {', '.join(predictions.classes)}")
        return predictions.probabilities(positive_class).astype(np.float64)
    if isinstance(predictions, pd.DataFrame):
        if positive_class is None:
            raise ConfigError("name the positive class (positive_class=...)")
        column = prob_column(positive_class)
        if column not in predictions.columns:
            have = [c[len(PROB_PREFIX):] for c in predictions.columns
                    if str(c).startswith(PROB_PREFIX)]
            raise ModelError(f"class {positive_class!r} is not among the predicted classes "
                             f"({', '.join(have) or 'none'}); choose one of those")
        return predictions[column].to_numpy(np.float64)
    values = np.asarray(predictions, dtype=np.float64)
    if values.ndim != 1:
        raise DatasetError(f"tile probabilities must be one value per tile (1-D), got shape "
                           f"{values.shape}; pass a SlidePredictions or its table instead")
    return values


def slide_decision(predictions: Any, positive_class: str | None = None, *,
                   tile_threshold: float = DEFAULT_TILE_THRESHOLD,
                   fraction_threshold: float = DEFAULT_FRACTION_THRESHOLD) -> Decision:
    """Patch-majority decision of one slide or image.

    Args:
        predictions: :class:`SlidePredictions`, a predictions DataFrame, or the
            positive-class probability of each tile (1-D array).
        positive_class: the class called positive (needed unless probabilities given).
        tile_threshold: probability from which a tile counts as positive.
        fraction_threshold: the slide is positive when its positive fraction is at
            least this (:func:`called_positive`).
    """
    tile_threshold = _check_unit("tile_threshold", tile_threshold)
    fraction_threshold = _check_unit("fraction_threshold", fraction_threshold)
    probabilities = positive_probabilities(predictions, positive_class)
    probabilities = probabilities[np.isfinite(probabilities)]
    tiles = int(probabilities.size)
    positive_tiles = int(np.count_nonzero(probabilities >= tile_threshold))
    fraction = positive_tiles / tiles if tiles else 0.0
    return Decision(bool(called_positive(fraction, fraction_threshold)), fraction, tiles,
                    positive_tiles,
                    positive_class or "positive", tile_threshold, fraction_threshold)


@dataclass(frozen=True)
class SweepResult:
    """A threshold-sweep table over a set of slides or images.

    Attributes:
        table: one row per fraction threshold: ``threshold, TN, FP, FN, TP, sensitivity,
            specificity, precision_negative, precision_positive, accuracy, meets_target``
            (ratios NaN when undefined, e.g. sensitivity without positive slides).
        items: one row per slide: ``name, fraction, truth``.
        target_sensitivity: the sensitivity asked for.
        chosen_threshold: the threshold to use: the highest one whose sensitivity
            reaches the target (sensitivity only falls as the threshold rises, so it is
            the most specific threshold that still misses no more than allowed); None
            when no threshold reaches it.
        positive_class, tile_threshold: what the fractions counted.
    """

    table: pd.DataFrame
    items: pd.DataFrame
    target_sensitivity: float
    chosen_threshold: float | None
    positive_class: str
    tile_threshold: float

    @property
    def thresholds_reaching_target(self) -> list[float]:
        """Every threshold in the table whose sensitivity reaches the target."""
        return [float(t) for t in self.table.loc[self.table["meets_target"], "threshold"]]

    def to_markdown(self) -> str:
        """The table as Markdown, with the chosen threshold named under it."""
        lines = ["| " + " | ".join(SWEEP_COLUMNS[:-1]) + " |",
                 "|" + "---:|" * (len(SWEEP_COLUMNS) - 1)]
        for row in self.table.itertuples(index=False):
            cells = [f"{row.threshold:.2f}", *(str(int(getattr(row, c)))
                                               for c in ("TN", "FP", "FN", "TP"))]
            cells += [_fmt(getattr(row, c)) for c in SWEEP_COLUMNS[5:-1]]
            lines.append("| " + " | ".join(cells) + " |")
        target = f"sensitivity >= {self.target_sensitivity:g}"
        lines.append("")
        lines.append(f"Rule: a slide or image is {RULE}; a tile is positive when its "
                     f"{self.positive_class} probability is >= {self.tile_threshold:g}.")
        lines.append(f"Chosen fraction threshold for {target}: "
                     + (f"{self.chosen_threshold:.2f}" if self.chosen_threshold is not None
                        else "none of the thresholds reaches it"))
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """The table as CSV (atomic; refused if it exists unless ``overwrite``)."""
        return write_text_atomic(path, self.table.to_csv(index=False), overwrite=overwrite)


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.3f}"


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def _normalise_items(items: Any) -> list[tuple[str, Any, bool]]:
    if isinstance(items, Mapping):
        items = [(name, *value) for name, value in items.items()]
    result = []
    for index, item in enumerate(items):
        if not isinstance(item, Sequence) or isinstance(item, str) or len(item) not in (2, 3):
            raise DatasetError(f"sweep item {index}: give (predictions, truth) or (name, "
                               f"predictions, truth), got {type(item).__name__}")
        if len(item) == 2:
            source, truth = item
            name = source.slide_name if isinstance(source, SlidePredictions) else str(index)
        else:
            name, source, truth = item
        if isinstance(truth, str) or not isinstance(truth, (bool, np.bool_, int, np.integer)):
            raise DatasetError(f"sweep item {name!r}: its truth must be True (positive) or "
                               f"False (negative), got {truth!r}")
        result.append((str(name), source, bool(truth)))
    return result


def threshold_sweep(
    items: Iterable[Any] | Mapping[str, Any],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
    *,
    positive_class: str | None = None,
    tile_threshold: float = DEFAULT_TILE_THRESHOLD,
) -> SweepResult:
    """Decision counts and rates over slides for several fraction thresholds.

    Args:
        items: ``(predictions, truth)`` or ``(name, predictions, truth)`` per slide or
            image (or a mapping ``name -> (predictions, truth)``); ``predictions`` is
            anything :func:`slide_decision` takes, a :class:`Decision`, or the positive
            fraction itself (a float); ``truth`` is True for a positive slide.
        thresholds: fraction thresholds (a slide is positive when its fraction is at
            least the threshold: :func:`called_positive`).
        target_sensitivity: the sensitivity the chosen threshold must reach.
        positive_class, tile_threshold: as in :func:`slide_decision`.
    """
    target_sensitivity = _check_unit("target_sensitivity", target_sensitivity)
    thresholds = sorted({_check_unit("threshold", t) for t in thresholds})
    if not thresholds:
        raise ConfigError("threshold_sweep needs at least one threshold")
    names, fractions, truths = [], [], []
    for name, source, truth in _normalise_items(items):
        if isinstance(source, Decision):
            fraction = source.fraction
        elif isinstance(source, (float, np.floating)) and not isinstance(source, bool):
            fraction = _check_unit(f"fraction of {name!r}", source)
        else:
            fraction = slide_decision(source, positive_class,
                                      tile_threshold=tile_threshold).fraction
        names.append(name)
        fractions.append(float(fraction))
        truths.append(truth)
    if not names:
        raise DatasetError("threshold_sweep got no slides or images; give at least one")
    fraction_array = np.asarray(fractions)
    truth_array = np.asarray(truths, dtype=bool)
    rows = []
    for threshold in thresholds:
        called = called_positive(fraction_array, threshold)
        tp = int(np.count_nonzero(called & truth_array))
        fp = int(np.count_nonzero(called & ~truth_array))
        fn = int(np.count_nonzero(~called & truth_array))
        tn = int(np.count_nonzero(~called & ~truth_array))
        sensitivity = _ratio(tp, tp + fn)
        rows.append({"threshold": threshold, "TN": tn, "FP": fp, "FN": fn, "TP": tp,
                     "sensitivity": sensitivity, "specificity": _ratio(tn, tn + fp),
                     "precision_negative": _ratio(tn, tn + fn),
                     "precision_positive": _ratio(tp, tp + fp),
                     "accuracy": _ratio(tp + tn, len(names)),
                     "meets_target": bool(sensitivity >= target_sensitivity - 1e-12)})
    table = pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))
    reaching = table.loc[table["meets_target"], "threshold"]
    chosen = float(reaching.max()) if len(reaching) else None
    item_table = pd.DataFrame({"name": names, "fraction": fractions, "truth": truths})
    return SweepResult(table, item_table, target_sensitivity, chosen,
                       positive_class or "positive", float(tile_threshold))
