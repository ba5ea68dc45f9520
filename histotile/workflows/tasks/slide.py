"""Per-slide tasks: module-level functions of paths and plain settings dicts, so that a
Dask worker can run them from nothing but their arguments. Each returns a
:class:`~histotile.workflows.tasks.report.SlideRecord` as a dict. (``predict_task`` lives in
:mod:`histotile.workflows.tasks.predict`.)"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from histotile.class_roles import Role
from histotile.workflows.jsonable import plain
from histotile.workflows.options import HeatmapOptions, RunOptions, tiling_settings
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
    resolve_positive_class,
    used_threshold,
)
from histotile.wsi import open_slide

StageProgress = Callable[[str, int, int], None]
"""``(stage, done, total)``: a stage's name as it starts (done = total = 0), then the
tiles done of the total while it counts them."""


def tile_task(slide_path: str, out_dir: str, tiling: dict[str, Any] | None = None,
              classes: str | None = None, annotation: str | None = None,
              export_images: bool = False, overwrite: bool = False,
              workers: int = 1, missing_annotation: str | None = None,
              strict: bool = False) -> dict[str, Any]:
    """Tile one slide: ``OUT/<slide>/manifest.csv`` (and tile PNGs when asked).
    ``workers`` > 1 tiles the slide's regions in that many processes.

    An annotation that labels nothing (``missing_annotation``: where one was looked for
    in vain; see :mod:`histotile.tiling.annotation_checks`) is a warning in the record,
    or with ``strict`` an :class:`AnnotationError`."""
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

    settings = tiling_settings(tiling, classes)

    def warn(problems: list[str]) -> None:
        if strict and problems:
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
        if export_images:
            export_imagefolder(manifest, Path(out_dir) / "images", overwrite=True)
        counts = manifest["label"].value_counts() if len(manifest) else {}
        return {"tiles": len(manifest),
                "class_shares": {c: float(counts.get(c, 0)) / max(len(manifest), 1)
                                 for c in settings.classes},
                "outputs": {"manifest": str(path)}, "warning": "; ".join(found) or None,
                "extra": {"annotation": annotation, "tiling": settings.to_dict(),
                          "qc": _slide_qc_figures(plan)}}

    return resumable("tile", slide_path, out_dir, overwrite, settings.to_dict(), work,
                     extra={"annotation": file_identity(annotation),
                            "export_images": export_images, "strict": strict})


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


def _heatmap_and_decision(slide_path: str, predictions, options: HeatmapOptions,
                          outputs) -> tuple[dict[str, str], str, dict[str, Any]]:
    from histotile.postprocess import slide_decision, write_heatmap
    from histotile.postprocess.render import DEFAULT_FLOOR

    roles = model_roles(list(predictions.classes), predictions.model,
                        positive=options.class_name)
    positive_class = roles.positive_class
    used = used_threshold(predictions, options.threshold, positive_class)
    result = write_heatmap(
        slide_path, predictions, outputs.path("heatmap.tif"), class_name=positive_class,
        mode=options.mode, threshold=used.value, color=options.rgb(),
        alpha=options.alpha, downsample=options.downsample, colormap=options.colormap,
        floor=DEFAULT_FLOOR if options.floor is None else options.floor,
        preview_path=outputs.path("preview.png"), overwrite=True)
    decision = slide_decision(predictions, positive_class, tile_threshold=used.value,
                              fraction_threshold=options.decision_threshold)
    written = {"heatmap": str(result.path), "preview": str(result.preview_path)}
    from histotile.postprocess.montage import MONTAGE_FILE, write_montage

    written["montage"] = str(write_montage(
        slide_path, predictions, outputs.path(MONTAGE_FILE), class_name=positive_class,
        threshold=used.value, overwrite=True))
    if options.probability_tiff:
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
                 heatmap: HeatmapOptions | dict[str, Any] | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Heatmap slide and preview of one slide from its saved predictions."""
    from histotile.postprocess import load_predictions

    options = HeatmapOptions.of(heatmap)
    saved = saved_predictions(slide_path, predictions_dir)

    def work(outputs, predictions) -> dict[str, Any]:
        written, decision, extra = _heatmap_and_decision(slide_path, predictions, options,
                                                         outputs)
        fields = prediction_fields(predictions)
        return {**fields, "decision": decision, "outputs": written,
                "warning": extra.pop("warning"), "extra": {**fields["extra"], **extra}}

    return resumable("heatmap", slide_path, out_dir, overwrite,
                     {"heatmap": _recorded(heatmap, options)}, work,
                     extra={"predictions": file_identity(saved)},
                     prepare=lambda: load_predictions(saved))


