"""Evaluation of tile predictions against a pathologist's annotation.

Per slide: the tile-level confusion matrix (rows: annotated class, columns: predicted
class) and, for the positive class against the rest, TN, FP, FN, TP, sensitivity and
specificity, as the original study reported for each test slide; over several slides the
summed matrix and the same rates. The truth of a tile comes from the annotation through
the tiling stage (the fraction of the tile each class covers, labelled with the same rule
as training tiles), so evaluation and training agree on what a tile "is".

A tile is predicted positive when its positive-class probability is at least
``tile_threshold`` (as the heatmap colours it); otherwise it takes the most probable of
the other classes.

The truth of the tiles comes from :mod:`~histotile.postprocess.annotation_truth`; the
side-by-side picture is drawn by :mod:`~histotile.postprocess.evaluation_pictures`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histotile._atomic import atomic_path, check_writable
from histotile.errors import ConfigError, DatasetError
from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
from histotile.postprocess.annotation_truth import (
    labelling_settings,
    resolve_annotation,
    tile_boxes,
)
from histotile.postprocess.predictions import SlidePredictions
from histotile.wsi import open_slide


@dataclass(frozen=True)
class SlideEvaluation:
    """Tile-level agreement of one slide's predictions with its annotation.

    Attributes:
        slide_name: the slide.
        classes: class names; indices of ``truth``/``predicted`` and of the matrix.
        positive_class: the class evaluated against the rest.
        tile_threshold: probability from which a tile is predicted positive.
        confusion: (C, C) int64 tile counts, rows annotated class, columns predicted.
        truth, predicted: class index per tile (int64 (N,)), in the predictions' order.
        default_class: the truth of unannotated tiles, when the truth came from an
            annotation (None for truth given per tile).
    """

    slide_name: str
    classes: tuple[str, ...]
    positive_class: str
    tile_threshold: float
    confusion: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray
    default_class: str | None = None

    @property
    def tiles(self) -> int:
        return int(self.confusion.sum())

    @property
    def counts(self) -> dict[str, int]:
        """TN, FP, FN, TP of the positive class against the rest."""
        return binary_counts(self.confusion, self.classes.index(self.positive_class))

    @property
    def sensitivity(self) -> float:
        c = self.counts
        return _ratio(c["TP"], c["TP"] + c["FN"])

    @property
    def specificity(self) -> float:
        c = self.counts
        return _ratio(c["TN"], c["TN"] + c["FP"])

    def confusion_frame(self) -> pd.DataFrame:
        """The matrix labelled: index ``true <class>``, columns ``predicted <class>``."""
        return pd.DataFrame(self.confusion, index=[f"true {c}" for c in self.classes],
                            columns=[f"predicted {c}" for c in self.classes])

    def row(self) -> dict[str, Any]:
        """One flat summary row (for tables and reports)."""
        return {"slide": self.slide_name, "tiles": self.tiles, **self.counts,
                "sensitivity": self.sensitivity, "specificity": self.specificity,
                "accuracy": _ratio(int(np.trace(self.confusion)), self.tiles)}


@dataclass(frozen=True)
class EvaluationSummary:
    """Several slides' evaluations and their total.

    Attributes:
        table: one row per slide plus a final ``overall`` row: ``slide, tiles, TN, FP,
            FN, TP, sensitivity, specificity, accuracy``.
        confusion: the summed (C, C) matrix.
        classes, positive_class: as in :class:`SlideEvaluation`.
    """

    table: pd.DataFrame
    confusion: np.ndarray
    classes: tuple[str, ...]
    positive_class: str

    @property
    def overall(self) -> dict[str, Any]:
        return self.table.iloc[-1].to_dict()

    @property
    def sensitivity(self) -> float:
        return float(self.overall["sensitivity"])

    @property
    def specificity(self) -> float:
        return float(self.overall["specificity"])

    def to_markdown(self) -> str:
        columns = list(self.table.columns)
        lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
        for row in self.table.itertuples(index=False):
            cells = []
            for value in row:
                if isinstance(value, float):
                    cells.append("n/a" if math.isnan(value) else f"{value:.3f}")
                else:
                    cells.append(str(value))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else float("nan")


def binary_counts(confusion: np.ndarray, positive: int) -> dict[str, int]:
    """TN, FP, FN, TP of class index ``positive`` against the rest, from a (C, C)
    matrix with rows true and columns predicted."""
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = int(confusion[positive, positive])
    fn = int(confusion[positive].sum()) - tp
    fp = int(confusion[:, positive].sum()) - tp
    tn = int(confusion.sum()) - tp - fn - fp
    return {"TN": tn, "FP": fp, "FN": fn, "TP": tp}


def predicted_classes(probabilities: np.ndarray, positive: int,
                      tile_threshold: float) -> np.ndarray:
    """Class index per tile: ``positive`` when its probability is at least
    ``tile_threshold``, else the most probable other class. (N, C) -> int64 (N,)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[0] == 0:
        return np.zeros(0, np.int64)
    others = probabilities.copy()
    others[:, positive] = -np.inf
    fallback = np.argmax(others, axis=1) if probabilities.shape[1] > 1 else \
        np.full(len(probabilities), positive)
    return np.where(probabilities[:, positive] >= tile_threshold, positive,
                    fallback).astype(np.int64)


