"""Predicting one slide (in parts over the cluster when it is large) with the model's
own tiling, and the per-slide ``predict`` task with its QuPath files. The options travel
whole (:class:`~histotile.workflows.slide_options.PredictOptions`, or ``run``'s, which
is one), to the parts on other workers too."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from histotile.workflows.options import Geometry
from histotile.workflows.slide_options import PredictOptions
from histotile.workflows.tasks.execution import SlideParts
from histotile.workflows.tasks.process import load_predictor, set_threads
from histotile.workflows.tasks.resumable import (
    engine_setting,
    prediction_fields,
    resumable,
)
from histotile.workflows.tasks.roles import slide_roles, used_threshold
from histotile.wsi import open_slide

if TYPE_CHECKING:  # annotations only: prediction is imported where it runs
    from histotile.postprocess.predict import Progress


def _merged_tiling(predictor, geometry: Geometry):
    """The model's own tiling (tiles cut the way it was trained) with the geometry given
    on top; None when nothing was given (predict_slide's default)."""
    given = geometry.given()
    if not given:
        return None
    from histotile.postprocess.predict import settings_from_card
    from histotile.tiling import TilingSettings

    base = settings_from_card(predictor).to_dict()
    if any(k in given for k in ("magnification", "mpp", "level")):
        base.update(magnification=None, mpp=None, level=None)
    base.update(given)
    return TilingSettings.from_dict(base)


def predict_and_save(slide_path: str, model_dir: str, options: PredictOptions, outputs,
                     parts: SlideParts | None = None,
                     progress: Progress | None = None) -> tuple[Any, dict[str, str], int]:
    """Predict (in ``parts`` over the cluster when large), save; return the predictions,
    the files written and the number of parts. ``progress(done, total)`` follows the tiles
    classified (in one process only: parts on a cluster report nothing)."""
    parts = parts or SlideParts()
    count = _region_parts(slide_path, parts.megapixels)
    if count > 1:
        predictions = _predict_on_cluster(slide_path, model_dir, options, count,
                                          parts.retries)
    else:
        predictions = predict_part(slide_path, model_dir, options, None, progress=progress)
    path = predictions.save(outputs.path("predictions.csv"), overwrite=True)
    return predictions, {"predictions": str(path)}, count


def predict_part(slide_path: str, model_dir: str, options: PredictOptions,
                 part: tuple[int, int] | None, progress: Progress | None = None):
    """Predictions of one slide, or of one part of it (a task of its own on a cluster):
    tiles cut as ``options.geometry`` says on top of the model's tiling, predicted as
    ``options.model`` says; ``options.threshold`` recorded (None: the card's)."""
    from histotile.postprocess import predict_slide

    set_threads()
    predictor = load_predictor(model_dir, options.model)
    return predict_slide(slide_path, predictor,
                         tiling=_merged_tiling(predictor, options.geometry),
                         batch_size=options.model.batch_size, part=part, progress=progress,
                         threshold=options.threshold)


def prediction_notes(slide_path: str, model_dir: str, geometry: Geometry,
                     predictions) -> str | None:
    """Warnings about a slide's predictions that are not errors: a level chosen on a
    slide without a resolution while the model card records the one it was trained at
    (the tiles' scale cannot be checked), and no tile at all (with the reason)."""
    from histotile.models.card import read_card
    from histotile.tiling.no_tissue import colour_reason

    notes = []
    card = read_card(model_dir).get("tiling") or {}
    trained = card.get("magnification") or card.get("tile_mpp")
    with open_slide(slide_path) as slide:
        if geometry.level is not None and slide.mpp is None and trained:
            scale = (f"{card['magnification']:g}x" if card.get("magnification")
                     else f"{card['tile_mpp']:g} um/px")
            notes.append(f"the slide records no resolution (mpp), so the scale of its "
                         f"level {geometry.level} cannot be checked against the model's "
                         f"training tiles ({scale}): unless the scan matches it, these "
                         "predictions are not meaningful (pass --mpp or --magnification "
                         "for a slide whose scale you know)")
        if len(predictions) == 0:
            reason = colour_reason(slide) or ("no tile held enough tissue, cut as the "
                                              "model's tiling says; check the slide and "
                                              "the tiling options")
            notes.append(f"no tissue tile: {reason}")
    return "; ".join(notes) or None


def _region_parts(slide_path: str, region_megapixels: float | None) -> int:
    """How many parts to split a slide's prediction into: one unless this runs on a Dask
    worker and the slide is larger than ``region_megapixels`` (level 0)."""
    if not region_megapixels:
        return 1
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return 1  # not on a cluster: one process predicts the whole slide
    with open_slide(slide_path) as slide:
        width, height = slide.dimensions
    return max(1, int(-(-(width * height) // int(region_megapixels * 1e6))))


def _predict_on_cluster(slide_path: str, model_dir: str, options: PredictOptions,
                        parts: int, retries: int):
    """Spread the ``parts`` of a very large slide over the cluster: each part is a task
    that gets only paths and the options (``retries`` extra attempts); the tables of
    probabilities come back and are joined. This task leaves its worker slot while
    waiting (worker_client secedes)."""
    from distributed import worker_client

    from histotile.postprocess import concat_predictions

    with worker_client() as client:
        futures = [client.submit(predict_part, slide_path, model_dir, options,
                                 (index, parts), pure=False, retries=retries)
                   for index in range(parts)]
        return concat_predictions(client.gather(futures))


def predict_task(slide_path: str, out_dir: str, model_dir: str,
                 options: PredictOptions | None = None,
                 parts: SlideParts | None = None) -> dict[str, Any]:
    """Predict one slide: ``OUT/<slide>/predictions.csv`` (+ ``.json`` sidecar) and, with
    ``options.geojson``, the QuPath files. On a cluster, a very large slide is predicted
    in ``parts`` on several workers."""
    options = options or PredictOptions()

    def work(outputs, _prepared) -> dict[str, Any]:
        predictions, written, count = predict_and_save(slide_path, model_dir, options,
                                                       outputs, parts)
        if options.geojson:
            positive_class = slide_roles(predictions, None).positive_class
            written.update(qupath_files(predictions, outputs, positive_class, None))
        return {**prediction_fields(predictions, count), "outputs": written,
                "warning": prediction_notes(slide_path, model_dir, options.geometry,
                                            predictions)}

    return resumable("predict", slide_path, out_dir, options.overwrite,
                     {"tiling": options.geometry.given(),
                      **engine_setting(options.model.engine),
                      **prediction_setting(options.model.tta, options.threshold)}, work,
                     model_dir=model_dir,
                     extra=None if options.geojson else {"geojson": False})


def prediction_setting(tta: bool, threshold: float | None) -> dict[str, Any]:
    """TTA and an explicit threshold as part of a task's fingerprint, only when given (so
    folders finished before these options existed stay finished)."""
    return {**({"tta": True} if tta else {}),
            **({"threshold": float(threshold)} if threshold is not None else {})}


def qupath_files(predictions, outputs, positive_class: str,
                 threshold: float | None) -> dict[str, str]:
    """``predictions.geojson`` and ``regions.geojson`` (the regions of ``positive_class``
    at the tile threshold ``threshold``, None: the one the predictions record) for
    QuPath."""
    from histotile.postprocess.qupath import write_qupath

    used = used_threshold(predictions, threshold, positive_class)
    return write_qupath(predictions, outputs.folder, positive_class=positive_class,
                        threshold=used.value, overwrite=True)
