"""The tool commands: ``demo``, ``export``, ``bench`` and ``serve`` (registered on the one
``cli`` group in :mod:`histotile.workflows.cli.main`)."""

from __future__ import annotations

from typing import Any

import click

from histotile.workflows.cli.options import (
    config_option,
    examples,
    handle_errors,
    overwrite_option,
)


@click.command(epilog=examples("demo"))
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


@click.command(epilog=examples("export"))
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
    from histotile.workflows.tasks.export import export_command

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


@click.command(epilog=examples("bench"))
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
    from histotile.workflows.cli.console import bench_progress

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


@click.command(epilog=examples("serve"))
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
@click.option("--public-metrics", is_flag=True,
              help="Serve /metrics without the token (/healthz and /readyz never need it).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=50.0,
              show_default=True, help="Largest upload accepted (413 above).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Tile threshold of the classify service (default: the model card's "
                   "operating point, else 0.5).")
@config_option
@handle_errors
def serve(paths: tuple[str, ...], model_dir: str | None, **options: Any) -> None:
    """Serve slides (PATHS: files or folders), their heatmaps and results in a web viewer,
    and the model as a REST service (OpenAPI at /openapi.json)."""
    from histotile.workflows.serve import serve_paths

    serve_paths(paths, model=model_dir, echo=click.echo, **options)
