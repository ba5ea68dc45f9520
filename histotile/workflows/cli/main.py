"""The ``histotile`` command line.

Imports stay light: ``histotile --help`` and ``histotile info`` load only click, rich and
the slide readers. torch, dask and matplotlib are imported by the commands that use them.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from histotile import __version__
from histotile.errors import HistotileError
from histotile.workflows.cli.options import (
    annotations_for_all_option,
    config_option,
    engine_option,
    examples,
    execution_from,
    execution_options,
    finish,
    handle_errors,
    heatmap_options,
    overwrite_option,
    prediction_options,
    slide_batch_command,
    slides_argument,
    tiling_options,
)
from histotile.workflows.cli.tools import bench, demo, export, serve
from histotile.workflows.cli.train import evaluate_images, train
from histotile.workflows.cli.watch import watch
from histotile.workflows.options import HeatmapOptions

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


@cli.command(epilog=examples("qc"))
@slides_argument
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder: OUT/<slide>/qc.png per slide, OUT/qc-report.csv/.json.")
@click.option("--pen-fail", type=click.FloatRange(0, 1), default=None,
              help="Share of the specimen in pen ink at which a slide fails (0.15).")
@click.option("--blur-fail", type=click.FloatRange(0, 1), default=None,
              help="Share of sampled tissue tiles out of focus at which a slide fails (0.30).")
@click.option("--fold-fail", type=click.FloatRange(0, 1), default=None,
              help="Share of the specimen folded at which a slide fails (0.20).")
@click.option("--bubble-fail", type=click.FloatRange(0, 1), default=None,
              help="Share of the specimen under air bubbles at which a slide fails (0.15).")
@click.option("--edge-fail", type=click.FloatRange(0, 1), default=None,
              help="Share of the specimen along coverslip edges at which a slide fails (0.05).")
@click.option("--blur-tiles", type=click.IntRange(0), default=None,
              help="Tissue tiles sampled for focus (48; 0 skips the focus check).")
@execution_options
@overwrite_option
@config_option
@handle_errors
def qc(slides: tuple[str, ...], out_dir: str, **options: Any) -> None:
    """Screen slides: tissue, pen ink, blur, fold, bubble and coverslip-edge fractions, a
    pass/warn/fail flag and an outlined QC picture per slide."""
    from histotile.workflows.tasks.qc import qc_batch

    settings = {k: v for k, v in options.items() if v is not None
                and k in ("pen_fail", "blur_fail", "fold_fail", "bubble_fail", "edge_fail",
                          "blur_tiles")}
    records = qc_batch(slides, out_dir, settings, overwrite=bool(options.get("overwrite")),
                       execution=execution_from(options))
    sys.exit(finish(records, "qc", out_dir))


@cli.command(epilog=examples("tile"))
@slides_argument
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder: one manifest per slide and manifest.csv for all.")
@click.option("--annotations", type=click.Path(exists=True), default=None,
              help="Folder of annotations (<slide>.overlay.*, <slide>.mask.*, "
                   "<slide>.geojson), or one annotation file. Default: beside each slide.")
@annotations_for_all_option
@click.option("--classes", default=None,
              help="Classes in order, with palette colours for painted overlays: "
                   "'normal,tumour=#00ff00'. The order is kept (never sorted).")
@click.option("--default-class", default=None,
              help="Label of tiles no annotation covers (default: the first class).")
@click.option("--positive-class", default=None,
              help="The class to detect, recorded for training, heatmaps, decisions and "
                   "evaluation (default: the last class).")
@click.option("--min-label-fraction", type=click.FloatRange(0, 1), default=None,
              help="Share of a tile a class must cover to label it (default 0.05).")
@click.option("--balance", default=None,
              help="Undersample to class ratios, e.g. 'normal=1,tumour=1'.")
@click.option("--strict", is_flag=True,
              help="Fail a slide whose annotation labels nothing (missing, no colour or "
                   "value matching a class, no polygon inside the slide, unknown class "
                   "names) instead of warning.")
@click.option("--export-images", is_flag=True,
              help="Also write tile PNGs in an ImageFolder layout (OUT/images/<label>/).")
@click.option("--keep-artefacts", is_flag=True, default=None,
              help="Keep tiles mostly pen ink, fold or blur (dropped by default; the "
                   "manifest's artefact column says how much).")
@click.option("--stain-normalise", type=click.Choice(["macenko", "reinhard"]), default=None,
              help="Fit a stain normaliser (recorded in OUT/manifest.json; training puts "
                   "it in the model card and prediction applies it to every tile).")
@click.option("--stain-reference", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Reference image of the normaliser (default: a sample "
                                 "of the tiled tissue tiles).")
@tiling_options
@execution_options
@overwrite_option
@config_option
@handle_errors
def tile(slides: tuple[str, ...], out_dir: str, **options: Any) -> None:
    """Cut slides into tissue tiles labelled from annotations; write the manifest."""
    from histotile.workflows.tasks.batch import tile_batch

    records = tile_batch(slides, out_dir, options, execution=execution_from(options))
    sys.exit(finish(records, "tile", out_dir))


@cli.command(epilog=examples("predict"))
@slides_argument
@prediction_options
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Tile threshold recorded for heatmap, evaluate and the QuPath regions "
                   "(default: the model card's operating point, else 0.5).")
@engine_option
@tiling_options
@execution_options
@overwrite_option
@config_option
@handle_errors
def predict(slides: tuple[str, ...], model_dir: str, out_dir: str, **options: Any) -> None:
    """Predict every tissue tile of each slide; write a predictions table per slide."""
    slide_batch_command("predict", slides, out_dir, options, model_dir=model_dir)


@cli.command(epilog=examples("heatmap"))
@slides_argument
@click.option("--predictions", "predictions_dir", type=click.Path(exists=True), required=True,
              help="Folder written by 'histotile predict' (or 'run').")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@heatmap_options
@execution_options
@overwrite_option
@config_option
@handle_errors
def heatmap(slides: tuple[str, ...], predictions_dir: str, out_dir: str,
            **options: Any) -> None:
    """Write alpha-blended heatmap slides (pyramidal TIFF) and PNG previews."""
    slide_batch_command("heatmap", slides, out_dir, options, predictions_dir=predictions_dir)


@cli.command(epilog=examples("evaluate"))
@slides_argument
@click.option("--predictions", "predictions_dir", type=click.Path(exists=True), required=True)
@click.option("--annotations", type=click.Path(exists=True), default=None,
              help="Folder of annotations (default: beside each slide).")
@annotations_for_all_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--default-class", default=None,
              help="Truth of unannotated tiles (default: the model card's default class).")
@heatmap_options
@execution_options
@overwrite_option
@config_option
@handle_errors
def evaluate(slides: tuple[str, ...], predictions_dir: str, out_dir: str,
             **options: Any) -> None:
    """Compare predictions with annotations: confusion matrices, sensitivity, specificity,
    side-by-side images."""
    from histotile.workflows.tasks.batch import evaluate_batch

    records = evaluate_batch(slides, predictions_dir, out_dir, options,
                             execution=execution_from(options))
    sys.exit(finish(records, "evaluate", out_dir))


@cli.command(epilog=examples("explain"))
@slides_argument
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              required=True, help="Model folder written by 'histotile train' (torch).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--predictions", "predictions_dir", type=click.Path(exists=True), default=None,
              help="Saved predictions (from 'predict' or 'run'); default: predict again.")
@click.option("--annotations", type=click.Path(exists=True), default=None,
              help="Annotations (default: beside each slide); adds the worst false "
                   "positives and negatives.")
@annotations_for_all_option
@click.option("--top", type=click.IntRange(1), default=8, show_default=True,
              help="Tiles per group (most positive, most negative, most uncertain).")
@click.option("--class", "class_name", default=None,
              help="Class to explain (default: the model card's positive class).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=HeatmapOptions.threshold,
              help="Tile probability from which a tile is positive (default: the model "
                   "card's operating point, else 0.5).")
@tiling_options
@execution_options
@overwrite_option
@config_option
@handle_errors
def explain(slides: tuple[str, ...], model_dir: str, out_dir: str, **options: Any) -> None:
    """Galleries (PNG and HTML) of each slide's most telling tiles with their Grad-CAM."""
    from histotile.workflows.tasks.explain import explain_batch

    records = explain_batch(slides, model_dir, out_dir, options,
                            execution=execution_from(options))
    sys.exit(finish(records, "explain", out_dir))


@cli.command(epilog=examples("run"))
@slides_argument
@prediction_options
@click.option("--annotations", type=click.Path(exists=True), default=None,
              help="Evaluate slides that have annotations (folder, default: beside slides).")
@annotations_for_all_option
@click.option("--default-class", default=None,
              help="Truth of unannotated tiles (default: the model card's default class).")
@engine_option
@heatmap_options
@tiling_options
@execution_options
@overwrite_option
@config_option
@handle_errors
def run(slides: tuple[str, ...], model_dir: str, out_dir: str, **options: Any) -> None:
    """Predict, write heatmap slides and decide every slide of a batch with one model."""
    slide_batch_command("run", slides, out_dir, options, model_dir=model_dir)


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
