"""The ``histotile`` command line.

Imports stay light: ``histotile --help`` and ``histotile info`` load only click, rich and
the slide readers. torch, dask and matplotlib are imported by the commands that use them.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from histotile import __version__
from histotile.errors import ConfigError, HistotileError
from histotile.workflows.options import HeatmapOptions

EXAMPLES = {
    "info": "histotile info slides/*.svs\n  histotile info slides/ --json",
    "qc": ("histotile qc slides/ --out qc/\n"
           "  histotile qc slides/*.svs --out qc/ --pen-fail 0.05 --blur-tiles 0"),
    "tile": ("histotile tile slides/ --annotations marks/ --out tiles/ --tile-size 128 "
             "--magnification 20\n  histotile tile a.svs --out tiles/ --tile-size 225 "
             "--stride 112 --export-images"),
    "train": ("histotile train tiles/manifest.csv --out model/ --model lenet --folds 4\n"
              "  histotile train tiles/manifest.csv --out model/ --model resnet18 --epochs 20\n"
              "  histotile train tiles/manifest.csv --out model/ --workers 2\n"
              "  torchrun --nproc-per-node 2 -m histotile train tiles/manifest.csv --out model/"),
    "evaluate-images": ("histotile evaluate-images model/ breakhis-test/ --out image-eval/\n"
                        "  histotile evaluate-images model/ test/ --out e/ "
                        "--target-sensitivity 0.95"),
    "predict": "histotile predict slides/ --model model/ --out predictions/",
    "heatmap": ("histotile heatmap slides/ --predictions predictions/ --out heatmaps/ "
                "--class tumour --alpha 0.4"),
    "evaluate": ("histotile evaluate slides/ --predictions predictions/ --annotations marks/ "
                 "--out evaluation/"),
    "explain": ("histotile explain slides/ --model model/ --out explanations/ --top 8\n"
                "  histotile explain slides/ --model model/ --predictions results/ "
                "--out explanations/ --class tumour"),
    "run": ("histotile run slides/ --model model/ --out results/\n"
            "  histotile run slides/ --model model/ --out results/ --workers 4\n"
            "  histotile run slides/ --model model/ --out results/ "
            "--scheduler tcp://scheduler:8786"),
    "demo": "histotile demo --out histotile-demo",
    "export": ("histotile export model/ --format onnx --out lenet.onnx\n"
               "  histotile export model/ --format torchscript --out lenet.pt\n"
               "  histotile export model/ --format onnx --int8 --out lenet-int8.onnx"),
    "bench": ("histotile bench --quick\n"
              "  histotile bench --work /scratch/histotile-bench --out bench.md\n"
              "  histotile bench --device cuda --train-tiles 20000"),
    "serve": ("histotile serve slides/ --results results/ --model model/\n"
              "  histotile serve slides/ --host 0.0.0.0 --port 8080 --token \"$SECRET\""),
}


def _examples(command: str) -> str:
    return "\n\n\b\nExamples:\n  " + EXAMPLES[command]


# -- shared options ---------------------------------------------------------------------

def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Eager ``--config``: its values become defaults, so the command line still wins."""
    if value is None:
        return
    from histotile.workflows.config import load_config, options_for

    try:
        options = options_for(load_config(value), ctx.info_name or "")
    except ConfigError as error:
        raise click.BadParameter(str(error)) from None
    known = {p.name for p in ctx.command.params}
    if ctx.info_name == "train":  # every training setting, flag or not
        import dataclasses

        from histotile.models.settings import TrainSettings

        fields = {f.name for f in dataclasses.fields(TrainSettings)}
        ctx.meta["histotile.train_settings"] = {k: v for k, v in options.items()
                                                if k in fields and k not in known}
        known |= fields
    unknown = sorted(set(options) - known)
    if unknown:
        raise click.BadParameter(f"{value}: unknown option(s) for '{ctx.info_name}': "
                                 f"{', '.join(unknown)}")
    ctx.default_map = {**(ctx.default_map or {}), **options}


def _options(*decorators: Callable) -> Callable:
    def apply(function: Callable) -> Callable:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


config_option = click.option(
    "--config", type=click.Path(dir_okay=False), callback=_load_config, is_eager=True,
    expose_value=False, help="YAML or TOML file of option values (the command line wins).")
overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Redo slides whose outputs already exist.")
slides_argument = click.argument("slides", nargs=-1, required=True)
engine_option = click.option(
    "--engine", type=click.Choice(["auto", "torch", "mxnet", "onnxruntime",
                                   "onnxruntime-int8"]),
    default="auto", show_default=True,
    help="Inference engine: auto = the fastest installed for the device and model "
         "(onnxruntime on CPU for most models, with the onnx extra); onnxruntime-int8 "
         "only when asked.")

tiling_options = _options(
    click.option("--tile-size", type=click.IntRange(16), default=None,
                 help="Tile side in pixels at the target resolution (tile: default 128; "
                      "predict/run: the model's)."),
    click.option("--stride", type=click.IntRange(1), default=None,
                 help="Step between tiles in pixels at the target resolution "
                      "(default: tile size, no overlap)."),
    click.option("--magnification", type=float, default=None,
                 help="Target objective magnification, e.g. 20."),
    click.option("--mpp", type=float, default=None, help="Target microns per pixel."),
    click.option("--level", type=click.IntRange(0), default=None,
                 help="Explicit pyramid level (for slides without metadata)."),
    click.option("--min-tissue", type=click.FloatRange(0, 1), default=None,
                 help="Tissue fraction below which a tile is background."),
    click.option("--keep-background", type=click.FloatRange(0, 1), default=None,
                 help="Fraction of background tiles kept (seeded)."),
    click.option("--seed", type=int, default=None, help="Random seed (default 0)."),
)

execution_options = _options(
    click.option("--workers", type=click.IntRange(1), default=None,
                 help="Start a local Dask cluster with this many worker processes."),
    click.option("--scheduler", default=None,
                 help="Address of a running Dask scheduler, e.g. tcp://host:8786."),
    click.option("--retries", type=click.IntRange(0), default=2, show_default=True,
                 help="Extra attempts for a slide whose worker crashed."),
    click.option("--region-megapixels", type=click.FloatRange(1), default=2000,
                 show_default=True,
                 help="On a cluster, predict slides larger than this in parts of this size "
                      "on several workers."),
)


def _tiling_dict(options: dict[str, Any]) -> dict[str, Any]:
    keys = ("tile_size", "stride", "magnification", "mpp", "level", "min_tissue",
            "keep_background", "seed")
    return {k: options[k] for k in keys if options.get(k) is not None}


def _execution(options: dict[str, Any]):
    from histotile.workflows.execution import Execution

    return Execution(scheduler=options.get("scheduler"), workers=options.get("workers"),
                     retries=options.get("retries", 2),
                     region_megapixels=options.get("region_megapixels") or 2000.0)


def handle_errors(function: Callable) -> Callable:
    """Print histotile errors as one clear line (exit 1) instead of a traceback."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ConfigError as error:
            raise click.UsageError(str(error)) from None
        except HistotileError as error:
            click.secho(f"error: {error}", fg="red", err=True)
            sys.exit(1)
    return wrapper


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


@cli.command(epilog=_examples("info"))
@slides_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@config_option
@handle_errors
def info(slides: tuple[str, ...], as_json: bool) -> None:
    """Show slides' metadata: size, pyramid levels, resolution, associated images."""
    from histotile.workflows.inputs import expand_slides, slide_info

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
        from histotile.workflows.console import out, print_info

        for result in results:
            print_info(result)
        out.print(f"{len(results)} slide(s), {failed} unreadable")
    sys.exit(1 if failed else 0)


@cli.command(epilog=_examples("qc"))
@slides_argument
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder: OUT/<slide>/qc.png per slide, OUT/qc-report.csv/.json.")
@click.option("--pen-fail", type=click.FloatRange(0, 1), default=None,
              help="Share of the specimen in pen ink at which a slide fails (0.15).")
@click.option("--blur-fail", type=click.FloatRange(0, 1), default=None,
              help="Share of sampled tissue tiles out of focus at which a slide fails (0.30).")
@click.option("--fold-fail", type=click.FloatRange(0, 1), default=None,
              help="Share of the specimen folded at which a slide fails (0.20).")
@click.option("--blur-tiles", type=click.IntRange(0), default=None,
              help="Tissue tiles sampled for focus (48; 0 skips the focus check).")
@execution_options
@overwrite_option
@config_option
@handle_errors
def qc(slides: tuple[str, ...], out_dir: str, **options: Any) -> None:
    """Screen slides: tissue, pen ink, blur and fold fractions, a pass/warn/fail flag
    and an outlined QC picture per slide."""
    from histotile.workflows.qc import qc_batch

    settings = {k: v for k, v in options.items() if v is not None
                and k in ("pen_fail", "blur_fail", "fold_fail", "blur_tiles")}
    records = qc_batch(slides, out_dir, settings, overwrite=bool(options.get("overwrite")),
                       execution=_execution(options))
    sys.exit(_finish(records, "qc", out_dir))


