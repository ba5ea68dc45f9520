"""What the ``histotile`` commands share: their examples, the option groups (tiling,
execution, heatmap), ``--config`` loading, the error handler, and running a batch of
slides to its report and exit code. Light: click only (see :mod:`histotile.workflows.cli.main`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from histotile.errors import ConfigError, HistotileError
from histotile.workflows.options import ENGINES, HeatmapOptions, RunOptions
from histotile.workflows.tasks.execution import Execution  # light: no dask until a cluster starts

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
              "  torchrun --nproc-per-node 2 -m histotile train tiles/manifest.csv --out model/\n"
              "  histotile train patches/ --out model/ --positive-class idc "
              "--operating-point sensitivity=0.9"),
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
    "watch": ("histotile watch inbox/ --model model/ --out results/\n"
              "  histotile watch /mnt/scanner --model model/ --out results/ --settle 60 --poll"),
    "demo": "histotile demo --out histotile-demo",
    "export": ("histotile export model/ --format onnx --out lenet.onnx\n"
               "  histotile export model/ --format torchscript --out lenet.pt\n"
               "  histotile export model/ --format onnx --int8 --out lenet-int8.onnx"),
    "bench": ("histotile bench --quick\n"
              "  histotile bench --work /scratch/histotile-bench --out bench.md\n"
              "  histotile bench --device cuda --train-tiles 20000"),
    "serve": ("histotile serve slides/ --results results/ --model model/\n"
              "  histotile serve slides/ --host 0.0.0.0 --token \"$SECRET\" --public-metrics\n"
              "  histotile serve slides/ --host 0.0.0.0 --port 8080 --token \"$SECRET\""),
}


def examples(command: str) -> str:
    return "\n\n\b\nExamples:\n  " + EXAMPLES[command]


# -- shared options ---------------------------------------------------------------------

def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Eager ``--config``: its values become defaults, so the command line still wins."""
    if value is None:
        return
    from histotile.workflows.cli.config import load_config, options_for

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
    _check_types(ctx, value, options)
    ctx.default_map = {**(ctx.default_map or {}), **options}


def _check_types(ctx: click.Context, path: str, options: dict[str, Any]) -> None:
    """Each value of a configuration file converted by its option's type now, so that a
    list, a mapping or an infinity where a number goes is a usage error naming the file
    (click converts defaults later, and some of those values escape its checks)."""
    params = {p.name: p for p in ctx.command.params}
    for name, given in options.items():
        param = params.get(name)
        if param is None or given is None:
            continue
        if isinstance(given, (list, dict)) and not param.multiple:
            raise click.BadParameter(f"{path}: {name} holds a {type(given).__name__}, "
                                     "not one value")
        try:
            param.type_cast_value(ctx, given)
        except click.BadParameter as error:
            raise click.BadParameter(f"{path}: {name}: {error.message}") from None
        except (TypeError, ValueError, OverflowError, AttributeError) as error:
            raise click.BadParameter(f"{path}: {name}: {given!r} is not a valid value "
                                     f"({error})") from None


def option_group(*decorators: Callable) -> Callable:
    def apply(function: Callable) -> Callable:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


config_option = click.option(
    "--config", type=click.Path(dir_okay=False), callback=_load_config, is_eager=True,
    expose_value=False, help="YAML, JSON or TOML file of option values (the command line wins).")
overwrite_option = click.option("--overwrite", is_flag=True,
                                help="Redo slides whose outputs already exist.")
slides_argument = click.argument("slides", nargs=-1, required=True)
annotations_for_all_option = click.option(
    "--annotations-for-all", is_flag=True,
    help="With one annotation file and several slides: use it for every slide (without "
         "it, that is an error: each slide needs its own annotation).")
engine_option = click.option(
    "--engine", type=click.Choice(ENGINES), default=RunOptions.engine, show_default=True,
    help="Inference engine: auto = the fastest installed for the device and model "
         "(onnxruntime on CPU for most models, with the onnx extra); onnxruntime-int8 "
         "only when asked.")
# What a command that predicts with a model takes (predict, run).
prediction_options = option_group(
    click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
                 required=True, help="Model folder written by 'histotile train'."),
    click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True),
    click.option("--batch-size", type=click.IntRange(1), default=None),
    click.option("--no-geojson", is_flag=True,
                 help="Skip predictions.geojson and regions.geojson (QuPath objects)."),
    click.option("--tta", is_flag=True, default=None,
                 help="Test-time augmentation: each tile's probabilities averaged over its 8 "
                      "flips and 90-degree rotations (8 times the inference work)."),
)

tiling_options = option_group(
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

execution_options = option_group(
    click.option("--workers", type=click.IntRange(1), default=None,
                 help="Start a local Dask cluster with this many worker processes."),
    click.option("--scheduler", default=None,
                 help="Address of a running Dask scheduler, e.g. tcp://host:8786."),
    click.option("--retries", type=click.IntRange(0), default=Execution.retries,
                 show_default=True,
                 help="Extra attempts for a slide whose worker crashed."),
    click.option("--region-megapixels", type=click.FloatRange(1),
                 default=Execution.region_megapixels,
                 show_default=True,
                 help="On a cluster, predict slides larger than this in parts of this size "
                      "on several workers."),
)


def execution_from(options: dict[str, Any]) -> Execution:
    """Where a command's slides run, from its execution options."""
    return Execution(scheduler=options.get("scheduler"), workers=options.get("workers"),
                     retries=options.get("retries", Execution.retries),
                     region_megapixels=(options.get("region_megapixels")
                                        or Execution.region_megapixels))


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


_HEATMAP = HeatmapOptions()  # the defaults shown and passed on

heatmap_options = option_group(
    click.option("--class", "--positive-class", "class_name", default=None,
                 help="Class to show and decide on (default: the model card's positive "
                      "class; must be one of the model's classes)."),
    click.option("--mode", type=click.Choice(["threshold", "continuous"]), default=_HEATMAP.mode,
                 show_default=True,
                 help="Colour tiles above --threshold, or a colour map of probability."),
    click.option("--threshold", type=click.FloatRange(0, 1), default=_HEATMAP.threshold,
                 help="Tile probability from which a tile is positive (default: the one "
                      "the predictions record: the model card's operating point, else "
                      "0.5)."),
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


def slide_batch_command(kind: str, slides: tuple[str, ...], out_dir: str, options: dict[str, Any],
                 **where: Any) -> None:
    """predict / heatmap / run: the batch, its report and summary, then the exit code."""
    from histotile.workflows.tasks.batch import slide_batch

    records = slide_batch(kind, slides, out_dir, options, execution=execution_from(options),
                          **where)
    sys.exit(finish(records, kind, out_dir))


def finish(records, command: str, out_dir: str) -> int:
    from histotile.workflows.cli.console import print_summary
    from histotile.workflows.tasks.report import exit_code, write_report

    try:
        paths = write_report(records, out_dir, name=f"{command}-report")
    except HistotileError:  # e.g. disk full: show what was done, then the error
        print_summary(records, f"histotile {command}")
        raise
    print_summary(records, f"histotile {command}", paths)
    return exit_code(records)
