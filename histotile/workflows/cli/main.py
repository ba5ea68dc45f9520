"""The ``histotile`` command line.

Imports stay light: ``histotile --help`` and ``histotile info`` load only click, rich and
the slide readers. torch, dask and matplotlib are imported by the commands that use them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from histotile import __version__
from histotile.errors import HistotileError
from histotile.tiling.qc import QCSettings
from histotile.tiling.settings import TilingSettings
from histotile.workflows.cli.groups import (
    annotation_inputs,
    decision_threshold_option,
    default_class_option,
    geojson_option,
    heatmap_look,
    model_options,
    output_options,
    positive_class_option,
    predictions_option,
    slide_geometry,
    slides_argument,
    threshold_option,
    tile_options,
)
from histotile.workflows.cli.options import (
    config_option,
    examples,
    execution_from,
    execution_options,
    finish,
    handle_errors,
    option,
    overwrite_option,
    typed,
)
from histotile.workflows.cli.tools import bench, demo, export, serve
from histotile.workflows.cli.train import evaluate_images, train
from histotile.workflows.cli.watch import watch
from histotile.workflows.options import Geometry
from histotile.workflows.slide_options import (
    EvaluateOptions,
    HeatmapOptions,
    PredictOptions,
    QCOptions,
    RunOptions,
    TileOptions,
)
from histotile.workflows.tasks.execution import Execution

# -- the commands -----------------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="histotile")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """histotile: whole-slide images to tiles, tile classifiers and heatmap slides.

    \b
    Stages: info -> tile -> train -> predict -> heatmap -> evaluate; 'run' does
    predict + heatmap + decision (+ evaluation) for every slide of a folder.
    SLIDES are files, folders (searched recursively) or quoted glob patterns.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # Stages may raise their own loggers' level (training logs INFO to train.log); the
    # terminal shows only what -v asks for.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    # tifffile reports damaged files through warnings; histotile raises clear errors instead.
    logging.getLogger("tifffile").setLevel(logging.ERROR if verbose < 2 else logging.DEBUG)


@cli.command(epilog=examples("info"))
@slides_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
@handle_errors
def info(slides: tuple[str, ...], as_json: bool) -> None:
    """Show slides' metadata: size, pyramid levels, resolution, associated images."""
    from histotile.workflows.tasks.inputs import expand_slides, slide_info

    paths = expand_slides(slides)
    results, failed = [], 0
    for path in paths:
        try:
            results.append(slide_info(path))
        except HistotileError as error:
            failed += 1
            results.append({"path": str(path), "error": str(error)})
    if as_json:
        click.echo(json.dumps(results, indent=2))
    else:
        from histotile.workflows.cli.console import out, print_info

        for result in results:
            print_info(result)
        out.print(f"{len(results)} slide(s), {failed} unreadable")
    sys.exit(1 if failed else 0)


def _qc_option(name: str, kind: click.ParamType, what: str) -> Callable:
    return option(QCSettings, name, "--" + name.replace("_", "-"), type=kind, help=what)


@cli.command(epilog=examples("qc"))
@slides_argument
@output_options("OUT/<slide>/qc.png per slide, OUT/qc-report.csv/.json")
@_qc_option("pen_fail", click.FloatRange(0, 1),
            "Share of the specimen in pen ink at which a slide fails.")
@_qc_option("blur_fail", click.FloatRange(0, 1),
            "Share of sampled tissue tiles out of focus at which a slide fails.")
@_qc_option("fold_fail", click.FloatRange(0, 1),
            "Share of the specimen folded at which a slide fails.")
@_qc_option("bubble_fail", click.FloatRange(0, 1),
            "Share of the specimen under air bubbles at which a slide fails.")
@_qc_option("edge_fail", click.FloatRange(0, 1),
            "Share of the specimen along coverslip edges at which a slide fails.")
@_qc_option("blur_tiles", click.IntRange(0),
            "Tissue tiles sampled for focus (0 skips the focus check).")
@execution_options
@config_option
@handle_errors
@typed(QCOptions)
def qc(slides: tuple[str, ...], out_dir: str, options: QCOptions,
       execution: Execution) -> None:
    """Screen slides: tissue, pen ink, blur, fold, bubble and coverslip-edge fractions, a
    pass/warn/fail flag and an outlined QC picture per slide."""
    from histotile.workflows.tasks.qc import qc_batch

    sys.exit(finish(qc_batch(slides, out_dir, options, execution), "qc", out_dir))


@cli.command(epilog=examples("tile"))
@slides_argument
@output_options("one manifest per slide and manifest.csv for all")
@annotation_inputs
@tile_options
@slide_geometry(TilingSettings)
@execution_options
@config_option
@handle_errors
@typed(TileOptions)
def tile(slides: tuple[str, ...], out_dir: str, options: TileOptions,
         execution: Execution) -> None:
    """Cut slides into tissue tiles labelled from annotations; write the manifest."""
    from histotile.workflows.tasks.batch import tile_batch

    sys.exit(finish(tile_batch(slides, out_dir, options, execution), "tile", out_dir))


