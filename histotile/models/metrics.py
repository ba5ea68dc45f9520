"""Classification metrics from labels and predicted probabilities (numpy only).

Binary tasks report sensitivity, specificity, precision, F1 and ROC AUC of the positive
class; multi-class tasks report them per class (one-vs-rest) and as macro averages.
Definitions match scikit-learn's (``zero_division=0``; AUC by the rank statistic with
ties averaged), so the figures can be cross-checked with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# Scalar metrics reported per fold and summarised as mean +- std.
SUMMARY_KEYS = ("accuracy", "loss", "sensitivity", "specificity", "precision", "f1",
                "roc_auc", "balanced_accuracy")
_EPS = 1e-7


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes), int64: rows are true classes, columns predicted."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney rank statistic, ties averaged); NaN when
    only one class is present."""
    is_positive = np.asarray(is_positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos = int(is_positive.sum())
    n_neg = is_positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    # Average rank (1-based) of each run of tied scores.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    run_rank = first + (counts + 1) / 2.0
    ranks = np.empty_like(score)
    ranks[order] = np.repeat(run_rank, counts)
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else 0.0


def per_class_metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """One-vs-rest sensitivity (recall), specificity, precision and F1 per class from a
    confusion matrix (rows true, columns predicted). Undefined ratios are 0."""
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    tp = np.diag(confusion)
    fn = confusion.sum(axis=1) - tp
    fp = confusion.sum(axis=0) - tp
    tn = total - tp - fn - fp

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    sensitivity = ratio(tp, tp + fn)
    precision = ratio(tp, tp + fp)
    return {
        "sensitivity": sensitivity,
        "specificity": ratio(tn, tn + fp),
        "precision": precision,
        "f1": ratio(2 * precision * sensitivity, precision + sensitivity),
        "support": tp + fn,
    }


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str],
                           positive_class: str | None = None,
                           threshold: float | None = None) -> dict[str, Any]:
    """All metrics of one evaluation.

    Args:
        y_true: true class indices (N,).
        proba: predicted probabilities (N, C), rows summing to 1.
        classes: class names in index order.
        positive_class: for two classes, the class treated as positive (default: the
            second one).
        threshold: for two classes, a tile is called positive when its positive-class
            probability is ``>= threshold`` (default None: the most probable class).
            The AUC and loss do not depend on it.

    Returns:
        A JSON-serialisable dict: ``accuracy``, ``loss`` (mean cross-entropy),
        ``balanced_accuracy``, ``sensitivity``, ``specificity``, ``precision``, ``f1``,
        ``roc_auc`` (of the positive class for binary tasks, macro averages otherwise),
        ``per_class`` ({class: {...}}), ``confusion`` (list of rows), ``n``.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    classes = list(classes)
    num_classes = len(classes)
    if proba.ndim != 2 or proba.shape != (y_true.size, num_classes):
        raise ValueError(f"proba has shape {proba.shape}, expected ({y_true.size}, "
                         f"{num_classes})")
    y_pred = proba.argmax(axis=1) if y_true.size else np.zeros(0, np.int64)
    if threshold is not None:
        if num_classes != 2:
            raise ValueError(f"a threshold applies to two classes, not {num_classes}")
        index = classes.index(classes[1] if positive_class is None else positive_class)
        y_pred = np.where(proba[:, index] >= threshold, index, 1 - index)
    confusion = confusion_matrix(y_true, y_pred, num_classes)
    table = per_class_metrics(confusion)
    aucs = np.array([roc_auc(y_true == k, proba[:, k]) for k in range(num_classes)])
    n = int(y_true.size)
    picked = proba[np.arange(n), y_true] if n else np.zeros(0)
    loss = float(-np.log(np.clip(picked, _EPS, 1.0)).mean()) if n else float("nan")
    per_class = {
        name: {"sensitivity": float(table["sensitivity"][k]),
               "specificity": float(table["specificity"][k]),
               "precision": float(table["precision"][k]),
               "f1": float(table["f1"][k]),
               "roc_auc": _json_float(aucs[k]),
               "support": int(table["support"][k])}
        for k, name in enumerate(classes)
    }
    result: dict[str, Any] = {
        "n": n,
        "accuracy": _ratio(np.trace(confusion), n),
        "loss": loss,
        "balanced_accuracy": float(table["sensitivity"][table["support"] > 0].mean())
        if n else float("nan"),
    }
    if num_classes == 2:
        positive = classes[1] if positive_class is None else positive_class
        if positive not in classes:
            raise ValueError(f"positive class {positive!r} is not one of {classes}")
        result["positive_class"] = positive
        for key in ("sensitivity", "specificity", "precision", "f1", "roc_auc"):
            result[key] = per_class[positive][key]
    else:
        result["positive_class"] = None
        for key in ("sensitivity", "specificity", "precision", "f1"):
            result[key] = float(table[key].mean())
        valid = aucs[~np.isnan(aucs)]
        result["roc_auc"] = _json_float(valid.mean()) if valid.size else None
    result["per_class"] = per_class
    result["confusion"] = confusion.tolist()
    return result


def _json_float(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def summarise(fold_metrics: Sequence[dict[str, Any]],
              keys: Sequence[str] = SUMMARY_KEYS + ("train_seconds", "train_tiles_per_s",
                                                    "epochs_run", "best_epoch"),
              ) -> dict[str, dict[str, float | None]]:
    """Mean and standard deviation (sample, ddof=1; 0 for a single fold) of each scalar
    metric over folds; missing or undefined values are left out of that metric."""
    out: dict[str, dict[str, float | None]] = {}
    for key in keys:
        values = np.array([float(m[key]) for m in fold_metrics
                           if m.get(key) is not None and not _isnan(m[key])])
        if values.size == 0:
            out[key] = {"mean": None, "std": None}
            continue
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[key] = {"mean": float(values.mean()), "std": std}
    return out


def _isnan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def flat_row(metrics: dict[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    """One CSV row: the scalar metrics, then ``<metric>_<class>`` per class and the
    confusion matrix as ``cm_<true>_<pred>`` counts."""
    row = {key: metrics.get(key) for key in ("n",) + SUMMARY_KEYS}
    row["positive_class"] = metrics.get("positive_class")  # what sensitivity is about
    for name in classes:
        for key, value in metrics["per_class"][name].items():
            row[f"{key}_{name}"] = value
    for i, true in enumerate(classes):
        for j, pred in enumerate(classes):
            row[f"cm_{true}_{pred}"] = metrics["confusion"][i][j]
    return row
