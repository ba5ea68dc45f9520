"""The tool commands: ``demo``, ``export``, ``bench`` and ``serve`` (registered on the one
``cli`` group in :mod:`histotile.workflows.cli.main`)."""

from __future__ import annotations

from typing import Any

import click

from histotile.models.export import EXPORT_FORMATS
from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
from histotile.workflows.benchmark.suite import (
    FULL_SIZE,
    QUICK_RESNET_TILES,
    QUICK_SIZE,
    QUICK_TRAIN_TILES,
    RESNET_TILES,
    BenchmarkSettings,
)
from histotile.workflows.cli.options import (
    config_option,
    examples,
    handle_errors,
    option,
    overwrite_option,
)
from histotile.workflows.cli.settings import field_names, settings_option
from histotile.workflows.demo import DEMO_OUT, DemoSettings
from histotile.workflows.serve.settings import ServeSettings
from histotile.workflows.tasks.export import ExportSettings

_BENCH = BenchmarkSettings()
_EXPORT = ExportSettings()


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


@click.command(epilog=examples("demo"))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=DEMO_OUT,
              show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=DemoSettings.epochs,
              show_default=True, help="Training epochs per fold (a short run).")
@overwrite_option
@config_option
@handle_errors
@settings_option(DemoSettings)
def demo(out_dir: str, settings: DemoSettings, overwrite: bool) -> None:
    """Run the whole pipeline on the bundled real H&E slide and its painted annotation."""
    from histotile.workflows.demo import run_demo

    run_demo(out_dir, settings, overwrite=overwrite)


@click.command(epilog=examples("export"))
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--format", type=click.Choice(EXPORT_FORMATS), default=_EXPORT.format,
              show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True,
              help="The model file; its card is written beside it as OUT.card.json.")
@click.option("--int8", is_flag=True, default=_EXPORT.int8,
              help="ONNX: quantise to int8 (static, calibrated on the training tiles); the "
                   "card reports its accuracy against float32.")
@click.option("--calibration", type=click.Path(exists=True), default=_EXPORT.calibration,
              help="Tile manifest or image folder to calibrate --int8 on when the training "
                   "tiles are not at hand.")
@click.option("--overwrite", is_flag=True, help="Replace OUT and its card if they exist.")
@handle_errors
@settings_option(ExportSettings)
def export(model_dir: str, out_path: str, settings: ExportSettings, overwrite: bool) -> None:
    """Write a model as one self-contained ONNX or TorchScript file plus its card."""
    from histotile.workflows.tasks.export import export_command

    click.echo(export_command(model_dir, out_path, settings, overwrite=overwrite))


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


@click.command(epilog=examples("bench"), help=f"""Time every pipeline stage on a synthetic
    slide against its same-run baseline and the original workflow; print the Markdown
    table and write it (and a JSON) to a file.

    A tool, not a test: run it on a quiet machine. The synthetic slides are written once
    and cached in --work (the {FULL_SIZE[0] * FULL_SIZE[1] / 1e9:g}-gigapixel one takes a
    few minutes).""")
@click.option("--quick", is_flag=True, default=_BENCH.quick,
              help=f"A {QUICK_SIZE[0]:,} x {QUICK_SIZE[1]:,} px slide and a sampled training "
                   "epoch (about 2 min).")
@click.option("--work", type=click.Path(file_okay=False), default=str(_BENCH.work),
              show_default=True,
              help="Folder for the cached synthetic slides and every stage's outputs.")
@click.option("--out", type=click.Path(dir_okay=False), default=_BENCH.out,
              help="The Markdown table (JSON beside it) [default: WORK/benchmark.md].")
@click.option("--size", callback=_size, default=_BENCH.size, metavar="WxH",
              help=f"Main slide size in level-0 px [default: {_wxh(FULL_SIZE)}; quick "
                   f"{_wxh(QUICK_SIZE)}].")
@click.option("--device", default=_BENCH.device,
              help="cpu, cuda or cuda:N for training and prediction [default: CUDA when "
                   "present].")
