"""Batch commands over many slides: build one job per slide, run them through
:mod:`histotile.workflows.tasks.execution`, show progress, return the records.

Shared by the CLI and the Python API (:mod:`histotile.workflows.api`)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from histotile._threads import thread_budget
from histotile.errors import ConfigError
from histotile.workflows.options import (
    TILING_OPTIONS,
    HeatmapOptions,
    RunOptions,
    parse_classes,
    tiling_settings,
)
from histotile.workflows.tasks.aggregate import (
    check_tiling_agrees,
    combine_evaluations,
    combine_manifests,
)
from histotile.workflows.tasks.execution import Execution, Task, run_tasks
from histotile.workflows.tasks.inputs import (
    expand_slides,
    find_annotation,
    slide_annotations,
    slide_stem,
)
from histotile.workflows.tasks.predict import predict_task
from histotile.workflows.tasks.process import load_predictor
from histotile.workflows.tasks.report import SlideRecord
from histotile.workflows.tasks.resumable import settle_busy
from histotile.workflows.tasks.slide import evaluate_task, heatmap_task, run_task, tile_task
from histotile.workflows.training.task import train_task

# Class roles given when tiling (recorded in manifest.json for training).
CLASS_KEYS = ("default_class", "positive_class")


def _pick(options: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {k: options[k] for k in keys if options.get(k) is not None}


def resolve_slides(slides: Iterable[str | Path]) -> list[Path]:
    """Expand slide arguments and refuse two slides that would share an output folder."""
    paths = expand_slides(slides)
    clashes = [name for name, n in Counter(slide_stem(p) for p in paths).items()
               if n > 1 and name]  # empty names fail per slide (check_slide_input)
    if clashes:
        examples = [str(p) for p in paths if slide_stem(p) == clashes[0]]
        raise ConfigError(f"slides share the name {clashes[0]!r} ({', '.join(examples)}): "
                          "outputs are named after slides; run them in separate batches "
                          "or rename one")
    return paths


def _progress(description: str, total: int):
    from rich.markup import escape

    from histotile.workflows.cli.console import console, progress_bar

    bar = progress_bar(description, total, "slides")
    advance = bar.__enter__()
    done = [0]

    def on_record(record: SlideRecord) -> None:
        if record.status == "failed":  # names and errors come from files: never markup
            console.print(f"[red]failed[/] {escape(record.slide)}: {escape(record.error or '')}")
        elif record.error:  # skipped with a reason (another run holds the folder)
            console.print(f"[cyan]skipped[/] {escape(record.slide)}: {escape(record.error)}")
        elif record.warning:
            console.print(f"[yellow]warning[/] {escape(record.slide)}: "
                          f"{escape(record.warning)}")
        if not console.is_terminal:  # no bar in a log: one line per slide
            done[0] += 1
            console.print(f"{description} {done[0]}/{total}: {record.slide} {record.status} "
                          f"({record.tiles} tiles, {record.seconds:.1f} s)", markup=False)
        advance(1)

    return bar, on_record


def run_jobs(task: Task, jobs: list[dict[str, Any]], execution: Execution | None,
             description: str, show_progress: bool,
             notes: dict[str, str | None] | None = None) -> list[SlideRecord]:
    """Run the jobs; slides skipped because another run held their folder, and that run
    finished since, are reported as finished by it (:func:`settle_busy`). ``notes``:
    slide path -> a warning of the batch's own to add to that slide's record."""
    pending = {path: note for path, note in (notes or {}).items() if note}

    def noted(record: SlideRecord) -> SlideRecord:
        note = pending.pop(record.path, None)
        if note:
            record.warning = "; ".join(filter(None, (record.warning, note)))
        return record

    if not show_progress:
        return [noted(r) for r in settle_busy(run_tasks(task, jobs, execution))]
    bar, on_record = _progress(description, len(jobs))
    try:
        records = run_tasks(task, jobs, execution, lambda r: on_record(noted(r)))
        return [noted(r) for r in settle_busy(records)]
    finally:
        bar.__exit__(None, None, None)


def annotation_jobs(paths: list[Path], options: dict[str, Any]
                    ) -> tuple[dict[Path, str | None], dict[str, str | None]]:
    """Each slide's annotation (``options['annotations']``, default beside it) and the
    batch's notes about them (see :func:`histotile.workflows.tasks.inputs.slide_annotations`;
    one file for several slides needs ``options['annotations_for_all']``)."""
    found = slide_annotations(paths, options.get("annotations"),
                              bool(options.get("annotations_for_all")))
    return ({p: annotation for p, (annotation, _) in found.items()},
            {str(p): note for p, (_, note) in found.items()})


def tile_batch(slides: Iterable[str | Path], out_dir: str | Path, options: dict[str, Any],
               execution: Execution | None = None,
               show_progress: bool = True) -> list[SlideRecord]:
    """Tile every slide (with its annotation when found); write per-slide manifests and
    ``OUT/manifest.csv`` for all slides, balanced when ``options['balance']`` is set."""
    paths = resolve_slides(slides)
    parse_classes(options.get("classes"))  # a bad class list stops the batch at once
    tiling = _pick(options, TILING_OPTIONS + CLASS_KEYS)
    # OUT/manifest.csv is the union of every slide tiled into OUT: one tiling for all.
    check_tiling_agrees(out_dir, tiling_settings(tiling, options.get("classes")).to_dict(),
                        {slide_stem(p) for p in paths} if options.get("overwrite") else set())
    annotations = options.get("annotations")
    found, notes = annotation_jobs(paths, options)
    execution = execution or Execution()
    # In-process, one slide at a time uses every core through region workers; on a
    # cluster the slides themselves are spread over the workers.
    region_workers = 1 if execution.distributed else thread_budget()
    jobs = [{"slide_path": str(p), "out_dir": str(out_dir), "tiling": tiling,
             "workers": region_workers,
             "classes": options.get("classes"),
             "annotation": found[p],
             "missing_annotation": _missing(p, annotations),
             "strict": bool(options.get("strict")),
             "export_images": bool(options.get("export_images")),
             "overwrite": bool(options.get("overwrite"))} for p in paths]
    records = run_jobs(tile_task, jobs, execution, "tiling", show_progress, notes)
    combine_manifests(records, out_dir, balance=options.get("balance"),
                      seed=options.get("seed") or 0)
    if options.get("stain_normalise") and any(r.status != "failed" for r in records):
        from histotile.workflows.tasks.stain import record_stain

        record_stain(out_dir, options["stain_normalise"], options.get("stain_reference"),
                     seed=options.get("seed") or 0)
    return records


def _missing(slide: Path, annotations: str | Path | None) -> str | None:
    """The warning for a slide without an annotation when ``--annotations`` was given."""
    if annotations is None or find_annotation(slide, annotations) is not None:
        return None
    stem = slide_stem(slide)
    return (f"no annotation found in {annotations} (looked for {stem}.geojson, "
            f"{stem}.overlay.*, {stem}.mask.*): every tile is labelled the default class")


def slide_batch(kind: str, slides: Iterable[str | Path], out_dir: str | Path,
                options: dict[str, Any], *, model_dir: str | Path | None = None,
                predictions_dir: str | Path | None = None,
                execution: Execution | None = None,
                show_progress: bool = True) -> list[SlideRecord]:
    """``predict``, ``heatmap`` or ``run`` for every slide."""
    task = {"predict": predict_task, "heatmap": heatmap_task,
            "run": run_task}.get(kind)
    if task is None:
        raise ValueError(f"unknown batch kind {kind!r}")
    heatmap = HeatmapOptions.pick(options)  # bad options stop the batch at once
    paths = resolve_slides(slides)
    common: dict[str, Any] = {"out_dir": str(out_dir),
                              "overwrite": bool(options.get("overwrite"))}
    if kind in ("predict", "run"):
        run = RunOptions.pick(options)
        common.update(model_dir=str(model_dir), tiling=run.tiling, batch_size=run.batch_size,
                      region_megapixels=(execution or Execution()).region_megapixels,
                      geojson=run.geojson, engine=run.engine,
                      **({"tta": True} if run.tta else {}))
    if kind == "predict" and run.threshold is not None:
        common["threshold"] = run.threshold
    if kind in ("heatmap", "run"):
        common["heatmap"] = heatmap
    if kind == "heatmap":
        common["predictions_dir"] = str(predictions_dir)
    found, notes = annotation_jobs(paths, options) if kind == "run" else ({}, {})
    jobs = [{"slide_path": str(path), **common,
             **({"annotation": found[path]} if kind == "run" else {})} for path in paths]
    records = run_jobs(task, jobs, execution, kind, show_progress, notes)
    if kind == "run":
        combine_evaluations(records, out_dir)
    return records


def evaluate_batch(slides: Iterable[str | Path], predictions_dir: str | Path,
                   out_dir: str | Path, options: dict[str, Any],
                   execution: Execution | None = None,
                   show_progress: bool = True) -> list[SlideRecord]:
    """Evaluate every slide that has an annotation; write per-slide and overall results."""
    paths = resolve_slides(slides)
    heatmap = HeatmapOptions.pick(options)
    found, notes = annotation_jobs(paths, options)
    jobs = [{"slide_path": str(path), "predictions_dir": str(predictions_dir),
             "out_dir": str(out_dir), "annotation": found[path], "heatmap": heatmap,
             "overwrite": bool(options.get("overwrite"))} for path in paths]
    records = run_jobs(evaluate_task, jobs, execution, "evaluate", show_progress, notes)
    combine_evaluations(records, out_dir)
    return records


def train_model(data: str | Path, out_dir: str | Path, options: dict[str, Any],
                show_progress: bool = True, fold_runner: Any = None):
    """Train from a manifest or image folder (see :func:`histotile.models.train`;
    ``fold_runner``: where the folds train, default in this process)."""
    from rich.markup import escape

    from histotile.workflows.cli.console import out, training_summary

    started = time.perf_counter()
    result = train_task(data, out_dir, options, show_progress=show_progress,
                        fold_runner=fold_runner)
    if show_progress:
        for note in (result.card.get("data") or {}).get("notes") or []:
            out.print(f"note: {escape(str(note))}")  # skipped images, left-out tiles
        out.print(training_summary(result))
        out.print(f"model written to {escape(str(out_dir))} in "
                  f"{time.perf_counter() - started:.0f} s")
    return result


def evaluate_image_folder(model_dir: str | Path, folder: str | Path, out_dir: str | Path,
                          options: dict[str, Any], show_progress: bool = True):
    """``histotile evaluate-images`` (see :mod:`histotile.workflows.tasks.image_evaluation`)."""
    from histotile.workflows.tasks.image_evaluation import evaluate_images

    predictor = load_predictor(model_dir, options.get("batch_size"),
                               tta=bool(options.get("tta")))
    keys = ("positive_class", "patch_size", "patch_stride", "target_sensitivity",
            "tile_threshold")
    result = evaluate_images(predictor, folder, out_dir, **_pick(options, keys))
    if show_progress:
        from histotile.workflows.cli.console import out

        out.print(Path(result.outputs["markdown"]).read_text(encoding="utf-8"), markup=False,
                  highlight=False)
        out.print(f"written to {out_dir}: " + ", ".join(
            Path(p).name for p in result.outputs.values()))
    return result