def evaluate_tiles(predictions: SlidePredictions, truth: Sequence[Any] | np.ndarray, *,
                   positive_class: str, tile_threshold: float = DEFAULT_TILE_THRESHOLD
                   ) -> SlideEvaluation:
    """Evaluate ``predictions`` against a known class per tile.

    Args:
        predictions: one slide's tile predictions.
        truth: the true class of each tile, in the table's order: class names, or class
            indices into ``predictions.classes``.
        positive_class: the class evaluated against the rest.
        tile_threshold: probability from which a tile is predicted positive.
    """
    predictions.check_class(positive_class)
    if not 0.0 <= float(tile_threshold) <= 1.0:
        raise ConfigError(f"tile_threshold={tile_threshold}: must lie between 0 and 1")
    classes = predictions.classes
    truth = np.asarray(truth)
    if truth.shape != (len(predictions),):
        raise DatasetError(f"slide {predictions.slide_name!r}: {truth.size} true labels for "
                           f"{len(predictions)} predicted tiles; give one label per tile, "
                           "in the order of the predictions table")
    if truth.dtype.kind in "UO":
        lookup = {name: i for i, name in enumerate(classes)}
        unknown = sorted({str(t) for t in truth} - set(lookup))
        if unknown:
            raise DatasetError(f"slide {predictions.slide_name!r}: annotated classes "
                               f"{', '.join(unknown)} are not model classes "
                               f"({', '.join(classes)}); map them to the model's classes")
        truth_index = np.array([lookup[str(t)] for t in truth], np.int64)
    else:
        truth_index = truth.astype(np.int64)
        if truth_index.size and (truth_index.min() < 0 or truth_index.max() >= len(classes)):
            raise DatasetError(f"slide {predictions.slide_name!r}: class indices must lie in "
                               f"0..{len(classes) - 1}")
    positive = classes.index(positive_class)
    predicted = predicted_classes(predictions.probability_matrix(), positive,
                                  float(tile_threshold))
    size = len(classes)
    confusion = np.bincount(truth_index * size + predicted, minlength=size * size
                            ).reshape(size, size).astype(np.int64)
    return SlideEvaluation(predictions.slide_name, classes, positive_class,
                           float(tile_threshold), confusion, truth_index, predicted)


