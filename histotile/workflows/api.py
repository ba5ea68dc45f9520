"""Python API of the workflows: the same work as the commands, each taking the
command's options as one typed dataclass, built directly or with ``from_dict``
from the CLI's option names: the slide commands (``histotile tile``, ``qc``,
``predict``, ``heatmap``, ``evaluate``, ``run``, ``explain``; their options in
:mod:`histotile.workflows.slide_options`, and where to run: :class:`Execution`),
``train`` (:class:`~histotile.models.TrainSettings` and
:class:`~histotile.workflows.training.task.TrainPlacement`), ``evaluate-images``,
``export``, ``demo`` and ``bench``; each returns its results and writes the same
outputs and reports as the command."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from histotile.models.settings import TrainSettings
from histotile.models.train import TrainResult
from histotile.workflows.benchmark.suite import BenchmarkResult, BenchmarkSettings
from histotile.workflows.demo import DEMO_OUT, DemoSettings
from histotile.workflows.slide_options import (
    EvaluateOptions,
    ExplainOptions,
    HeatmapOptions,
    PredictOptions,
    QCOptions,
    RunOptions,
    TileOptions,
)
from histotile.workflows.tasks import batch
from histotile.workflows.tasks.execution import Execution
from histotile.workflows.tasks.export import ExportSettings
from histotile.workflows.tasks.image_evaluation import ImageEvaluation, ImageEvaluationSettings
from histotile.workflows.tasks.report import SlideRecord, write_report
from histotile.workflows.training.task import TrainPlacement

Slides = Iterable[str | Path] | str | Path
"""Slide files, folders (searched recursively) or glob patterns; one, or several."""


def tile_batch(slides: Slides, out_dir: str | Path, options: TileOptions | None = None, *,
               execution: Execution | None = None, progress: bool = False,
               **deprecated: Any) -> list[SlideRecord]:
    """Tile slides into ``out_dir``: one manifest per slide and ``out_dir/manifest.csv``
    for all (see :class:`TileOptions`: the tiling, classes and palette, annotations,
    balance, strict, images, stain normaliser).

    ``execution``: where to run (:class:`Execution`: in-process, ``workers=N`` for a
    local Dask cluster, ``scheduler=ADDRESS`` for an existing one). ``deprecated``: the
    keyword options of earlier versions (``classes=``, ``tile_size=`` ...), accepted with
    a :class:`DeprecationWarning`; pass ``options`` instead.
    """
    options = _typed(TileOptions, options, deprecated, "tile_batch")
    records = batch.tile_batch(_as_list(slides), out_dir, options, execution=execution,
                               show_progress=progress)
    write_report(records, out_dir, name="tile-report")
    return records


def qc_batch(slides: Slides, out_dir: str | Path, options: QCOptions | None = None, *,
             execution: Execution | None = None, progress: bool = False
             ) -> list[SlideRecord]:
    """Screen slides (``histotile qc``): per slide ``out_dir/<slide>/qc.png`` and a
    record; ``out_dir/qc-report.csv``/``.json``."""
    from histotile.workflows.tasks.qc import qc_batch as run_qc

    records = run_qc(_as_list(slides), out_dir, options, execution=execution,
                     show_progress=progress)
    write_report(records, out_dir, name="qc-report")
    return records


def predict_batch(slides: Slides, model_dir: str | Path, out_dir: str | Path,
                  options: PredictOptions | None = None, *,
                  execution: Execution | None = None, progress: bool = False
                  ) -> list[SlideRecord]:
    """Predict every tissue tile of each slide (``histotile predict``):
    ``out_dir/<slide>/predictions.csv`` and ``.json`` (and the QuPath files)."""
    records = batch.predict_batch(_as_list(slides), model_dir, out_dir, options,
                                  execution=execution, show_progress=progress)
    write_report(records, out_dir, name="predict-report")
    return records


def heatmap_batch(slides: Slides, predictions_dir: str | Path, out_dir: str | Path,
                  options: HeatmapOptions | None = None, *,
                  execution: Execution | None = None, progress: bool = False
                  ) -> list[SlideRecord]:
    """Heatmap slides, previews and decisions (``histotile heatmap``) from the
    predictions saved in ``predictions_dir`` by :func:`predict_batch` or
    :func:`run_batch`."""
    records = batch.heatmap_batch(_as_list(slides), predictions_dir, out_dir, options,
                                  execution=execution, show_progress=progress)
    write_report(records, out_dir, name="heatmap-report")
    return records


def evaluate_batch(slides: Slides, predictions_dir: str | Path, out_dir: str | Path,
                   options: EvaluateOptions | None = None, *,
                   execution: Execution | None = None, progress: bool = False
                   ) -> list[SlideRecord]:
    """Saved predictions scored against the slides' annotations (``histotile
    evaluate``): per slide ``evaluation.json`` and pictures; ``out_dir/evaluation.json``
    over all."""
    records = batch.evaluate_batch(_as_list(slides), predictions_dir, out_dir, options,
                                   execution=execution, show_progress=progress)
    write_report(records, out_dir, name="evaluate-report")
    return records


def run_batch(slides: Slides, model_dir: str | Path, out_dir: str | Path,
              options: RunOptions | None = None, *, execution: Execution | None = None,
              progress: bool = False, **deprecated: Any) -> list[SlideRecord]:
    """Predict, write heatmap slides, decide and (where annotated) evaluate every slide.

    Outputs per slide in ``out_dir/<slide>/`` (``predictions.csv``, ``heatmap.tif``,
    ``preview.png``, ``evaluation.json``, ``side_by_side.png``), plus
    ``out_dir/run-report.csv``/``.json`` and ``out_dir/evaluation.json``. Reruns skip
    finished slides (see the README on resumable batches).

    ``options``: :class:`RunOptions` (the positive class, thresholds, heatmap look,
    tiling, engine, annotations...; ``RunOptions.from_dict({"engine": "torch"})`` takes
    the CLI's option names). ``execution``: as for :func:`tile_batch`. ``deprecated``:
    the keyword options of earlier versions (``class_name=``, ``mode=``, ``tiling={...}``
    ...), accepted with a :class:`DeprecationWarning`; pass ``options`` instead.
    """
    if "tiling" in deprecated:  # the old keyword held the tiling options as a dict
        deprecated = {**(deprecated.pop("tiling") or {}), **deprecated}
    options = _typed(RunOptions, options, deprecated, "run_batch")
    records = batch.run_batch(_as_list(slides), model_dir, out_dir, options,
                              execution=execution, show_progress=progress)
    write_report(records, out_dir, name="run-report")
    return records


def explain_batch(slides: Slides, model_dir: str | Path, out_dir: str | Path,
                  options: ExplainOptions | None = None, *,
                  execution: Execution | None = None, progress: bool = False
                  ) -> list[SlideRecord]:
    """Galleries of each slide's most telling tiles with their Grad-CAM (``histotile
    explain``): ``out_dir/<slide>/explanations.png`` and ``.html``."""
    from histotile.workflows.tasks.explain import explain_batch as explain

    records = explain(_as_list(slides), model_dir, out_dir, options, execution=execution,
                      show_progress=progress)
    write_report(records, out_dir, name="explain-report")
    return records


def train_model(data: str | Path, out_dir: str | Path, settings: TrainSettings | None = None,
                placement: TrainPlacement | None = None, *, overwrite: bool = False,
                progress: bool = False) -> TrainResult:
    """Train a tile classifier, as ``histotile train`` does: ``settings`` say how
    (:class:`~histotile.models.TrainSettings`), ``placement`` where
    (:class:`~histotile.workflows.training.task.TrainPlacement`: the folds on a Dask
    cluster; data-parallel ``ddp`` needs the command line, started by torchrun)."""
    from histotile.workflows.training.parallel import train_command

    return train_command(data, out_dir, settings or TrainSettings(), placement,
                         overwrite=overwrite, show_progress=progress)


def evaluate_images(model_dir: str | Path, folder: str | Path, out_dir: str | Path,
                    settings: ImageEvaluationSettings | None = None, *,
                    progress: bool = False) -> ImageEvaluation:
    """Image-level decisions and the threshold table of an image folder, as
    ``histotile evaluate-images`` does (see
    :mod:`histotile.workflows.tasks.image_evaluation`)."""
    from histotile.workflows.tasks.image_evaluation import evaluate_image_folder

    return evaluate_image_folder(model_dir, folder, out_dir, settings,
                                 show_progress=progress)


def export_model(model_dir: str | Path, out: str | Path,
                 settings: ExportSettings | None = None, *,
                 overwrite: bool = False) -> dict[str, Any]:
    """Write a model folder as one ONNX or TorchScript file plus ``<out>.card.json``, as
    ``histotile export`` does; returns the exported card."""
    from histotile.workflows.tasks.export import export_file

    return export_file(model_dir, out, settings, overwrite=overwrite)


def run_demo(out_dir: str | Path = DEMO_OUT, settings: DemoSettings | None = None, *,
             overwrite: bool = False, progress: bool = False) -> dict[str, str]:
    """The whole pipeline on the bundled slide, as ``histotile demo`` does; returns the
    outputs by name."""
    from histotile.workflows import demo

    return demo.run_demo(out_dir, settings, overwrite=overwrite, quiet=not progress)


def run_benchmark(settings: BenchmarkSettings | None = None) -> BenchmarkResult:
    """Time every pipeline stage on a synthetic slide, as ``histotile bench`` does."""
    from histotile.workflows.benchmark import run_benchmark as run

    return run(settings)


def _typed(settings: type[Any], options: Any, deprecated: dict[str, Any], where: str) -> Any:
    """``options``, or (deprecated) the options of the old keyword arguments."""
    if not deprecated:
        return options
    if options is not None:
        raise TypeError(f"{where}: pass options or keyword options, not both")
    warnings.warn(f"{where}({', '.join(f'{k}=...' for k in deprecated)}): keyword options "
                  f"are deprecated; pass options={settings.__name__}(...) (or "
                  f"{settings.__name__}.from_dict({{...}}))", DeprecationWarning, stacklevel=3)
    return settings.from_dict(deprecated)


def _as_list(slides: Slides) -> list[str | Path]:
    return [slides] if isinstance(slides, (str, Path)) else list(slides)