@cli.command(epilog=examples("predict"))
@slides_argument
@model_options
@output_options("OUT/<slide>/predictions.csv and .json per slide")
@geojson_option
@threshold_option
@slide_geometry(Geometry)
@execution_options
@config_option
@handle_errors
@typed(PredictOptions)
def predict(slides: tuple[str, ...], model_dir: str, out_dir: str, options: PredictOptions,
            execution: Execution) -> None:
    """Predict every tissue tile of each slide; write a predictions table per slide."""
    from histotile.workflows.tasks.batch import predict_batch

    records = predict_batch(slides, model_dir, out_dir, options, execution)
    sys.exit(finish(records, "predict", out_dir))


@cli.command(epilog=examples("heatmap"))
@slides_argument
@predictions_option
@output_options("OUT/<slide>/heatmap.tif and its previews per slide")
@positive_class_option
@threshold_option
@decision_threshold_option
@heatmap_look
@execution_options
@config_option
@handle_errors
@typed(HeatmapOptions)
def heatmap(slides: tuple[str, ...], predictions_dir: str, out_dir: str,
            options: HeatmapOptions, execution: Execution) -> None:
    """Write alpha-blended heatmap slides (pyramidal TIFF) and PNG previews."""
    from histotile.workflows.tasks.batch import heatmap_batch

    records = heatmap_batch(slides, predictions_dir, out_dir, options, execution)
    sys.exit(finish(records, "heatmap", out_dir))


@cli.command(epilog=examples("evaluate"))
@slides_argument
@predictions_option
@output_options("OUT/<slide>/evaluation.json and pictures per slide, evaluation.json "
                "for all")
@annotation_inputs
@positive_class_option
@default_class_option
@threshold_option
@decision_threshold_option
@heatmap_look
@execution_options
@config_option
@handle_errors
@typed(EvaluateOptions)
def evaluate(slides: tuple[str, ...], predictions_dir: str, out_dir: str,
             options: EvaluateOptions, execution: Execution) -> None:
    """Compare predictions with annotations: confusion matrices, sensitivity, specificity,
    side-by-side images."""
    from histotile.workflows.tasks.batch import evaluate_batch

    records = evaluate_batch(slides, predictions_dir, out_dir, options, execution)
    sys.exit(finish(records, "evaluate", out_dir))


@cli.command(epilog=examples("explain"))
@slides_argument
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              required=True, help="Model folder written by 'histotile train' (torch).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--predictions", "predictions_dir", type=click.Path(exists=True), default=None,
              help="Saved predictions (from 'predict' or 'run'); default: predict again.")
@annotation_inputs
@click.option("--top", type=click.IntRange(1), default=8, show_default=True,
              help="Tiles per group (most positive, most negative, most uncertain).")
@click.option("--class", "class_name", default=None,
              help="Class to explain (default: the model card's positive class).")
@threshold_option
@slide_geometry(Geometry)
@execution_options
@overwrite_option
@config_option
@handle_errors
def explain(slides: tuple[str, ...], model_dir: str, out_dir: str, **options: Any) -> None:
    """Galleries (PNG and HTML) of each slide's most telling tiles with their Grad-CAM."""
    from histotile.workflows.tasks.explain import explain_batch

    execution = execution_from(options)
    records = explain_batch(slides, model_dir, out_dir, options, execution=execution)
    sys.exit(finish(records, "explain", out_dir))


@cli.command(epilog=examples("run"))
@slides_argument
@model_options
@output_options("per slide predictions, heatmap slide, previews and evaluation")
@geojson_option
@annotation_inputs
@positive_class_option
@default_class_option
@threshold_option
@decision_threshold_option
@heatmap_look
@slide_geometry(Geometry)
@execution_options
@config_option
@handle_errors
@typed(RunOptions)
def run(slides: tuple[str, ...], model_dir: str, out_dir: str, options: RunOptions,
        execution: Execution) -> None:
    """Predict, write heatmap slides and decide every slide of a batch with one model."""
    from histotile.workflows.tasks.batch import run_batch

    sys.exit(finish(run_batch(slides, model_dir, out_dir, options, execution), "run",
                    out_dir))


for _command in (train, evaluate_images, demo, export, bench, serve, watch):
    cli.add_command(_command)


def main() -> None:
    import os

    # Spinning OpenMP threads starve everything else on shared cores (torch LeNet
    # training fell from 70 to 8 tiles/s); must be set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cli(prog_name="histotile")


if __name__ == "__main__":
    main()
