"""Image-level decisions of the BreakHis study (``histotile evaluate-images``): every image
of a folder (``<folder>/<class>/<image>``) is cut into patches as the model was trained,
each patch classified, and the image called by patch majority; the **threshold table**
gives, for t = 0.10 ... 0.90, the accuracy, sensitivity and specificity of "an image is
positive when at least t of its patches are" (the rule of
:func:`histotile.postprocess.decisions.called_positive`, shared with ``slide_decision``).

Outputs in ``out_dir``: ``images.csv`` (per image: class, patches, positive fraction,
majority class), ``thresholds.csv`` and ``thresholds.md`` (the table, the rule and the
threshold chosen for ``target_sensitivity``), ``thresholds.png`` (the rates against t).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histotile._atomic import write_text_atomic
from histotile.errors import DatasetError

THRESHOLDS = tuple(round(0.1 * k, 2) for k in range(1, 10))  # 0.10, 0.20, ..., 0.90


@dataclass
class ImageEvaluation:
    """What :func:`evaluate_images` found.

    Attributes:
        images: one row per image: ``image``, ``label``, ``truth`` (label is the positive
            class), ``patches``, ``positive_fraction``, ``majority`` (most common patch
            class), ``called`` (positive at the chosen threshold, else at 0.5).
        sweep: the threshold table (:class:`histotile.postprocess.decisions.SweepResult`).
        outputs: files written, by name.
        tile_threshold: the patch threshold used and where it came from (``value``,
            ``source``: the card, the flag, or the default 0.5).
    """

    images: pd.DataFrame
    sweep: Any
    outputs: dict[str, str]
    tile_threshold: dict[str, Any] | None = None


def patch_geometry(card: dict[str, Any], patch_size: int | None,
                   patch_stride: int | None) -> tuple[int | None, int | None]:
    """The patch side and stride (px): the flags, else those the model was trained with
    (its card's image-folder tiling), else whole images (None)."""
    saved = ((card.get("tiling") or {}).get("settings")) or {}
    if patch_size is None and saved.get("patchify"):
        patch_size = int(saved.get("patch_size") or saved.get("tile_size"))
        patch_stride = patch_stride or saved.get("step")
    return patch_size, patch_stride


def evaluate_images(predictor, folder: str | Path, out_dir: str | Path, *,
                    positive_class: str | None = None, patch_size: int | None = None,
                    patch_stride: int | None = None,
                    thresholds: Sequence[float] = THRESHOLDS,
                    target_sensitivity: float = 1.0, tile_threshold: float | None = None,
                    progress: Callable[[int, int], None] | None = None) -> ImageEvaluation:
    """Patch-majority image decisions and the threshold table (see the module).

    Args:
        predictor: a loaded model (:class:`histotile.models.Predictor` or any
            :class:`~histotile.postprocess.predict.TilePredictor`).
        folder: images in one sub-folder per class, named like the model's classes.
        positive_class: the class called positive (default: the model card's).
        patch_size, patch_stride: patch geometry in image pixels (default: the card's).
        thresholds: the fractions t of the table.
        target_sensitivity: the chosen t is the highest whose sensitivity reaches this.
        tile_threshold: positive-class probability from which a patch is positive
            (default: the model card's operating point, else 0.5).
        progress: ``progress(done, total)`` in patches.
    """
    from histotile.class_roles import card_roles
    from histotile.models.data import TileReader
    from histotile.models.imagefolder import scan_imagefolder
    from histotile.models.operating_point import tile_threshold as resolve_tile_threshold
    from histotile.postprocess.decisions import called_positive, threshold_sweep

    folder, out_dir = Path(folder), Path(out_dir)
    classes = [str(c) for c in predictor.classes]
    roles = card_roles({**predictor.card, "classes": classes}, positive_class=positive_class)
    positive = roles.positive_class
    used = resolve_tile_threshold(predictor.card, tile_threshold, positive)
    tile_threshold = used.value
    size, stride = patch_geometry(predictor.card, patch_size, patch_stride)
    frame, _, _, notes = scan_imagefolder(folder, patch_size=size, patch_stride=stride)
    unknown = sorted(set(frame["label"]) - set(classes))
    if unknown:
        raise DatasetError(f"{folder}: class folder(s) {', '.join(unknown)} are not classes "
                           f"of the model ({', '.join(classes)}); rename or remove them")
    reader = TileReader(frame["path"].tolist(), frame["x"].to_numpy(np.int64),
                        frame["y"].to_numpy(np.int64), frame["level"].to_numpy(np.int64),
                        frame["read_size"].to_numpy(np.int64), int(predictor.tile_size))
    probabilities = _predict(predictor, reader, progress)
    reader.close()
    frame["positive"] = probabilities[:, classes.index(positive)] >= tile_threshold
    frame["predicted"] = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    images = _per_image(frame, positive)
    sweep = threshold_sweep(
        [(row.image, float(row.positive_fraction), bool(row.truth))
         for row in images.itertuples(index=False)],
        thresholds=thresholds, target_sensitivity=target_sensitivity,
        positive_class=positive, tile_threshold=tile_threshold)
    chosen = 0.5 if sweep.chosen_threshold is None else sweep.chosen_threshold
    images["called"] = called_positive(images["positive_fraction"].to_numpy(), chosen)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {"images": str(write_text_atomic(out_dir / "images.csv",
                                               images.to_csv(index=False))),
               "thresholds": str(sweep.save(out_dir / "thresholds.csv", overwrite=True))}
    header = (f"# Image-level threshold table\n\n{len(images)} images of {folder}, "
              f"{int(frame.shape[0])} patches"
              + (f" of {size} px at stride {stride or size}" if size else "")
              + f"; positive class {positive!r}; a patch is positive when its {positive} "
              f"probability is >= {used.value:.4g} (threshold from the {used.source}).\n\n"
              + "".join(f"- {n}\n" for n in notes)
              + "\n")
    outputs["markdown"] = str(write_text_atomic(out_dir / "thresholds.md",
                                                header + sweep.to_markdown()))
    outputs["plot"] = str(_plot(sweep, out_dir / "thresholds.png", positive))
    return ImageEvaluation(images, sweep, outputs, used.to_dict())


def _predict(predictor, reader, progress) -> np.ndarray:
    """Class probabilities of every patch, in batches."""
    batch = int(getattr(predictor, "batch_size", 64) or 64)
    total = len(reader)
    parts = []
    for start in range(0, total, batch):
        tiles = np.stack([reader[i] for i in range(start, min(total, start + batch))])
        parts.append(np.asarray(predictor.predict(tiles), np.float64))
        if progress is not None:
            progress(min(total, start + batch), total)
    if not parts:
        raise DatasetError("no patches to classify: the folder's images are all smaller "
                           "than one patch")
    return np.concatenate(parts)


def _per_image(frame: pd.DataFrame, positive: str) -> pd.DataFrame:
    grouped = frame.groupby("path", sort=False)
    images = pd.DataFrame({
        "image": grouped["path"].first().map(lambda p: Path(p).name).to_numpy(),
        "label": grouped["label"].first().to_numpy(),
        "patches": grouped.size().to_numpy(),
        "positive_fraction": grouped["positive"].mean().to_numpy(),
        "majority": grouped["predicted"].agg(lambda s: s.mode().iloc[0]).to_numpy()})
    images["truth"] = images["label"] == positive
    return images


def _plot(sweep, path: Path, positive: str) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from histotile._atomic import atomic_path

    table = sweep.table
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for column in ("accuracy", "sensitivity", "specificity"):
        label = column if column == "accuracy" else f"{column} ({positive})"
        ax.plot(table["threshold"], table[column], marker="o", label=label)
    if sweep.chosen_threshold is not None:
        ax.axvline(sweep.chosen_threshold, color="grey", linestyle="--",
                   label=f"chosen t = {sweep.chosen_threshold:.2f}")
    ax.set_xlabel("t: image positive when at least t of its patches are")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
