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
from histotile._settings import refuse_unknown
from histotile.errors import ConfigError, DatasetError
from histotile.models.specs import SMALLEST_TILE_SIZE
from histotile.postprocess.decisions import (
    DEFAULT_FRACTION_THRESHOLD,
    DEFAULT_TARGET_SENSITIVITY,
)

THRESHOLDS = tuple(round(0.1 * k, 2) for k in range(1, 10))  # 0.10, 0.20, ..., 0.90


@dataclass(frozen=True)
class ImageEvaluationSettings:
    """What ``histotile evaluate-images`` decides with, besides the model and the folder:
    built once by the CLI or the API, passed whole to :func:`evaluate_image_folder`.

    Attributes:
        positive_class: the class called positive (None: the model card's).
        patch_size, patch_stride: patch geometry in image pixels (None: as the model was
            trained; a stride of None: the patch size, no overlap).
        tile_threshold: positive-class probability from which a patch is positive (None:
            the model card's operating point, else
            :data:`~histotile.models.operating_point.DEFAULT_TILE_THRESHOLD`).
        tta: test-time augmentation: average each patch's 8 flips and rotations.
        target_sensitivity: the chosen t is the highest whose sensitivity reaches this.
        batch_size: patches per inference batch (None: the model's).
    """

    positive_class: str | None = None
    patch_size: int | None = None
    patch_stride: int | None = None
    tile_threshold: float | None = None
    tta: bool = False
    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY
    batch_size: int | None = None

    def __post_init__(self) -> None:
        def bad(name: str, problem: str) -> ConfigError:
            return ConfigError(f"{name}={getattr(self, name)!r}: {problem}")

        if self.patch_size is not None and self.patch_size < SMALLEST_TILE_SIZE:
            raise bad("patch_size", f"patches of {SMALLEST_TILE_SIZE} px or more")
        for name in ("patch_stride", "batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise bad(name, "must be 1 or more")
        for name in ("tile_threshold", "target_sensitivity"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise bad(name, "must be between 0 and 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ImageEvaluationSettings:
        """From option names and values; unknown names are a :class:`ConfigError`."""
        refuse_unknown(cls, values, "evaluate-images")
        return cls(**values)


@dataclass
class ImageEvaluation:
    """What :func:`evaluate_images` found.

    Attributes:
        images: one row per image: ``image``, ``label``, ``truth`` (label is the positive
            class), ``patches``, ``positive_fraction``, ``majority`` (most common patch
            class), ``called`` (positive at the chosen fraction threshold t, else at
            :data:`~histotile.postprocess.decisions.DEFAULT_FRACTION_THRESHOLD`).
        sweep: the threshold table (:class:`histotile.postprocess.decisions.SweepResult`).
        outputs: files written, by name.
        tile_threshold: the patch threshold used and where it came from (``value``,
            ``source``: the card, the flag, or
            :data:`~histotile.models.operating_point.DEFAULT_TILE_THRESHOLD`).
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
        patch_size = int(saved.get("patch_size") or saved["tile_size"])
        patch_stride = patch_stride or saved.get("step")
    return patch_size, patch_stride


def evaluate_images(predictor, folder: str | Path, out_dir: str | Path,
                    settings: ImageEvaluationSettings | None = None, *,
                    thresholds: Sequence[float] = THRESHOLDS,
                    progress: Callable[[int, int], None] | None = None) -> ImageEvaluation:
    """Patch-majority image decisions and the threshold table (see the module).

    Args:
        predictor: a loaded model (:class:`histotile.models.Predictor` or any
            :class:`~histotile.postprocess.predict.TilePredictor`).
        folder: images in one sub-folder per class, named like the model's classes.
        settings: the positive class, patch geometry, tile threshold and target
            sensitivity (:class:`ImageEvaluationSettings`; its ``tta`` and
            ``batch_size`` are the predictor's, set when it is loaded).
        thresholds: the fractions t of the table.
        progress: ``progress(done, total)`` in patches.
    """
    from histotile.class_roles import card_roles
    from histotile.models.data import TileReader
    from histotile.models.imagefolder import scan_imagefolder
    from histotile.models.operating_point import tile_threshold as resolve_tile_threshold
    from histotile.postprocess.decisions import called_positive, threshold_sweep

    settings = settings or ImageEvaluationSettings()
    folder, out_dir = Path(folder), Path(out_dir)
    classes = [str(c) for c in predictor.classes]
    roles = card_roles({**predictor.card, "classes": classes},
                       positive_class=settings.positive_class)
    positive = roles.positive_class
    used = resolve_tile_threshold(predictor.card, settings.tile_threshold, positive)
    tile_threshold = used.value
    size, stride = patch_geometry(predictor.card, settings.patch_size, settings.patch_stride)
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
        thresholds=thresholds, target_sensitivity=settings.target_sensitivity,
        positive_class=positive, tile_threshold=tile_threshold)
    chosen = (DEFAULT_FRACTION_THRESHOLD if sweep.chosen_threshold is None
              else sweep.chosen_threshold)
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


def evaluate_image_folder(model_dir: str | Path, folder: str | Path, out_dir: str | Path,
                          settings: ImageEvaluationSettings | None = None,
                          show_progress: bool = True) -> ImageEvaluation:
    """``histotile evaluate-images``: load the model (with the settings' ``batch_size``
    and ``tta``), evaluate the folder (:func:`evaluate_images`) and print the table."""
    from histotile.workflows.options import ModelUse
    from histotile.workflows.tasks.process import load_predictor

    settings = settings or ImageEvaluationSettings()
    predictor = load_predictor(model_dir, ModelUse(batch_size=settings.batch_size,
                                                   tta=settings.tta))
    result = evaluate_images(predictor, folder, out_dir, settings)
    if show_progress:
        from histotile.workflows.cli.console import out

        out.print(Path(result.outputs["markdown"]).read_text(encoding="utf-8"), markup=False,
                  highlight=False)
        out.print(f"written to {out_dir}: " + ", ".join(
            Path(p).name for p in result.outputs.values()))
    return result
