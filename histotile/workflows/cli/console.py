"""Terminal output for the CLI: progress bars and summary tables (rich), kept apart from
the stages, which report progress through plain callbacks and never print."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
from histotile.workflows.tasks.report import (
    BUSY,
    COMPLETE,
    ELSEWHERE,
    FAILED,
    OK,
    SKIPPED,
    SlideRecord,
    skip_counts,
)

# Output to a file or pipe (a batch job's log) is at least this wide: rich's 80 columns
# for a non-terminal (or a COLUMNS=80 that a job runner passes on) cut a QC table's
# figures to "0.…"; a table takes only the width it needs.
LOG_WIDTH = 240


def _console(**rich_console: Any) -> Console:
    made = Console(highlight=False, **rich_console)
    if not made.is_terminal:
        made.width = max(made.width, LOG_WIDTH)
    return made


console = _console(stderr=True)
out = _console()


@contextlib.contextmanager
def progress_bar(description: str, total: float | None,
                 unit: str = "") -> Iterator[Callable[[float], None]]:
    """A progress bar on stderr; yields ``advance(n)``. Quiet when not a terminal except
    for the final state, so logs of batch jobs stay readable."""
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)

        def advance(amount: float = 1) -> None:
            bar.advance(task, amount)

        yield advance


def summary_table(records: list[SlideRecord], title: str) -> Table:
    """One row per slide: status, tiles, class shares (or QC's area fractions), decision,
    seconds, error; the tiles and error columns only when some row has one."""
    names = sorted({c for r in records for c in r.fractions()})
    show_tiles = any(r.tiles for r in records)
    show_error = any(r.error for r in records)
    table = Table(title=title, title_justify="left")
    table.add_column("slide", overflow="fold")  # a name is never cut short
    table.add_column("status")
    if show_tiles:
        table.add_column("tiles", justify="right")
    for name in names:
        table.add_column(escape(name), justify="right")
    table.add_column("decision")
    table.add_column("s", justify="right")
    if show_error:
        table.add_column("error", overflow="fold", max_width=60)
    colours = {OK: "green", SKIPPED: "cyan", FAILED: "red"}
    for r in records:
        # Names, decisions and errors come from files and exceptions: never markup.
        status = "skipped: done by another run" if r.skip_reason == ELSEWHERE else r.status
        cells = [escape(r.slide), f"[{colours.get(r.status, 'white')}]{status}[/]"]
        cells += [str(r.tiles)] if show_tiles else []
        cells += [f"{r.fractions().get(c, 0.0):.1%}" for c in names]
        cells += [escape(r.decision or ""), f"{r.seconds:.1f}"]
        cells += [escape(r.error or "")] if show_error else []
        table.add_row(*cells)
    return table


def print_summary(records: list[SlideRecord], title: str, report_paths=()) -> None:
    out.print(summary_table(records, title))
    counts = {s: sum(r.status == s for r in records) for s in (OK, SKIPPED, FAILED)}
    skips = skip_counts(records)
    parts = [f"{counts[OK]} ok", f"{skips[COMPLETE]} skipped (already complete; "
                                 "--overwrite redoes them)"]
    if skips[ELSEWHERE]:
        parts.append(f"{skips[ELSEWHERE]} finished by another histotile run meanwhile")
    if skips[BUSY]:
        parts.append(f"{skips[BUSY]} skipped (another histotile run is still working on "
                     "them; run the command again once it has finished)")
    out.print(f"{len(records)} slides: {', '.join(parts)}, {counts[FAILED]} failed")
    for path in report_paths:
        out.print(f"report: {escape(str(path))}")
    if counts[FAILED]:
        out.print("[red]Some slides failed:[/] see the error column; fix or remove those "
                  "files and run the same command again (finished slides are skipped).")


def print_info(info: dict) -> None:
    """A slide's metadata as a small table (see
    :func:`histotile.workflows.tasks.inputs.slide_info`)."""
    if "error" in info:
        out.print(f"[red]error[/]: {escape(str(info['error']))}")
        return
    table = Table(title=escape(f"{info['name']}  ({info['path']})"), title_justify="left")
    table.add_column("level", justify="right")
    table.add_column("width x height", justify="right")
    table.add_column("downsample", justify="right")
    table.add_column("um/px", justify="right")
    for level in info["levels"]:
        mpp = level["mpp"]
        table.add_row(str(level["level"]), f"{level['width']} x {level['height']}",
                      f"{level['downsample']:.2f}", "-" if mpp is None else f"{mpp:.3f}")
    out.print(table)
    objective = info["objective_power"]
    out.print(f"format: {info['vendor']}   objective: "
              f"{'unknown' if objective is None else f'{objective:g}x'}   "
              f"mpp: {info['mpp'] if info['mpp'] is not None else 'unknown'}   "
              f"associated images: {escape(', '.join(info['associated_images'])) or 'none'}")


@contextlib.contextmanager
def training_progress() -> Iterator[Callable[..., None]]:
    """A progress bar per fold for :func:`histotile.models.train`'s progress events."""
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("epochs"), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        tasks: dict[str, TaskID] = {}

        def on_event(event: str, **info) -> None:
            tag = str(info.get("tag", ""))
            if event == "fold_start":
                tasks[tag] = bar.add_task(escape(f"{tag} ({info.get('n_train', '?')} tiles)"),
                                          total=info.get("epochs"), status="")
            elif event == "epoch" and tag in tasks:
                losses = info.get("losses") or {}
                status = "  ".join(f"{k} loss {v:.3f}" for k, v in losses.items()
                                   if isinstance(v, float))
                if not console.is_terminal:  # no bar in a log: one line per epoch
                    console.print(f"{tag} epoch {info.get('epoch')}/{info.get('epochs')}: "
                                  f"{status}", markup=False)
                bar.update(tasks[tag], completed=info.get("epoch"),
                           total=info.get("epochs"), status=status)
            elif event == "fold_end" and tag in tasks:
                task = bar.tasks[tasks[tag]]
                bar.update(tasks[tag], total=task.completed)
            elif event == "done":
                console.print(f"model folder: {escape(str(info.get('model_dir')))}")

        yield on_event