@cli.command(epilog=_examples("tile"))
@slides_argument
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder: one manifest per slide and manifest.csv for all.")
@click.option("--annotations", type=click.Path(exists=True), default=None,
              help="Folder of annotations (<slide>.overlay.*, <slide>.mask.*, "
                   "<slide>.geojson), or one annotation file. Default: beside each slide.")
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
    from histotile.workflows.batch import tile_batch

    records = tile_batch(slides, out_dir, options, execution=_execution(options))
    sys.exit(_finish(records, "tile", out_dir))


@cli.command(epilog=_examples("train"))
@click.argument("data", type=click.Path(exists=True))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Model folder to write (weights, model card, metrics, plots, log).")
@click.option("--model", default="lenet", show_default=True,
              help="lenet, squeezenet, resnet18, alexnet or shufflenet_v2.")
@click.option("--backend", type=click.Choice(["torch", "mxnet"]), default="torch",
              show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=None)
@click.option("--batch-size", type=click.IntRange(1), default=None)
@click.option("--lr", type=float, default=None, help="Learning rate (default 1e-3).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam", "adamw"]), default=None,
              help="Optimiser (default: adam for lenet, sgd for the torchvision nets).")
@click.option("--patience", type=click.IntRange(0), default=None,
              help="Early stopping: epochs without a lower validation loss (default 5; 0 "
                   "disables it).")
@click.option("--folds", type=click.IntRange(2), default=None,
              help="Cross-validation folds (default 4).")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Share of tiles held out for test, drawn by groups (default 0.2).")
@click.option("--tile-size", type=click.IntRange(64), default=None,
              help="Network input side: tiles or patches are resized to it (default: "
                   "their own size).")
@click.option("--max-tiles", type=click.IntRange(2), default=None,
              help="Use at most this many tiles (seeded, stratified by class).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="torch threads (default: the CPU cores).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when "
                                             "present).")
@click.option("--augment/--no-augment", default=None,
              help="Random flips and 90-degree rotations of training tiles (default on).")
@click.option("--positive-class", default=None,
              help="The class to detect, written to the model card (default: the one "
                   "given to 'tile', else the last class).")
@click.option("--default-class", default=None,
              help="Label of unannotated tiles, written to the model card (default: the "
                   "one given to 'tile', else the first class).")
@click.option("--group-column", default=None,
              help="Manifest column to group folds by (default 'group': slide or patient).")
@click.option("--group-by", default=None,
              help="Group folds and the test split by 'patient' (parsed from file names; "
                   "BreakHis by default), 'slide', 'region' (512-px cells of one slide) or "
                   "a manifest COLUMN.")
@click.option("--group-pattern", default=None,
              help="Regular expression with a named group 'group' finding the patient in "
                   "file names, e.g. '^(?P<group>[^_]+)_'.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Local pretrained weights file (nothing is ever downloaded).")
@click.option("--patchify", "patch_size", type=click.IntRange(16), default=None,
              help="For an image folder: cut each image into patches of this side (px).")
@click.option("--patch-stride", type=click.IntRange(1), default=None,
              help="Step between patches (px; default: the patch size, i.e. no overlap; "
                   "225 at 117 gives 15 patches of a 700x460 image).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Train the folds (then the final model) as tasks on a local Dask cluster "
                   "of this many worker processes.")
@click.option("--scheduler", default=None,
              help="Train the folds on a running Dask cluster, e.g. tcp://host:8786.")
@click.option("--retries", type=click.IntRange(0), default=2, show_default=True,
              help="Extra attempts for a fold whose Dask worker crashed.")
@click.option("--ddp", type=click.IntRange(1), default=None,
              help="Train each model data-parallel on this many processes of this machine "
                   "(torchrun; gloo on CPU, NCCL on CUDA).")
@click.option("--ddp-timeout", type=click.FloatRange(1), default=600, show_default=True,
              help="Seconds a rank waits for the others before the job fails.")
@overwrite_option
@config_option
@handle_errors
def train(data: str, out_dir: str, **options: Any) -> None:
    """Train a tile classifier with grouped, stratified cross-validation."""
    from histotile.workflows.train_parallel import train_command

    extra = click.get_current_context().meta.get("histotile.train_settings") or {}
    train_command(data, out_dir, {**extra, **options}, argv=sys.argv[1:])


