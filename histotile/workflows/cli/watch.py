"""``histotile watch``: run every slide that appears under a folder once it is completely
written (see :mod:`histotile.workflows.watch`). Light: click only until it runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from histotile.workflows.cli.groups import (
    annotation_inputs,
    decision_threshold_option,
    default_class_option,
    geojson_option,
    heatmap_look,
    model_options,
    out_option,
    positive_class_option,
    slide_geometry,
    threshold_option,
)
from histotile.workflows.cli.options import (
    config_option,
    examples,
    handle_errors,
    option,
    typed,
)
from histotile.workflows.options import Geometry
from histotile.workflows.slide_options import RunOptions
from histotile.workflows.watch import WatchSettings


@click.command(epilog=examples("watch"))
@click.argument("inbox", type=click.Path(exists=True, file_okay=False))
@model_options
@out_option("as run's --out, outside INBOX")
@geojson_option
@annotation_inputs
@positive_class_option
@default_class_option
@option(WatchSettings, "settle", "--settle", type=click.FloatRange(min=0),
        help="Seconds a file's size and modification time must stay unchanged before it "
             "is read (a slide still being copied is never opened).")
@option(WatchSettings, "poll", "--poll", is_flag=True,
        help="Poll the folder instead of waiting for file-system events (NFS, SMB).")
@option(WatchSettings, "interval", "--interval", type=click.FloatRange(min=0, min_open=True),
        help="Seconds between checks of files still being written, and between polls.")
@threshold_option
@decision_threshold_option
@heatmap_look
@slide_geometry(Geometry)
@config_option
@handle_errors
@typed(RunOptions)
def watch(inbox: str, model_dir: str, out_dir: str, settle: float, poll: bool,
          interval: float, options: RunOptions) -> None:
    """Run every slide that appears under INBOX (recursively), as 'histotile run' would,
    once it is completely written; slides finished before are skipped. Stops, after the
    slide being run, on SIGTERM or Ctrl-C."""
    from histotile.workflows.watch import stop_on_signals, watch_folder

    settings = WatchSettings(inbox=Path(inbox), out_dir=Path(out_dir), model_dir=Path(model_dir),
                             settle=settle, poll=poll, interval=interval, run=options).validate()
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
