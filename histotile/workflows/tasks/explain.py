"""``histotile explain``: per slide, galleries of the tiles the model is surest and least
sure about, with their Grad-CAM (and, with an annotation, its worst mistakes)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from histotile.workflows.slide_options import ExplainOptions, PredictOptions
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
from histotile.workflows.tasks.roles import slide_roles, used_threshold


def explain_task(slide_path: str, out_dir: str, model_dir: str,
                 options: ExplainOptions | None = None,
                 annotation: str | None = None) -> dict[str, Any]:
    """Explain one slide: ``OUT/<slide>/explanations.png`` and ``.html``. Uses the saved
    predictions in ``options.predictions_dir`` when given, else predicts the slide first,
    with the model's tiling and ``options.geometry`` on top (``level``,
    ``magnification``, ``mpp``... as ``run`` takes them: a slide without mpp needs
    ``level``). The fingerprint keeps its earlier keys (``class_name`` for the class
    explained), so folders explained before stay finished."""
    from histotile.postprocess import evaluate_slide, load_predictions
    from histotile.postprocess.explain import write_explanations

    options = options or ExplainOptions()
    saved = (None if options.predictions_dir is None
             else saved_predictions(slide_path, options.predictions_dir))
    tiling = options.geometry.given()

    def prepare():
        return None if saved is None else load_predictions(saved)

    def work(outputs, predictions) -> dict[str, Any]:
        predictor = load_predictor(model_dir)
        if predictions is None:
            predictions = predict_part(slide_path, model_dir,
                                       PredictOptions(geometry=options.geometry), None)
        positive_class = slide_roles(predictions, options.positive_class).positive_class
        used = used_threshold(predictions, options.threshold, positive_class).value
        truth = None
        if annotation is not None:
            truth = evaluate_slide(slide_path, predictions, annotation,
                                   positive_class=positive_class,
                                   tile_threshold=used).truth
        paths = write_explanations(slide_path, predictions, predictor, outputs.folder,
                                   positive_class=positive_class, top=options.top,
                                   threshold=used, truth=truth, overwrite=True)
        return {**prediction_fields(predictions),
                "outputs": {k: str(v) for k, v in paths.items()},
                "extra": {"positive_class": positive_class, "top": options.top,
                          "annotation": annotation}}

    return resumable(
        "explain", slide_path, out_dir, options.overwrite,
        {"class_name": options.positive_class, "top": options.top,
         "threshold": options.threshold, **({"tiling": tiling} if tiling else {})}, work,
        model_dir=model_dir, prepare=prepare,
        extra={"annotation": file_identity(annotation),
               "predictions": file_identity(saved)})


def explain_batch(slides: Iterable[str | Path], model_dir: str | Path, out_dir: str | Path,
                  options: ExplainOptions | None = None, execution: Execution | None = None,
                  show_progress: bool = True) -> list[SlideRecord]:
    """Explain every slide (see :func:`explain_task`); annotations are used where found."""
    from histotile.workflows.tasks.batch import annotation_jobs, resolve_slides, run_jobs

    options = options or ExplainOptions()
    paths = resolve_slides(slides)
    found, notes = annotation_jobs(paths, options.annotations)
    jobs = [{"slide_path": str(path), "out_dir": str(out_dir), "model_dir": str(model_dir),
             "options": options, "annotation": found[path]} for path in paths]
    return run_jobs(explain_task, jobs, execution, "explain", show_progress, notes)
