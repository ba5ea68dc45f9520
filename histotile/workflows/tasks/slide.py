"""Per-slide tasks: module-level functions of paths and typed options (the frozen
dataclasses of :mod:`histotile.workflows.slide_options`, passed whole), so that a Dask
worker can run them from nothing but their arguments. Each returns a
:class:`~histotile.workflows.tasks.report.SlideRecord` as a dict. (``predict_task`` lives in
:mod:`histotile.workflows.tasks.predict`.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from histotile.class_roles import Role
from histotile.workflows.jsonable import plain
from histotile.workflows.options import HeatmapLook
from histotile.workflows.slide_options import (
    EvaluateOptions,
    HeatmapOptions,
    RunOptions,
    TileOptions,
)
from histotile.workflows.tasks.execution import SlideParts
from histotile.workflows.tasks.inputs import slide_stem
from histotile.workflows.tasks.predict import (
    predict_and_save,
    prediction_notes,
    prediction_setting,
    qupath_files,
)
from histotile.workflows.tasks.resumable import (
    engine_setting,
    file_identity,
    prediction_fields,
    resumable,
    saved_predictions,
)
from histotile.workflows.tasks.roles import (
    assumed_note,
    model_roles,
    slide_roles,
    used_threshold,
)
from histotile.wsi import open_slide

StageProgress = Callable[[str, int, int], None]
"""``(stage, done, total)``: a stage's name as it starts (done = total = 0), then the
tiles done of the total while it counts them."""


def tile_task(slide_path: str, out_dir: str, options: TileOptions | None = None,
              annotation: str | None = None, missing_annotation: str | None = None,
              workers: int = 1) -> dict[str, Any]:
    """Tile one slide as ``options.tiling`` says: ``OUT/<slide>/manifest.csv`` (and tile
    PNGs with ``options.export_images``). ``workers`` > 1 tiles the slide's regions in
    that many processes.

    An annotation that labels nothing (``missing_annotation``: where one was looked for
    in vain; see :mod:`histotile.tiling.annotation_checks`) is a warning in the record,
    or with ``options.strict`` an :class:`AnnotationError`."""
    from histotile.tiling import (
        export_imagefolder,
        extract_tiles,
        load_annotation,
        plan_tiles,
        write_manifest,
    )
    from histotile.tiling.annotation_checks import (
        check_annotation,
        check_labels,
        unknown_classes,
        without_unknown_classes,
    )
    from histotile.tiling.no_tissue import no_tissue_reason

    options = options or TileOptions()
    settings = options.tiling

    def warn(problems: list[str]) -> None:
        if options.strict and problems:
            from histotile.errors import AnnotationError

            raise AnnotationError(f"{slide_path}: {'; '.join(problems)} (--strict)")
        found.extend(problems)

    found: list[str] = []

    def labelled():
        """The tiles, labelled from the annotation, with its problems in ``found``."""
        warn([missing_annotation] if missing_annotation else [])
        loaded = None if annotation is None else load_annotation(
            annotation, palette=settings.palette, classes=settings.classes)
        if loaded is not None:
            with open_slide(slide_path) as slide:
                warn(check_annotation(loaded, slide.dimensions, settings))
            if unknown_classes(loaded, settings.classes):
                loaded = without_unknown_classes(loaded, settings.classes)
        with open_slide(slide_path) as slide:
            plan = plan_tiles(slide, settings)
        manifest = extract_tiles(slide_path, settings, annotation=loaded, workers=workers,
                                 plan=plan)
        with open_slide(slide_path) as slide:
            if loaded is not None:
                warn(check_labels(loaded, manifest, slide, settings))
            empty = no_tissue_reason(slide, plan, manifest)
        found.extend([empty] if empty else [])  # a fact about the slide: never --strict
        return plan, manifest

    def work(outputs, _prepared) -> dict[str, Any]:
        plan, manifest = caught_warnings(labelled, found)
        path = write_manifest(manifest, outputs.path("manifest.csv"), overwrite=True)
        if options.export_images:
            export_imagefolder(manifest, Path(out_dir) / "images", overwrite=True)
        counts = manifest["label"].value_counts() if len(manifest) else {}
        return {"tiles": len(manifest),
                "class_shares": {c: float(counts.get(c, 0)) / max(len(manifest), 1)
                                 for c in settings.classes},
                "outputs": {"manifest": str(path)}, "warning": "; ".join(found) or None,
                "extra": {"annotation": annotation, "tiling": settings.to_dict(),
                          "qc": _slide_qc_figures(plan)}}

    return resumable("tile", slide_path, out_dir, options.overwrite, settings.to_dict(), work,
                     extra={"annotation": file_identity(annotation),
                            "export_images": options.export_images,
                            "strict": options.strict})


def caught_warnings(work: Callable[[], Any], found: list[str]) -> Any:
    """``work()``, its warnings (an ignored GeoJSON feature, an unused palette colour)
    added to ``found``, each once, instead of reaching the terminal raw beside the same
    problem in the record. :class:`AnnotationWarning` is left out: the checks before and
    after tiling give those problems in their own words."""
    import warnings

    from histotile.tiling.annotation_limits import AnnotationWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = work()
    for warning in caught:
        message = str(warning.message)
        if not issubclass(warning.category, AnnotationWarning) and message not in found:
            found.append(message)
    return result


def _slide_qc_figures(plan) -> dict[str, Any]:
    """The QC fractions (tissue, pen, fold, bubble, edge) and flag of a slide, from its
    tiling plan's view (the focus check reads tiles: left to ``histotile qc``)."""
    from histotile.tiling.qc import plan_qc

    fractions, flag, reasons = plan_qc(plan)
    return {"flag": flag, "reasons": reasons, **fractions}