@contextlib.contextmanager
def bench_progress() -> Iterator[Callable[..., None]]:
    """Progress of :func:`histotile.workflows.benchmark.run_benchmark`: the inputs being
    written, then one bar over the measurements with a line per finished one."""
    columns = [SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("measurements"), TimeElapsedColumn()]
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task: list[TaskID] = []

        def on_event(event: str, **info) -> None:
            if event == "inputs":
                sizes = ", ".join(f"{w:,} x {h:,}" for w, h in info["sizes"])
                console.print(f"synthetic slides ({sizes}): written once, then cached")
            elif event == "input_ready" and info["seconds"] > 0.5:
                console.print(f"wrote {escape(str(info['slide']))} in {info['seconds']:.0f} s")
            elif event == "start":
                if not task:
                    task.append(bar.add_task("", total=info["total"]))
                bar.update(task[0], description=escape(str(info["key"])))
            elif event == "end":
                result = info["result"]
                console.print(f"{escape(str(info['key']))}: {result['seconds']:.1f} s, peak "
                              f"{max(result['peak_rss_mib'], result['peak_rss_children_mib']):,.0f}"
                              " MiB")
                bar.advance(task[0])

        yield on_event


def training_summary(result) -> Any:
    """A rich table of cross-validation (mean +- std over folds) and test metrics, the
    test split also at the card's operating point; each rate names the class it is
    about ("sensitivity (idc)"), balanced accuracy and AUC stand beside accuracy."""
    card = getattr(result, "card", None) or {}
    point = card.get("operating_point") or {}
    at_point = (card.get("metrics") or {}).get("test_at_operating_point")
    positive = (result.test or {}).get("positive_class") or card.get("positive_class")
    about = f" ({positive})" if positive and len(result.classes) == 2 else " (macro)"
    table = Table(title=f"cross-validation ({len(result.folds)} folds) and held-out test",
                  title_justify="left")
    table.add_column("metric")
    table.add_column("folds: mean +- std", justify="right")
    table.add_column(f"test (threshold {DEFAULT_TILE_THRESHOLD:g})" if at_point else "test",
                     justify="right")
    if at_point:
        table.add_column(escape(f"test (threshold {at_point['threshold']:.3f})"),
                         justify="right")
    for name in ("accuracy", "balanced_accuracy", "roc_auc", "loss", "sensitivity",
                 "specificity", "precision", "f1", "tiles_per_second"):
        stats = result.summary.get(name)
        tests = [_figure((result.test or {}).get(name))]
        if at_point:
            tests.append(_figure(at_point.get(name)))
        if not stats and tests[0] is None:
            continue
        mean = "-" if not stats or stats.get("mean") is None else (
            f"{stats['mean']:.3f} +- {stats.get('std') or 0:.3f}")
        label = name.replace("_", " ").replace("roc auc", "AUC")
        if name in ("sensitivity", "specificity", "precision", "f1", "roc_auc"):
            label += about
        table.add_row(escape(label), mean, *("-" if v is None else f"{v:.3f}" for v in tests))
    lines = []
    if point.get("threshold") is not None:
        lines.append(f"operating point ({point.get('rule')}): {positive} when its "
                     f"probability >= {point['threshold']:.3f}, chosen on the "
                     f"{point.get('fitted_on') or 'rule alone'}")
    lines.extend(_training_notes(result, card))
    if lines:
        table.caption = escape("\n".join(lines))
    return table


def _training_notes(result, card: dict[str, Any]) -> list[str]:
    """What a reader of the summary must know about the data and the folds: images
    skipped or resized (the table's notes), folds retried or still collapsed."""
    notes = [f"data: {note}" for note in (card.get("data") or {}).get("notes") or []]
    base = (card.get("training") or {}).get("lr")
    for fold in result.folds or []:
        if fold.get("collapsed"):
            notes.append(f"fold {fold.get('fold')} predicts one class for every validation "
                         "tile even after a retry: its figures are those of a model that "
                         "learned nothing")
        elif base and fold.get("lr") and fold["lr"] < base:
            notes.append(f"fold {fold.get('fold')} collapsed to one class at lr {base:g} "
                         f"and was trained again at lr {fold['lr']:g}")
    final = card.get("final_model") or {}
    if final.get("kind") == "ensemble":
        notes.append(f"final model: the ensemble of the {final.get('members')} fold models "
                     "(their averaged probabilities)")
    return notes


def _figure(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