@cli.command("evaluate-images", epilog=_examples("evaluate-images"))
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for images.csv, thresholds.csv/.md and thresholds.png.")
@click.option("--positive-class", default=None,
              help="The class called positive (default: the model card's).")
@click.option("--patchify", "patch_size", type=click.IntRange(16), default=None,
              help="Patch side in pixels (default: as the model was trained).")
@click.option("--patch-stride", type=click.IntRange(1), default=None,
              help="Step between patches (default: as trained, else the patch size).")
@click.option("--target-sensitivity", type=click.FloatRange(0, 1), default=1.0,
              show_default=True, help="Choose the highest t whose sensitivity reaches this.")
@click.option("--batch-size", type=click.IntRange(1), default=None)
@config_option
@handle_errors
def evaluate_images(model_dir: str, folder: str, out_dir: str, **options: Any) -> None:
    """Image-level decisions by patch majority and the threshold table: for t = 0.10 ...
    0.90, accuracy, sensitivity and specificity of "an image is positive when at least t
    of its patches are" (>= t, the rule slide decisions use too). FOLDER holds one
    sub-folder of images per class."""
    from histotile.workflows.batch import evaluate_image_folder

    evaluate_image_folder(model_dir, folder, out_dir, options)


@cli.command(epilog=_examples("predict"))
@slides_argument
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              required=True, help="Model folder written by 'histotile train'.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--batch-size", type=click.IntRange(1), default=None)
@click.option("--no-geojson", is_flag=True,
              help="Skip predictions.geojson and regions.geojson (QuPath objects).")
@engine_option
@tiling_options
@execution_options
@overwrite_option
@config_option
@handle_errors
def predict(slides: tuple[str, ...], model_dir: str, out_dir: str, **options: Any) -> None:
    """Predict every tissue tile of each slide; write a predictions table per slide."""
    _slide_batch("predict", slides, out_dir, options, model_dir=model_dir)


_HEATMAP = HeatmapOptions()  # the defaults shown and passed on

heatmap_options = _options(
    click.option("--class", "--positive-class", "class_name", default=None,
                 help="Class to show and decide on (default: the model card's positive "
                      "class; must be one of the model's classes)."),
    click.option("--mode", type=click.Choice(["threshold", "continuous"]), default=_HEATMAP.mode,
                 show_default=True,
                 help="Colour tiles above --threshold, or a colour map of probability."),
    click.option("--threshold", type=click.FloatRange(0, 1), default=_HEATMAP.threshold,
                 show_default=True),
    click.option("--alpha", type=click.FloatRange(0, 1), default=_HEATMAP.alpha,
                 show_default=True),
    click.option("--color", default=_HEATMAP.color, show_default=True,
                 help="Overlay colour in threshold mode."),
    click.option("--downsample", type=click.FloatRange(1), default=None,
                 help="Heatmap resolution as a downsample of level 0 (default: automatic)."),
    click.option("--decision-threshold", type=click.FloatRange(0, 1),
                 default=_HEATMAP.decision_threshold,
                 show_default=True,
                 help="Slide is positive when at least this fraction of tiles is positive "
                      "(>=)."),
    click.option("--probability-tiff", is_flag=True,
                 help="Also write probability.tif: the class probability as a one-channel "
                      "uint8 pyramid (0-255 = 0-1) for QuPath and slide viewers."),
    click.option("--colormap", default=_HEATMAP.colormap, show_default=True,
                 help="Colour map of --mode continuous (any matplotlib map; viridis and "
                      "cividis are colour-blind safe)."),
    click.option("--floor", type=click.FloatRange(0, 1), default=None,
                 help="In --mode continuous, leave tiles below this probability uncoloured "
                      "[default: 0.1]."),
)


@cli.command(epilog=_examples("heatmap"))
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
    _slide_batch("heatmap", slides, out_dir, options, predictions_dir=predictions_dir)


@cli.command(epilog=_examples("evaluate"))
@slides_argument
@click.option("--predictions", "predictions_dir", type=click.Path(exists=True), required=True)
@click.option("--annotations", type=click.Path(exists=True), default=None,
              help="Folder of annotations (default: beside each slide).")
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
    from histotile.workflows.batch import evaluate_batch

    records = evaluate_batch(slides, predictions_dir, out_dir, options,
                             execution=_execution(options))
    sys.exit(_finish(records, "evaluate", out_dir))


