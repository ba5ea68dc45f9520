"""``histotile watch``: run every slide that appears under a folder once it is completely
written (see :mod:`histotile.workflows.watch`). Light: click only until it runs."""

from __future__ import annotations

import sys
from typing import Any

import click

from histotile.workflows.cli.options import (
    config_option,
    engine_option,
    examples,
    handle_errors,
    heatmap_options,
    prediction_options,
    tiling_options,
)
from histotile.workflows.watch import WatchSettings


@click.command(epilog=examples("watch"))
@click.argument("inbox", type=click.Path(exists=True, file_okay=False))
@prediction_options
@click.option("--annotations", type=click.Path(exists=True), default=None,
              help="Evaluate slides that have annotations (folder, default: beside slides).")
@click.option("--default-class", default=None,
              help="Truth of unannotated tiles (default: the model card's default class).")
@click.option("--settle", type=click.FloatRange(min=0), default=WatchSettings.settle,
              show_default=True, help="Seconds a file's size and modification time must "
              "stay unchanged before it is read (a slide still being copied is never opened).")
@click.option("--poll", is_flag=True,
              help="Poll the folder instead of waiting for file-system events (NFS, SMB).")
@click.option("--interval", type=click.FloatRange(min=0, min_open=True),
              default=WatchSettings.interval, show_default=True,
              help="Seconds between checks of files still being written, and between polls.")
@engine_option
@heatmap_options
@tiling_options
@config_option
@handle_errors
def watch(inbox: str, model_dir: str, out_dir: str, settle: float, poll: bool,
          interval: float, **options: Any) -> None:
    """Run every slide that appears under INBOX (recursively), as 'histotile run' would,
    once it is completely written; slides finished before are skipped. Stops, after the
    slide being run, on SIGTERM or Ctrl-C."""
    from histotile.workflows.watch import stop_on_signals, watch_folder

    settings = WatchSettings(inbox=inbox, out_dir=out_dir, model_dir=model_dir, settle=settle,
                             poll=poll, interval=interval, options=options).validate()
    click.echo(f"histotile watch: {inbox} -> {out_dir} (settle {settings.settle:g} s"
               f"{', polling' if poll else ''}); stop with SIGTERM or Ctrl-C")
    watch_folder(settings, on_event=_echo, stop=stop_on_signals())
    click.echo("histotile watch: stopped")
    sys.exit(0)


def _echo(event) -> None:
    if event.kind == "processing":
        click.echo(f"running {event.path}")
    elif event.kind == "finished":
        record = event.record
        detail = record.error or record.warning or record.decision or ""
        click.echo(f"{record.status} {event.path}: {record.tiles} tiles, "
                   f"{record.seconds:.1f} s" + (f" ({detail})" if detail else ""))
