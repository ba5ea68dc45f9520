"""PNG plots of a training run (matplotlib with the Agg backend, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def learning_curves(history: pd.DataFrame, path: Path) -> Path:
    """Loss and accuracy per epoch, one line per fold (training dashed, validation solid)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for (tag, part), colour in zip(history.groupby("fold", sort=False),
                                   plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4):
        for ax, metric in zip(axes, ("loss", "accuracy")):
            ax.plot(part["epoch"], part[f"train_{metric}"], "--", color=colour, alpha=0.7,
                    label=f"{tag} train")
            if f"val_{metric}" in part and part[f"val_{metric}"].notna().any():
                ax.plot(part["epoch"], part[f"val_{metric}"], "-", color=colour,
                        label=f"{tag} validation")
    for ax, metric in zip(axes, ("loss (cross-entropy)", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(0, 1.02)
    axes[1].legend(fontsize=7, loc="lower right", ncol=2)
    fig.suptitle("Learning curves")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def confusion_matrices(matrices: dict[str, Sequence[Sequence[int]]], classes: Sequence[str],
                       path: Path) -> Path:
    """One panel per matrix (e.g. cross-validation summed over folds, and test): counts
    and row-normalised shading (rows are true classes)."""
    plt = _pyplot()
    count = len(matrices)
    size = max(3.8, 0.55 * len(classes) + 2.5)
    fig, axes = plt.subplots(1, count, figsize=(size * count, size), dpi=100, squeeze=False)
    for ax, (title, given) in zip(axes[0], matrices.items()):
        matrix = np.asarray(given, dtype=np.int64)
        rows = matrix.sum(axis=1, keepdims=True)
        share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                ax.text(j, i, f"{matrix[i, j]}\n{share[i, j]:.0%}", ha="center", va="center",
                        fontsize=8, color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def curve_points(is_positive: np.ndarray, score: np.ndarray) -> dict[str, Any]:
    """ROC and precision-recall points of ``score`` for the binary truth ``is_positive``
    (scikit-learn), with ROC AUC and average precision (None when one class is absent)."""
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    truth = np.asarray(is_positive, bool)
    score = np.asarray(score, np.float64)
    if truth.all() or not truth.any():
        return {"fpr": None, "tpr": None, "precision": None, "recall": None,
                "roc_auc": None, "average_precision": None}
    fpr, tpr, _ = roc_curve(truth, score)
    precision, recall, _ = precision_recall_curve(truth, score)
    return {"fpr": fpr, "tpr": tpr, "precision": precision, "recall": recall,
            "roc_auc": float(roc_auc_score(truth, score)),
            "average_precision": float(average_precision_score(truth, score))}


def roc_pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], positive_class: str,
                  path: Path) -> dict[str, dict[str, float | None]]:
    """ROC (left) and precision-recall (right) curves of ``positive_class`` against the
    rest, one line per entry of ``curves`` (title -> (is_positive, score)), the AUC and
    average precision in the legends. Returns those figures per title."""
    plt = _pyplot()
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.4), dpi=100)
    figures: dict[str, dict[str, float | None]] = {}
    for title, (truth, score) in curves.items():
        points = curve_points(truth, score)
        figures[title] = {"roc_auc": points["roc_auc"],
                          "average_precision": points["average_precision"],
                          "tiles": int(np.asarray(truth).size),
                          "positives": int(np.asarray(truth, bool).sum())}
        if points["roc_auc"] is None:
            continue
        roc.plot(points["fpr"], points["tpr"], label=f"{title} (AUC {points['roc_auc']:.3f})")
        pr.plot(points["recall"], points["precision"], drawstyle="steps-post",
                label=f"{title} (AP {points['average_precision']:.3f})")
    roc.plot([0, 1], [0, 1], ":", color="grey", linewidth=1)
    roc.set_xlabel(f"false positive rate (1 - specificity ({positive_class}))")
    roc.set_ylabel(f"true positive rate (sensitivity ({positive_class}))")
    roc.set_title(f"ROC: {positive_class} against the rest")
    pr.set_xlabel(f"recall (sensitivity ({positive_class}))")
    pr.set_ylabel("precision")
    pr.set_title(f"Precision-recall: {positive_class}")
    for ax in (roc, pr):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="lower right" if ax is roc else "lower left")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return figures