@cli.command(epilog=_examples("explain"))
@slides_argument
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              required=True, help="Model folder written by 'histotile train' (torch).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--predictions", "predictions_dir", type=click.Path(exists=True), default=None,
              help="Saved predictions (from 'predict' or 'run'); default: predict again.")
@click.option("--annotations", type=click.Path(exists=True), default=None,
              help="Annotations (default: beside each slide); adds the worst false "
                   "positives and negatives.")
@click.option("--top", type=click.IntRange(1), default=8, show_default=True,
              help="Tiles per group (most positive, most negative, most uncertain).")
@click.option("--class", "class_name", default=None,
              help="Class to explain (default: the model card's positive class).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=_HEATMAP.threshold,
              show_default=True)
@execution_options
@overwrite_option
@config_option
@handle_errors
def explain(slides: tuple[str, ...], model_dir: str, out_dir: str, **options: Any) -> None:
    """Galleries (PNG and HTML) of each slide's most telling tiles with their Grad-CAM."""
    from histotile.workflows.explain import explain_batch

    records = explain_batch(slides, model_dir, out_dir, options,
                            execution=_execution(options))
    sys.exit(_finish(records, "explain", out_dir))


@cli.command(epilog=_examples("run"))
@slides_argument
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              required=True, help="Model folder written by 'histotile train'.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True)
@click.option("--annotations", type=click.Path(exists=True), default=None,
              help="Evaluate slides that have annotations (folder, default: beside slides).")
@click.option("--default-class", default=None,
              help="Truth of unannotated tiles (default: the model card's default class).")
@click.option("--batch-size", type=click.IntRange(1), default=None)
@click.option("--no-geojson", is_flag=True,
              help="Skip predictions.geojson and regions.geojson (QuPath objects).")
@engine_option
@heatmap_options
@tiling_options
@execution_options
@overwrite_option
@config_option
@handle_errors
def run(slides: tuple[str, ...], model_dir: str, out_dir: str, **options: Any) -> None:
    """Predict, write heatmap slides and decide every slide of a batch with one model."""
    _slide_batch("run", slides, out_dir, options, model_dir=model_dir)


@cli.command(epilog=_examples("demo"))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="histotile-demo",
              show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Training epochs (default: a short run).")
@overwrite_option
@config_option
@handle_errors
def demo(out_dir: str, epochs: int | None, overwrite: bool) -> None:
    """Run the whole pipeline on the bundled real H&E slide and its painted annotation."""
    from histotile.workflows.demo import run_demo

    run_demo(out_dir, epochs=epochs, overwrite=overwrite)


@cli.command(epilog=_examples("export"))
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx",
              show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="The model file; its card is written beside it as OUT.card.json.")
@click.option("--int8", is_flag=True,
              help="ONNX: quantise to int8 (static, calibrated on the training tiles); the "
                   "card reports its accuracy against float32.")
@click.option("--calibration", type=click.Path(exists=True), default=None,
              help="Tile manifest or image folder to calibrate --int8 on when the training "
                   "tiles are not at hand.")
@click.option("--overwrite", is_flag=True, help="Replace OUT and its card if they exist.")
@handle_errors
def export(model_dir: str, fmt: str, out_path: str, int8: bool, calibration: str | None,
           overwrite: bool) -> None:
    """Write a model as one self-contained ONNX or TorchScript file plus its card."""
    from histotile.workflows.export import export_command

    click.echo(export_command(model_dir, out_path, fmt, int8=int8, calibration=calibration,
                              overwrite=overwrite))


def _size(_ctx: click.Context, _param: click.Parameter,
          value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: write WIDTHxHEIGHT in level-0 pixels, for "
                                 "example 40000x30000") from None
    return width, height


@cli.command(epilog=_examples("bench"))
@click.option("--quick", is_flag=True,
              help="A 20,000 x 20,000 px slide and a sampled training epoch (about 2 min).")