def evaluate_slides(evaluations: Sequence[SlideEvaluation]) -> EvaluationSummary:
    """Per-slide rows and the overall total of several :class:`SlideEvaluation`."""
    evaluations = list(evaluations)
    if not evaluations:
        raise DatasetError("evaluate_slides got no slide evaluations; evaluate at least one "
                           "annotated slide")
    first = evaluations[0]
    for evaluation in evaluations[1:]:
        if (evaluation.classes, evaluation.positive_class) != (first.classes,
                                                               first.positive_class):
            raise DatasetError(
                f"slide {evaluation.slide_name!r} was evaluated with classes "
                f"{evaluation.classes} / positive {evaluation.positive_class!r}, unlike "
                f"{first.slide_name!r} ({first.classes} / {first.positive_class!r}); "
                "evaluate all slides with the same model and positive class")
    confusion = np.sum([e.confusion for e in evaluations], axis=0)
    total = SlideEvaluation("overall", first.classes, first.positive_class,
                            first.tile_threshold, confusion, np.zeros(0, np.int64),
                            np.zeros(0, np.int64))
    table = pd.DataFrame([e.row() for e in evaluations] + [total.row()])
    return EvaluationSummary(table, confusion, first.classes, first.positive_class)


def evaluate_slide(
    slide_path: str | Path,
    predictions: SlidePredictions,
    annotation: Any,
    *,
    positive_class: str,
    tile_threshold: float = DEFAULT_TILE_THRESHOLD,
    min_label_fraction: float | None = None,
    default_class: str | None = None,
    palette: dict[str, tuple[int, int, int]] | None = None,
    match_name: bool = True,
) -> SlideEvaluation:
    """Evaluate one slide's tile predictions against its annotation.

    Args:
        slide_path: the slide (checked against the predictions: dimensions, name).
        predictions: its tile predictions.
        annotation: the annotation (painted overlay, label mask or QuPath GeoJSON) as a
            path or as loaded by :func:`histotile.tiling.load_annotation`.
        positive_class: the class evaluated against the rest.
        tile_threshold: probability from which a tile is predicted positive.
        min_label_fraction, default_class, palette: the labelling rule of the true class
            (default: the tiling settings the predictions were made with, as in
            training: a tile is of an annotated class when that class covers at least
            ``min_label_fraction`` of it).
        match_name: refuse predictions made on a slide of another name.
    """
    from histotile.tiling import annotation_fractions, assign_labels

    predictions.check_class(positive_class)
    settings = labelling_settings(predictions, positive_class=positive_class,
                                  min_label_fraction=min_label_fraction,
                                  default_class=default_class, palette=palette)
    with open_slide(slide_path) as slide:
        predictions.check_slide(slide, match_name=match_name)
        loaded = resolve_annotation(annotation, settings)
        fractions = annotation_fractions(loaded, slide, tile_boxes(predictions),
                                         predictions.classes, settings)
    truth = assign_labels(fractions, predictions.classes, settings.roles.default_class,
                          settings.min_label_fraction)
    result = evaluate_tiles(predictions, truth, positive_class=positive_class,
                            tile_threshold=tile_threshold)
    return dataclasses.replace(result, default_class=settings.roles.default_class)


def write_roc_pr(predictions: SlidePredictions, evaluation: SlideEvaluation,
                 out_path: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """ROC and precision-recall curves (PNG) of the evaluated positive class's tile
    probabilities against the annotation; returns ``roc_auc`` and
    ``average_precision`` (None when the slide has tiles of one kind only)."""
    from histotile.models.plots import roc_pr_curves

    check_writable(out_path, overwrite)
    truth = evaluation.truth == evaluation.classes.index(evaluation.positive_class)
    score = predictions.probabilities(evaluation.positive_class)
    with atomic_path(out_path, overwrite=overwrite) as tmp:
        figures = roc_pr_curves({evaluation.slide_name: (truth, score)},
                                evaluation.positive_class, tmp)
    found = figures[evaluation.slide_name]
    return {"roc_auc": found["roc_auc"], "average_precision": found["average_precision"]}
