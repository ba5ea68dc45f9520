"""``histotile explain``: per slide, galleries of the tiles the model is surest and least
sure about, with their Grad-CAM (and, with an annotation, its worst mistakes)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from histotile.workflows.options import AnnotationInputs, Geometry
from histotile.workflows.slide_options import HeatmapOptions, PredictOptions
from histotile.workflows.tasks.execution import Execution
from histotile.workflows.tasks.predict import predict_part
from histotile.workflows.tasks.process import load_predictor
from histotile.workflows.tasks.report import SlideRecord
from histotile.workflows.tasks.resumable import (
    file_identity,
    prediction_fields,
    resumable,
    saved_predictions,
)
from histotile.workflows.tasks.roles import resolve_positive_class, used_threshold


def explain_task(slide_path: str, out_dir: str, model_dir: str,
                 predictions_dir: str | None = None, annotation: str | None = None,
                 class_name: str | None = None, top: int = 8,
                 threshold: float | None = HeatmapOptions.threshold,
                 overwrite: bool = False,
                 tiling: dict[str, Any] | None = None) -> dict[str, Any]:
    """Explain one slide: ``OUT/<slide>/explanations.png`` and ``.html``. Uses the saved
    predictions in ``predictions_dir`` when given, else predicts the slide first, with
    the model's tiling and the ``tiling`` options given (``level``, ``magnification``,
    ``mpp``... as ``run`` takes them: a slide without mpp needs ``level``)."""
    from histotile.postprocess import evaluate_slide, load_predictions
    from histotile.postprocess.explain import write_explanations

    saved = None if predictions_dir is None else saved_predictions(slide_path,
                                                                   predictions_dir)

    def prepare():
        return None if saved is None else load_predictions(saved)

    def work(outputs, predictions) -> dict[str, Any]:
        predictor = load_predictor(model_dir)
        if predictions is None:
            predictions = predict_part(slide_path, model_dir, PredictOptions(
                geometry=Geometry.from_dict(tiling or {})), None)
        positive_class = resolve_positive_class(list(predictions.classes),
                                                predictions.model, class_name)
        used = used_threshold(predictions, threshold, positive_class).value
        truth = None
        if annotation is not None:
            truth = evaluate_slide(slide_path, predictions, annotation,
                                   positive_class=positive_class,
                                   tile_threshold=used).truth
        paths = write_explanations(slide_path, predictions, predictor, outputs.folder,
                                   class_name=positive_class, top=top, threshold=used,
                                   truth=truth, overwrite=True)
        return {**prediction_fields(predictions),
                "outputs": {k: str(v) for k, v in paths.items()},
                "extra": {"positive_class": positive_class, "top": top,
                          "annotation": annotation}}

    return resumable(
        "explain", slide_path, out_dir, overwrite,
        {"class_name": class_name, "top": top, "threshold": threshold,
         **({"tiling": tiling} if tiling else {})}, work,
        model_dir=model_dir, prepare=prepare,
        extra={"annotation": file_identity(annotation),
               "predictions": file_identity(saved)})


def explain_batch(slides: Iterable[str | Path], model_dir: str | Path, out_dir: str | Path,
                  options: dict[str, Any], execution: Execution | None = None,
                  show_progress: bool = True) -> list[SlideRecord]:
    """Explain every slide (see :func:`explain_task`); annotations are used where found."""
    from histotile.workflows.tasks.batch import annotation_jobs, resolve_slides, run_jobs

    predictions_dir = options.get("predictions_dir")
    paths = resolve_slides(slides)
    found, notes = annotation_jobs(paths, AnnotationInputs.from_dict(
        {k: options.get(k) for k in AnnotationInputs.option_names()}))
    tiling = Geometry.from_dict(  # the options run takes, checked alike
        {k: options.get(k) for k in Geometry.option_names()}).given()
    jobs = [{"slide_path": str(path), "out_dir": str(out_dir), "model_dir": str(model_dir),
             "tiling": tiling,
             "predictions_dir": None if predictions_dir is None else str(predictions_dir),
             "annotation": found[path],
             "class_name": options.get("class_name"), "top": int(options.get("top") or 8),
             "threshold": options.get("threshold", HeatmapOptions.threshold),
             "overwrite": bool(options.get("overwrite"))}
            for path in paths]
    return run_jobs(explain_task, jobs, execution, "explain", show_progress, notes)
