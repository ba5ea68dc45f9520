"""The training audit trail in the model folder, so anyone can recompute every metric
(with scikit-learn or by hand):

``splits.csv``: every tile with its id, file, position, group, label, part (development
or test) and validation fold: no group straddles two parts or folds.

``predictions_oof.csv``: the out-of-fold predictions: every validation tile of every fold
(predicted by the model that did not train on it) and every test tile (by the final
model), with tile id, group, label and the probability of each class.

``image_level.csv``: when tiles come from several tiles per image or group (patches of
an image, tiles of a patient), the patch-majority call per image and per group next to
its true label, per fold and for the test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SPLITS_FILE = "splits.csv"
PREDICTIONS_FILE = "predictions_oof.csv"
IMAGE_LEVEL_FILE = "image_level.csv"


def splits_frame(table, splits) -> pd.DataFrame:
    """One row per tile: ``tile`` (row id in the training table), ``path``, ``x``, ``y``,
    ``group``, ``label``, ``part``, ``validation_fold`` (0: test or not validated)."""
    part = np.full(len(table.frame), "development", dtype=object)
    part[splits.test] = "test"
    fold = np.zeros(len(table.frame), np.int64)
    for k, (_, val) in enumerate(splits.folds, start=1):
        fold[val] = k
    frame = table.frame
    return pd.DataFrame({"tile": np.arange(len(frame)), "path": frame["path"].to_numpy(),
                         "x": frame["x"].to_numpy(), "y": frame["y"].to_numpy(),
                         "group": table.groups, "label": frame["label"].to_numpy(),
                         "part": part, "validation_fold": fold})


def predictions_frame(table, parts: list[tuple[str, np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """``parts``: ``(part, rows, probabilities)`` per fold (``fold1``...) and ``test``."""
    frames = []
    for name, rows, proba in parts:
        rows = np.asarray(rows, np.int64)
        frame = pd.DataFrame({"part": name, "tile": rows,
                              "path": table.frame["path"].to_numpy()[rows],
                              "group": table.groups[rows],
                              "label": table.frame["label"].to_numpy()[rows]})
        proba = np.asarray(proba, np.float64)
        for k, cls in enumerate(table.classes):
            frame[f"prob_{cls}"] = proba[:, k]
        frame["predicted"] = np.asarray(table.classes, dtype=object)[proba.argmax(axis=1)] \
            if len(rows) else []
        frames.append(frame)
    columns = ["part", "tile", "path", "group", "label",
               *[f"prob_{c}" for c in table.classes], "predicted"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def majority_frame(predictions: pd.DataFrame, positive_class: str | None) -> pd.DataFrame:
    """Patch-majority calls per image (``path``) and per ``group``, per part: one row per
    item with ``level``, ``name``, ``label`` (its tiles' most common true label),
    ``predicted`` (its tiles' most common predicted class), ``tiles`` and, for a positive
    class, ``positive_fraction``. Empty when every item has a single tile."""
    rows = []
    for level, key in (("image", "path"), ("group", "group")):
        if predictions.empty or predictions.groupby(key).size().max() <= 1:
            continue
        for (part, name), items in predictions.groupby(["part", key], sort=False):
            row = {"part": part, "level": level, "name": name,
                   "label": items["label"].mode().iloc[0],
                   "predicted": items["predicted"].mode().iloc[0], "tiles": len(items)}
            if positive_class is not None:
                row["positive_fraction"] = float((items["predicted"] == positive_class).mean())
            rows.append(row)
    return pd.DataFrame(rows)


def write_audit(folder: Path, table, splits, parts: list[tuple[str, np.ndarray, np.ndarray]],
                positive_class: str | None) -> dict[str, float]:
    """Write the three files into ``folder``; return the image- and group-level accuracy
    of the pooled validation folds and of the test split (for the log)."""
    splits_frame(table, splits).to_csv(folder / SPLITS_FILE, index=False)
    predictions = predictions_frame(table, parts)
    predictions.to_csv(folder / PREDICTIONS_FILE, index=False, float_format="%.6g")
    majority = majority_frame(predictions, positive_class)
    accuracy: dict[str, float] = {}
    if not majority.empty:
        majority.to_csv(folder / IMAGE_LEVEL_FILE, index=False, float_format="%.6g")
        majority["where"] = np.where(majority["part"] == "test", "test", "folds")
        for (level, where), items in majority.groupby(["level", "where"]):
            accuracy[f"{level}_{where}"] = float((items["label"] == items["predicted"]).mean())
    return accuracy
