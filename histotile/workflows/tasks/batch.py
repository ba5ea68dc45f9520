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
from histotile.workflows.options import AnnotationInputs, ModelUse
from histotile.workflows.slide_options import (
    EvaluateOptions,
    HeatmapOptions,
    PredictOptions,
    RunOptions,
    TileOptions,
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


def annotation_jobs(paths: list[Path], inputs: AnnotationInputs
                    ) -> tuple[dict[Path, str | None], dict[str, str | None]]:
    """Each slide's annotation (``inputs.annotations``, default beside it) and the
    batch's notes about them (see :func:`histotile.workflows.tasks.inputs.slide_annotations`;
    one file for several slides needs ``inputs.annotations_for_all``)."""
    found = slide_annotations(paths, inputs.annotations, inputs.annotations_for_all)
    return ({p: annotation for p, (annotation, _) in found.items()},
            {str(p): note for p, (_, note) in found.items()})


def tile_batch(slides: Iterable[str | Path], out_dir: str | Path,
               options: TileOptions | None = None, execution: Execution | None = None,
               show_progress: bool = True) -> list[SlideRecord]:
    """Tile every slide (with its annotation when found); write per-slide manifests and
    ``OUT/manifest.csv`` for all slides, balanced when ``options.balance`` is set."""
    options = options or TileOptions()
    paths = resolve_slides(slides)
    settings = options.tiling
    # OUT/manifest.csv is the union of every slide tiled into OUT: one tiling for all.
    check_tiling_agrees(out_dir, settings.to_dict(),
                        {slide_stem(p) for p in paths} if options.overwrite else set())
    found, notes = annotation_jobs(paths, options.annotations)
    execution = execution or Execution()
    # In-process, one slide at a time uses every core through region workers; on a
    # cluster the slides themselves are spread over the workers.
    region_workers = 1 if execution.distributed else thread_budget()
    jobs = [{"slide_path": str(p), "out_dir": str(out_dir), "options": options,
             "annotation": found[p],
             "missing_annotation": _missing(p, options.annotations.annotations),
             "workers": region_workers} for p in paths]
    records = run_jobs(tile_task, jobs, execution, "tiling", show_progress, notes)
    combine_manifests(records, out_dir, balance=options.balance, seed=settings.seed)
    if options.stain_normalise and any(r.status != "failed" for r in records):
        from histotile.workflows.tasks.stain import record_stain

        record_stain(out_dir, options.stain_normalise, options.stain_reference,
                     seed=settings.seed)
    return records


def _missing(slide: Path, annotations: str | Path | None) -> str | None:
    """The warning for a slide without an annotation when ``--annotations`` was given."""
    if annotations is None or find_annotation(slide, annotations) is not None:
        return None
    stem = slide_stem(slide)
    return (f"no annotation found in {annotations} (looked for {stem}.geojson, "
            f"{stem}.overlay.*, {stem}.mask.*): every tile is labelled the default class")


def predict_batch(slides: Iterable[str | Path], model_dir: str | Path,
                  out_dir: str | Path, options: PredictOptions | None = None,
                  execution: Execution | None = None,
                  show_progress: bool = True) -> list[SlideRecord]:
    """``predict`` for every slide."""
    execution = execution or Execution()
    jobs = [{"slide_path": str(path), "out_dir": str(out_dir), "model_dir": str(model_dir),
             "options": options or PredictOptions(),
             "region_megapixels": execution.region_megapixels}
            for path in resolve_slides(slides)]
    return run_jobs(predict_task, jobs, execution, "predict", show_progress)


def heatmap_batch(slides: Iterable[str | Path], predictions_dir: str | Path,
                  out_dir: str | Path, options: HeatmapOptions | None = None,
                  execution: Execution | None = None,
                  show_progress: bool = True) -> list[SlideRecord]:
    """``heatmap`` for every slide, from the predictions saved in ``predictions_dir``."""
    jobs = [{"slide_path": str(path), "out_dir": str(out_dir),
             "predictions_dir": str(predictions_dir), "options": options or HeatmapOptions()}
            for path in resolve_slides(slides)]
    return run_jobs(heatmap_task, jobs, execution, "heatmap", show_progress)


def run_batch(slides: Iterable[str | Path], model_dir: str | Path, out_dir: str | Path,
              options: RunOptions | None = None, execution: Execution | None = None,
              show_progress: bool = True) -> list[SlideRecord]:
    """``run`` for every slide (evaluated where annotated); ``OUT/evaluation.json`` over
    the slides evaluated."""
    options = options or RunOptions()
    execution = execution or Execution()
    paths = resolve_slides(slides)
    found, notes = annotation_jobs(paths, options.annotations)
    jobs = [{"slide_path": str(path), "out_dir": str(out_dir), "model_dir": str(model_dir),
             "options": options, "annotation": found[path],
             "region_megapixels": execution.region_megapixels} for path in paths]
    records = run_jobs(run_task, jobs, execution, "run", show_progress, notes)
    combine_evaluations(records, out_dir)
    return records


def evaluate_batch(slides: Iterable[str | Path], predictions_dir: str | Path,
                   out_dir: str | Path, options: EvaluateOptions | None = None,
                   execution: Execution | None = None,
                   show_progress: bool = True) -> list[SlideRecord]:
    """Evaluate every slide that has an annotation; write per-slide and overall results."""
    options = options or EvaluateOptions()
    paths = resolve_slides(slides)
    found, notes = annotation_jobs(paths, options.annotations)
    jobs = [{"slide_path": str(path), "predictions_dir": str(predictions_dir),
             "out_dir": str(out_dir), "annotation": found[path], "options": options}
            for path in paths]
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

    predictor = load_predictor(model_dir, ModelUse(batch_size=options.get("batch_size"),
                                                   tta=bool(options.get("tta"))))
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