def _heatmap_and_decision(slide_path: str, predictions, options: HeatmapOptions, roles,
                          outputs) -> tuple[dict[str, str], str, dict[str, Any]]:
    """The heatmap slide, its preview, montage (and probability TIFF) and the slide's
    decision, about ``roles.positive_class`` (the slide's roles, resolved once)."""
    from histotile.postprocess import slide_decision, write_heatmap
    from histotile.postprocess.render import DEFAULT_FLOOR

    positive_class = roles.positive_class
    look = options.look
    used = used_threshold(predictions, options.threshold, positive_class)
    result = write_heatmap(
        slide_path, predictions, outputs.path("heatmap.tif"), positive_class=positive_class,
        mode=look.mode, threshold=used.value, color=look.rgb(),
        alpha=look.alpha, downsample=look.downsample, colormap=look.colormap,
        floor=DEFAULT_FLOOR if look.floor is None else look.floor,
        preview_path=outputs.path("preview.png"), overwrite=True)
    decision = slide_decision(predictions, positive_class, tile_threshold=used.value,
                              fraction_threshold=options.decision_threshold)
    written = {"heatmap": str(result.path), "preview": str(result.preview_path)}
    from histotile.postprocess.montage import MONTAGE_FILE, write_montage

    written["montage"] = str(write_montage(
        slide_path, predictions, outputs.path(MONTAGE_FILE), positive_class=positive_class,
        threshold=used.value, overwrite=True))
    if look.probability_tiff:
        from histotile.postprocess.probability_slide import (
            PROBABILITY_FILE,
            write_probability_slide,
        )

        written["probability"] = str(write_probability_slide(
            outputs.path(PROBABILITY_FILE), predictions, positive_class, overwrite=True))
    label = "positive" if decision.positive else "negative"
    verdict = f"{label} ({decision.fraction:.1%} {positive_class})"
    if len(predictions) == 0:  # nothing was predicted: not evidence of a negative slide
        verdict = "no tissue (0 tiles; check the slide and the tissue settings)"
    return written, verdict, {
        "positive_class": positive_class, "decision": decision.to_dict(),
        "warning": assumed_note(roles),
        "heatmap": {"mode": result.style.mode, "alpha": result.style.alpha,
                    "threshold": result.style.threshold,
                    "threshold_source": used.source,
                    "downsample": result.downsample}}


def heatmap_task(slide_path: str, out_dir: str, predictions_dir: str,
                 options: HeatmapOptions | None = None) -> dict[str, Any]:
    """Heatmap slide and preview of one slide from its saved predictions."""
    from histotile.postprocess import load_predictions

    options = options or HeatmapOptions()
    saved = saved_predictions(slide_path, predictions_dir)

    def work(outputs, predictions) -> dict[str, Any]:
        roles = slide_roles(predictions, options.positive_class)
        written, decision, extra = _heatmap_and_decision(slide_path, predictions, options,
                                                         roles, outputs)
        fields = prediction_fields(predictions)
        return {**fields, "decision": decision, "outputs": written,
                "warning": extra.pop("warning"), "extra": {**fields["extra"], **extra}}

    return resumable("heatmap", slide_path, out_dir, options.overwrite,
                     {"heatmap": heatmap_record(options)}, work,
                     extra={"predictions": file_identity(saved)},
                     prepare=lambda: load_predictions(saved))


