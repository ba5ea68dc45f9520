"""Python API of the batch workflows: the same work as ``histotile tile`` and
``histotile run``, with keyword arguments instead of options, returning the per-slide
records (and writing the same outputs and reports)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from histotile.workflows.options import HeatmapOptions, RunOptions
from histotile.workflows.tasks.batch import slide_batch
from histotile.workflows.tasks.batch import tile_batch as _tile_batch
from histotile.workflows.tasks.execution import Execution
from histotile.workflows.tasks.report import SlideRecord, write_report

_HEATMAP = HeatmapOptions()  # the defaults of run_batch's heatmap keywords


def tile_batch(slides: Iterable[str | Path] | str | Path, out_dir: str | Path, *,
               classes: str | None = None, annotations: str | Path | None = None,
               balance: str | dict[str, float] | None = None, export_images: bool = False,
               execution: Execution | None = None, overwrite: bool = False,
               progress: bool = False, strict: bool = False,
               annotations_for_all: bool = False, **tiling: Any) -> list[SlideRecord]:
    """Tile slides (files, folders or glob patterns) into ``out_dir``.

    Args:
        classes: ``"normal,tumour=#00ff00"``: class order and painted-overlay colours.
        annotations: folder (or file) of annotations; default: beside each slide.
        annotations_for_all: allow one annotation file for several slides.
        balance: class ratios for the combined manifest, e.g. ``{"normal": 1, "tumour": 1}``.
        strict: fail a slide whose annotation labels nothing instead of recording a
            warning (see :mod:`histotile.tiling.annotation_checks`).
        execution: where to run (:class:`Execution`: in-process, ``workers=N`` for a local
            Dask cluster, ``scheduler=ADDRESS`` for an existing one).
        **tiling: :class:`histotile.tiling.TilingSettings` fields (``tile_size``,
            ``stride``, ``magnification``, ``mpp``, ``level``, ``min_tissue``,
            ``keep_background``, ``seed``, ``min_label_fraction``).

    Returns:
        One :class:`SlideRecord` per slide; ``out_dir/manifest.csv`` holds every tile.
    """
    options = {**tiling, "classes": classes, "annotations": annotations,
               "annotations_for_all": annotations_for_all, "balance": balance,
               "export_images": export_images, "overwrite": overwrite, "strict": strict}
    records = _tile_batch(_as_list(slides), out_dir, options, execution=execution,
                          show_progress=progress)
    write_report(records, out_dir, name="tile-report")
    return records


def run_batch(slides: Iterable[str | Path] | str | Path, model_dir: str | Path,
              out_dir: str | Path, *, annotations: str | Path | None = None,
              annotations_for_all: bool = False, class_name: str | None = None,
              default_class: str | None = None,
              mode: str = _HEATMAP.mode, threshold: float | None = _HEATMAP.threshold,
              alpha: float = _HEATMAP.alpha, color: str = _HEATMAP.color,
              downsample: float | None = None,
              decision_threshold: float = _HEATMAP.decision_threshold,
              batch_size: int | None = None, tiling: dict[str, Any] | None = None,
              engine: str = RunOptions.engine, tta: bool = RunOptions.tta,
              execution: Execution | None = None, overwrite: bool = False,
              progress: bool = False) -> list[SlideRecord]:
    """Predict, write heatmap slides, decide and (where annotated) evaluate every slide.

    Outputs per slide in ``out_dir/<slide>/`` (``predictions.csv``, ``heatmap.tif``,
    ``preview.png``, ``evaluation.json``, ``side_by_side.png``), plus
    ``out_dir/run-report.csv``/``.json`` and ``out_dir/evaluation.json``. Reruns skip
    finished slides (see the README on resumable batches).

    Args:
        annotations, annotations_for_all: as for :func:`tile_batch`.
        class_name: the class shown and decided on (default: the model's positive class).
        default_class: the truth of unannotated tiles for evaluation (default: the
            model card's; see :mod:`histotile.class_roles`).
        mode, threshold, alpha, color, downsample: heatmap style (see
            :func:`histotile.postprocess.write_heatmap`); ``threshold`` None: the model
            card's operating point, else 0.5 (the predictions' JSON records which).
        decision_threshold: a slide is positive when at least this fraction of its
            tiles is positive.
        tiling: tiling overrides (default: tiles cut as in training).
        engine: the inference engine (see :class:`histotile.models.Predictor`).
        tta: test-time augmentation (each tile's 8 flips and rotations averaged).
    """
    options = {"annotations": annotations, "annotations_for_all": annotations_for_all,
               "class_name": class_name,
               "default_class": default_class, "mode": mode,
               "threshold": threshold, "alpha": alpha, "color": color,
               "downsample": downsample, "decision_threshold": decision_threshold,
               "batch_size": batch_size, "engine": engine, "overwrite": overwrite,
               "tta": tta,
               **(tiling or {})}
    records = slide_batch("run", _as_list(slides), out_dir, options, model_dir=model_dir,
                          execution=execution, show_progress=progress)
    write_report(records, out_dir, name="run-report")
    return records


def _as_list(slides: Iterable[str | Path] | str | Path) -> list[str | Path]:
    return [slides] if isinstance(slides, (str, Path)) else list(slides)
