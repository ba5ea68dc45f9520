"""PNG plots of a training run (matplotlib with the Agg backend, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    for ax, (title, matrix) in zip(axes[0], matrices.items()):
        matrix = np.asarray(matrix, dtype=np.int64)
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