@click.option("--work", type=click.Path(file_okay=False), default="histotile-bench",
              show_default=True,
              help="Folder for the cached synthetic slides and every stage's outputs.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="The Markdown table (JSON beside it) [default: WORK/benchmark.md].")
@click.option("--size", callback=_size, default=None, metavar="WxH",
              help="Main slide size in level-0 px [default: 100000x50000; quick 20000x20000].")
@click.option("--device", default=None,
              help="cpu, cuda or cuda:N for training and prediction [default: CUDA when "
                   "present].")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Tiling processes [default: the CPU cores].")
@click.option("--train-tiles", type=click.IntRange(0), default=None,
              help="Tiles of the timed epoch; the rest is extrapolated (0: all) [default: "
                   "all; quick 1024].")
@click.option("--resnet-tiles", type=click.IntRange(1), default=None,
              help="Tiles ResNet18 classifies before extrapolating [default: 2048; quick 256].")
@click.option("--no-scaling", is_flag=True, help="Skip tiling the two smaller slides.")
@click.option("--from-json", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Print (and rewrite beside it) the table of an earlier run's JSON; "
                   "measures nothing.")
@handle_errors
def bench(quick: bool, work: str, out_path: str | None, size: tuple[int, int] | None,
          device: str | None, workers: int | None, train_tiles: int | None,
          resnet_tiles: int | None, no_scaling: bool, from_json: str | None) -> None:
    """Time every pipeline stage on a synthetic slide against its same-run baseline and
    the original workflow; print the Markdown table and write it (and a JSON) to a file.

    A tool, not a test: run it on a quiet machine. The synthetic slides are written once
    and cached in --work (the 5-gigapixel one takes a few minutes).
    """
    from pathlib import Path

    from histotile._atomic import write_text_atomic
    from histotile.workflows.benchmark import BenchmarkSettings, run_benchmark
    from histotile.workflows.benchmark.suite import load_result
    from histotile.workflows.console import bench_progress

    if from_json:
        result = load_result(from_json)
        write_text_atomic(result.markdown_path, result.markdown)
        click.echo(result.markdown)
        click.echo(f"table: {result.markdown_path}")
        return
    settings = BenchmarkSettings(quick=quick, work=Path(work),
                                 out=Path(out_path) if out_path else None, size=size,
                                 device=device, workers=workers, train_tiles=train_tiles,
                                 resnet_tiles=resnet_tiles, scaling=not no_scaling)
    with bench_progress() as on_event:
        result = run_benchmark(settings, progress=on_event)
    # Plain text, never wrapped: the table is meant to be pasted into Markdown.
    click.echo(result.markdown)
    click.echo(f"table: {result.markdown_path}\nevery figure: {result.json_path}")


@cli.command(epilog=_examples("serve"))
@click.argument("paths", nargs=-1, required=True)
@click.option("--results", type=click.Path(file_okay=False), default=None,
              help="Results folder of 'histotile run' (heatmaps, decisions); jobs write here.")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              default=None, help="Model folder for the classify page, :predict and jobs.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; beyond loopback needs --token or --insecure.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--token", default=None, envvar="HISTOTILE_TOKEN",
              help="Bearer token required on every request [env HISTOTILE_TOKEN].")
@click.option("--insecure", is_flag=True, help="Allow --host beyond loopback without a token.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=50.0,
              show_default=True, help="Largest upload accepted (413 above).")
@config_option
@handle_errors
def serve(paths: tuple[str, ...], model_dir: str | None, **options: Any) -> None:
    """Serve slides (PATHS: files or folders), their heatmaps and results in a web viewer,
    and the model as a REST service (OpenAPI at /openapi.json)."""
    from histotile.workflows.serve import serve_paths

    serve_paths(paths, model=model_dir, echo=click.echo, **options)


def _slide_batch(kind: str, slides: tuple[str, ...], out_dir: str, options: dict[str, Any],
                 **where: Any) -> None:
    """predict / heatmap / run: the batch, its report and summary, then the exit code."""
    from histotile.workflows.batch import slide_batch

    records = slide_batch(kind, slides, out_dir, options, execution=_execution(options),
                          **where)
    sys.exit(_finish(records, kind, out_dir))


def _finish(records, command: str, out_dir: str) -> int:
    from histotile.workflows.console import print_summary
    from histotile.workflows.report import exit_code, write_report

    try:
        paths = write_report(records, out_dir, name=f"{command}-report")
    except HistotileError:  # e.g. disk full: show what was done, then the error
        print_summary(records, f"histotile {command}")
        raise
    print_summary(records, f"histotile {command}", paths)
    return exit_code(records)


def main() -> None:
    import os

    # Spinning OpenMP threads starve everything else on shared cores (torch LeNet
    # training fell from 70 to 8 tiles/s); must be set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cli(prog_name="histotile")


if __name__ == "__main__":
    main()