def run_task(slide_path: str, out_dir: str, model_dir: str,
             tiling: dict[str, Any] | None = None,
             heatmap: HeatmapOptions | dict[str, Any] | None = None,
             annotation: str | None = None, batch_size: int | None = None,
             overwrite: bool = False,
             region_megapixels: float | None = None,
             geojson: bool = True, engine: str = RunOptions.engine,
             progress: StageProgress | None = None,
             tta: bool = RunOptions.tta) -> dict[str, Any]:
    """Predict, heatmap, decide and (with an annotation) evaluate one slide (prediction
    in parts over the cluster for slides over ``region_megapixels``); with ``geojson``
    also the QuPath files. ``progress(stage, done, total)`` names each stage as it
    starts ("predicting", "heatmap", "evaluating") and follows the tiles classified.
    ``tta``: test-time augmentation (see :class:`histotile.models.Predictor`)."""
    options = HeatmapOptions.of(heatmap)
    report = progress or (lambda _stage, _done, _total: None)

    def work(outputs, _prepared) -> dict[str, Any]:
        report("predicting", 0, 0)
        predictions, written, parts = predict_and_save(
            slide_path, model_dir, tiling, batch_size, outputs, region_megapixels, engine,
            progress=lambda done, total: report("predicting", done, total), tta=tta,
            threshold=options.threshold)
        if geojson:
            written.update(qupath_files(predictions, outputs, options))
        report("heatmap", 0, 0)
        more, decision, extra = _heatmap_and_decision(slide_path, predictions, options,
                                                      outputs)
        written.update(more)
        warning = "; ".join(filter(None, (extra.pop("warning"), prediction_notes(
            slide_path, model_dir, tiling, predictions)))) or None
        if annotation is not None:
            report("evaluating", 0, 0)
            evaluation = _evaluate(slide_path, predictions, annotation,
                                   extra["positive_class"], options, outputs)
            written.update(evaluation.pop("outputs"))
            warning = "; ".join(filter(None, (warning, evaluation.pop("warning")))) or None
            extra["evaluation"] = evaluation
        fields = prediction_fields(predictions, parts)
        return {**fields, "decision": decision, "outputs": written, "warning": warning,
                "extra": {**fields["extra"], **extra}}

    return resumable("run", slide_path, out_dir, overwrite,
                     {"tiling": tiling, "heatmap": _recorded(heatmap, options),
                      **engine_setting(engine), **prediction_setting(tta, None)}, work,
                     model_dir=model_dir,
                     extra={"annotation": file_identity(annotation),
                            **({} if geojson else {"geojson": False})})


def _evaluate(slide_path: str, predictions, annotation: str, positive_class: str,
              options: HeatmapOptions, outputs) -> dict[str, Any]:
    """Evaluate against the annotation; the default class (the truth of unannotated
    tiles) is ``--default-class``, else the model card's, never the class order."""
    import json

    from histotile._atomic import write_text_atomic
    from histotile.postprocess import evaluate_slide, write_side_by_side

    used = used_threshold(predictions, options.threshold, positive_class)
    threshold = used.value
    roles = model_roles(list(predictions.classes), predictions.model, positive=positive_class,
                        default=options.default_class)
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
                               outputs.path("side_by_side.png"), class_name=positive_class,
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
                  heatmap: HeatmapOptions | dict[str, Any] | None = None,
                  overwrite: bool = False) -> dict[str, Any]:
    """Evaluate one slide's saved predictions against its annotation."""
    from histotile.errors import AnnotationError
    from histotile.postprocess import load_predictions

    options = HeatmapOptions.of(heatmap)
    name = slide_stem(Path(slide_path))
    if annotation is None:
        raise AnnotationError(f"{slide_path}: no annotation found (looked for {name}.geojson, "
                              f"{name}.overlay.*, {name}.mask.*); pass --annotations FOLDER")
    saved = saved_predictions(slide_path, predictions_dir)

    def work(outputs, predictions) -> dict[str, Any]:
        positive_class = resolve_positive_class(list(predictions.classes),
                                                predictions.model, options.class_name)
        evaluation = _evaluate(slide_path, predictions, annotation, positive_class, options,
                               outputs)
        written = evaluation.pop("outputs")
        warning = evaluation.pop("warning")
        return {**prediction_fields(predictions), "outputs": written, "warning": warning,
                "extra": {"evaluation": evaluation, "positive_class": positive_class}}

    return resumable("evaluate", slide_path, out_dir, overwrite,
                     {"heatmap": _recorded(heatmap, options)}, work,
                     extra={"annotation": file_identity(annotation),
                            "predictions": file_identity(saved)},
                     prepare=lambda: load_predictions(saved))


def _recorded(given: HeatmapOptions | dict[str, Any] | None,
              options: HeatmapOptions) -> dict[str, Any] | None:
    """The heatmap options as a fingerprint records them: the options given explicitly
    (None when a task was called without any), as before they were typed."""
    return None if given is None else options.to_dict()