def run_task(slide_path: str, out_dir: str, model_dir: str,
             options: RunOptions | None = None, annotation: str | None = None,
             parts: SlideParts | None = None,
             progress: StageProgress | None = None) -> dict[str, Any]:
    """Predict, heatmap, decide and (with an annotation) evaluate one slide (a very large
    slide predicted in ``parts`` over the cluster); with
    ``options.geojson`` also the QuPath files. ``progress(stage, done, total)`` names
    each stage as it starts ("predicting", "heatmap", "evaluating") and follows the
    tiles classified."""
    options = options or RunOptions()
    report = progress or (lambda _stage, _done, _total: None)

    def work(outputs, _prepared) -> dict[str, Any]:
        report("predicting", 0, 0)
        predictions, written, count = predict_and_save(
            slide_path, model_dir, options, outputs, parts,
            progress=lambda done, total: report("predicting", done, total))
        roles = slide_roles(predictions, options.positive_class)
        if options.geojson:
            written.update(qupath_files(predictions, outputs, roles.positive_class,
                                        options.threshold))
        report("heatmap", 0, 0)
        more, decision, extra = _heatmap_and_decision(slide_path, predictions, options,
                                                      roles, outputs)
        written.update(more)
        warning = "; ".join(filter(None, (extra.pop("warning"), prediction_notes(
            slide_path, model_dir, options.geometry, predictions)))) or None
        if annotation is not None:
            report("evaluating", 0, 0)
            evaluation = _evaluate(slide_path, predictions, annotation,
                                   roles.positive_class, options, outputs)
            written.update(evaluation.pop("outputs"))
            warning = "; ".join(filter(None, (warning, evaluation.pop("warning")))) or None
            extra["evaluation"] = evaluation
        fields = prediction_fields(predictions, count)
        return {**fields, "decision": decision, "outputs": written, "warning": warning,
                "extra": {**fields["extra"], **extra}}

    return resumable("run", slide_path, out_dir, options.overwrite,
                     {"tiling": options.geometry.given(), "heatmap": heatmap_record(options),
                      **engine_setting(options.model.engine),
                      **prediction_setting(options.model.tta, None)}, work,
                     model_dir=model_dir,
                     extra={"annotation": file_identity(annotation),
                            **({} if options.geojson else {"geojson": False})})


def _evaluate(slide_path: str, predictions, annotation: str, positive_class: str,
              options: EvaluateOptions, outputs) -> dict[str, Any]:
    """Evaluate against the annotation; the default class (the truth of unannotated
    tiles) is ``--default-class``, else the model card's, never the class order."""
    import json

    from histotile._atomic import write_text_atomic
    from histotile.postprocess import evaluate_slide, write_side_by_side

    used = used_threshold(predictions, options.threshold, positive_class)
    threshold = used.value
    roles = model_roles(list(predictions.classes), predictions.model,
                        positive_class=positive_class, default_class=options.default_class)
    recorded = not roles.assumes(Role.DEFAULT)
    default = roles.default_class if recorded else None
    evaluation = evaluate_slide(slide_path, predictions, annotation, positive_class=positive_class,
                                tile_threshold=threshold, default_class=default)
    summary = plain({**evaluation.row(), "classes": list(evaluation.classes),
                     "positive_class": positive_class, "default_class": evaluation.default_class,
                     "tile_threshold": used.value, "tile_threshold_source": used.source,
                     "confusion": evaluation.confusion.tolist()})
    from histotile.postprocess.evaluation import write_roc_pr

    summary.update(plain(write_roc_pr(predictions, evaluation, outputs.path("roc_pr.png"),
                                      overwrite=True)))
    json_path = write_text_atomic(outputs.path("evaluation.json"),
                                  json.dumps(summary, indent=2))
    image = write_side_by_side(slide_path, predictions, annotation,
                               outputs.path("side_by_side.png"), positive_class=positive_class,
                               threshold=threshold, evaluation=evaluation, overwrite=True)
    guessed = () if recorded else (
        f"the model records no default class: unannotated tiles were taken as "
        f"{evaluation.default_class!r}, the class that is not positive (pass "
        "--default-class to choose)",)
    return {**summary, "outputs": {"evaluation": str(json_path), "side_by_side": str(image),
                                   "roc_pr": str(outputs.path("roc_pr.png"))},
            "warning": assumed_note(roles, *guessed)}


def evaluate_task(slide_path: str, predictions_dir: str, out_dir: str,
                  annotation: str | None,
                  options: EvaluateOptions | None = None) -> dict[str, Any]:
    """Evaluate one slide's saved predictions against its annotation."""
    from histotile.errors import AnnotationError
    from histotile.postprocess import load_predictions

    options = options or EvaluateOptions()
    name = slide_stem(Path(slide_path))
    if annotation is None:
        raise AnnotationError(f"{slide_path}: no annotation found (looked for {name}.geojson, "
                              f"{name}.overlay.*, {name}.mask.*); pass --annotations FOLDER")
    saved = saved_predictions(slide_path, predictions_dir)

    def work(outputs, predictions) -> dict[str, Any]:
        positive_class = slide_roles(predictions, options.positive_class).positive_class
        evaluation = _evaluate(slide_path, predictions, annotation, positive_class, options,
                               outputs)
        written = evaluation.pop("outputs")
        warning = evaluation.pop("warning")
        return {**prediction_fields(predictions), "outputs": written, "warning": warning,
                "extra": {"evaluation": evaluation, "positive_class": positive_class}}

    return resumable("evaluate", slide_path, out_dir, options.overwrite,
                     {"heatmap": heatmap_record(options)}, work,
                     extra={"annotation": file_identity(annotation),
                            "predictions": file_identity(saved)},
                     prepare=lambda: load_predictions(saved))


_RECORDED = ("positive_class", "default_class", "threshold", "decision_threshold",
             *HeatmapLook.option_names())


def heatmap_record(options: HeatmapOptions) -> dict[str, Any]:
    """The heatmap and evaluation options as a slide's fingerprint records them: each one
    set (not None), by its option name."""
    values = options.to_dict()
    return {k: values[k] for k in _RECORDED if values.get(k) is not None}