@click.option("--workers", type=click.IntRange(1), default=_BENCH.workers,
              help="Tiling processes [default: the CPU cores].")
@click.option("--train-tiles", type=click.IntRange(0), default=_BENCH.train_tiles,
              help="Tiles of the timed epoch; the rest is extrapolated (0: all) [default: "
                   f"all; quick {QUICK_TRAIN_TILES}].")
@click.option("--resnet-tiles", type=click.IntRange(1), default=_BENCH.resnet_tiles,
              help="Tiles ResNet18 classifies before extrapolating [default: "
                   f"{RESNET_TILES}; quick {QUICK_RESNET_TILES}].")
@click.option("--scaling/--no-scaling", default=_BENCH.scaling, show_default=True,
              help="Also tile two smaller slides (1/16 and 1/4 of the area).")
@click.option("--from-json", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Print (and rewrite beside it) the table of an earlier run's JSON; "
                   "measures nothing.")
@handle_errors
@settings_option(BenchmarkSettings)
def bench(settings: BenchmarkSettings, from_json: str | None) -> None:
    from histotile._atomic import write_text_atomic
    from histotile._settings import required
    from histotile.workflows.benchmark import run_benchmark
    from histotile.workflows.benchmark.suite import load_result
    from histotile.workflows.cli.console import bench_progress

    if from_json:
        result = load_result(from_json)
        write_text_atomic(required(result.markdown_path, "the table's path"), result.markdown)
        click.echo(result.markdown)
        click.echo(f"table: {result.markdown_path}")
        return
    with bench_progress() as on_event:
        result = run_benchmark(settings, progress=on_event)
    # Plain text, never wrapped: the table is meant to be pasted into Markdown.
    click.echo(result.markdown)
    click.echo(f"table: {result.markdown_path}\nevery figure: {result.json_path}")


def _serve_settings(values: dict[str, Any]) -> ServeSettings:
    """The serve options (``paths`` as ``roots``, ``model_dir`` as ``model``), checked."""
    values["roots"] = list(values.pop("paths"))
    values["model"] = values.pop("model_dir")
    return ServeSettings.from_dict(values).validate()


@click.command(epilog=examples("serve"))
@click.argument("paths", nargs=-1, required=True)
@option(ServeSettings, "results", "--results", type=click.Path(file_okay=False),
        help="Results folder of 'histotile run' (heatmaps, decisions); jobs write here.")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
              default=None, help="Model folder for the classify page, :predict and jobs.")
@option(ServeSettings, "host", "--host",
        help="Address to listen on; beyond loopback needs --token or --insecure.")
@option(ServeSettings, "port", "--port", type=click.IntRange(1, 65535))
@option(ServeSettings, "token", "--token", envvar="HISTOTILE_TOKEN",
        help="Bearer token required on every request [env HISTOTILE_TOKEN].")
@option(ServeSettings, "insecure", "--insecure", is_flag=True,
        help="Allow --host beyond loopback without a token.")
@option(ServeSettings, "public_metrics", "--public-metrics", is_flag=True,
        help="Serve /metrics without the token (/healthz and /readyz never need it).")
@option(ServeSettings, "max_upload_mb", "--max-upload-mb",
        type=click.FloatRange(min=0, min_open=True), help="Largest upload accepted (413 above).")
@option(ServeSettings, "threshold", "--threshold", type=click.FloatRange(0, 1),
        help="Tile threshold of the classify service (default: the model card's "
             f"operating point, else {DEFAULT_TILE_THRESHOLD:g}).")
@config_option
@handle_errors
@settings_option(ServeSettings, build=_serve_settings,
                 fields=("paths", "model_dir", *field_names(ServeSettings)))
def serve(settings: ServeSettings) -> None:
    """Serve slides (PATHS: files or folders), their heatmaps and results in a web viewer,
    and the model as a REST service (OpenAPI at /openapi.json)."""
    from histotile.workflows.serve import serve_settings

    serve_settings(settings, echo=click.echo)
