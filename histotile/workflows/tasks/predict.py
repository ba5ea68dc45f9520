"""Predicting one slide (in parts over the cluster when it is large) with the model's
own tiling, and the per-slide ``predict`` task with its QuPath files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from histotile.workflows.options import HeatmapOptions, RunOptions
from histotile.workflows.tasks.process import load_predictor, set_threads
from histotile.workflows.tasks.resumable import engine_setting, prediction_fields, resumable
from histotile.workflows.tasks.roles import resolve_positive_class, used_threshold
from histotile.wsi import open_slide

if TYPE_CHECKING:  # annotations only: prediction is imported where it runs
    from histotile.postprocess.predict import Progress


def _merged_tiling(predictor, tiling: dict[str, Any] | None):
    """The model's own tiling (tiles cut the way it was trained) with any explicitly
    given options on top; None when nothing was given (predict_slide's default)."""
    if not tiling:
        return None
    from histotile.postprocess.predict import settings_from_card
    from histotile.tiling import TilingSettings

    base = settings_from_card(predictor).to_dict()
    if any(k in tiling for k in ("magnification", "mpp", "level")):
        base.update(magnification=None, mpp=None, level=None)
    base.update(tiling)
    return TilingSettings.from_dict(base)


def predict_and_save(slide_path: str, model_dir: str, tiling: dict[str, Any] | None,
             batch_size: int | None, outputs,
             region_megapixels: float | None = None, engine: str = RunOptions.engine,
             progress: Progress | None = None, tta: bool = RunOptions.tta,
             threshold: float | None = None) -> tuple[Any, dict[str, str], int]:
    """Predict (in parts over the cluster when large), save; return the predictions, the
    files written and the number of parts. ``progress(done, total)`` follows the tiles
    classified (in one process only: parts on a cluster report nothing). ``tta``:
    test-time augmentation; ``threshold``: a flag's tile threshold, recorded (None: the
    card's)."""
    parts = _region_parts(slide_path, region_megapixels)
    if parts > 1:
        predictions = _predict_on_cluster(slide_path, model_dir, tiling, batch_size, parts,
                                          engine, tta, threshold)
    else:
        predictions = predict_part(slide_path, model_dir, tiling, batch_size, None, engine,
                                   progress=progress, tta=tta, threshold=threshold)
    path = predictions.save(outputs.path("predictions.csv"), overwrite=True)
    return predictions, {"predictions": str(path)}, parts


def predict_part(slide_path: str, model_dir: str, tiling: dict[str, Any] | None,
                 batch_size: int | None, part: tuple[int, int] | None,
                 engine: str = RunOptions.engine,
                 progress: Progress | None = None, tta: bool = RunOptions.tta,
                 threshold: float | None = None):
    """Predictions of one slide, or of one part of it (a task of its own on a cluster)."""
    from histotile.postprocess import predict_slide

    set_threads()
    predictor = load_predictor(model_dir, batch_size, engine, tta)
    return predict_slide(slide_path, predictor, tiling=_merged_tiling(predictor, tiling),
                         batch_size=batch_size, part=part, progress=progress,
                         threshold=threshold)


def prediction_notes(slide_path: str, model_dir: str, tiling: dict[str, Any] | None,
                     predictions) -> str | None:
    """Warnings about a slide's predictions that are not errors: a level chosen on a
    slide without a resolution while the model card records the one it was trained at
    (the tiles' scale cannot be checked), and no tile at all (with the reason)."""
    from histotile.models.card import read_card
    from histotile.tiling.no_tissue import colour_reason

    notes = []
    geometry = read_card(model_dir).get("tiling") or {}
    trained = geometry.get("magnification") or geometry.get("tile_mpp")
    with open_slide(slide_path) as slide:
        if (tiling or {}).get("level") is not None and slide.mpp is None and trained:
            scale = (f"{geometry['magnification']:g}x" if geometry.get("magnification")
                     else f"{geometry['tile_mpp']:g} um/px")
            notes.append(f"the slide records no resolution (mpp), so the scale of its "
                         f"level {tiling['level']} cannot be checked against the model's "
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


def _predict_on_cluster(slide_path: str, model_dir: str, tiling: dict[str, Any] | None,
                        batch_size: int | None, parts: int, engine: str = RunOptions.engine,
                        tta: bool = RunOptions.tta, threshold: float | None = None):
    """Spread the parts of a very large slide over the cluster: each part is a task that
    gets only paths and settings; the tables of probabilities come back and are joined.
    This task leaves its worker slot while waiting (worker_client secedes)."""
    from distributed import worker_client

    from histotile.postprocess import concat_predictions

    with worker_client() as client:
        futures = [client.submit(predict_part, slide_path, model_dir, tiling, batch_size,
                                 (index, parts), engine, None, tta, threshold, pure=False,
                                 retries=2)
                   for index in range(parts)]
        return concat_predictions(client.gather(futures))


def predict_task(slide_path: str, out_dir: str, model_dir: str,
                 tiling: dict[str, Any] | None = None, batch_size: int | None = None,
                 overwrite: bool = False,
                 region_megapixels: float | None = None,
                 geojson: bool = True, engine: str = RunOptions.engine,
                 tta: bool = RunOptions.tta, threshold: float | None = None
                 ) -> dict[str, Any]:
    """Predict one slide: ``OUT/<slide>/predictions.csv`` (+ ``.json`` sidecar) and, with
    ``geojson``, the QuPath files. On a cluster, slides over ``region_megapixels`` are
    predicted in parts on several workers. ``tta``: test-time augmentation;
    ``threshold``: ``--threshold`` (None: the model card's), recorded in the sidecar."""
    def work(outputs, _prepared) -> dict[str, Any]:
        predictions, written, parts = predict_and_save(slide_path, model_dir, tiling,
                                                       batch_size, outputs,
                                                       region_megapixels, engine, tta=tta,
                                                       threshold=threshold)
        if geojson:
            written.update(qupath_files(predictions, outputs, HeatmapOptions()))
        return {**prediction_fields(predictions, parts), "outputs": written,
                "warning": prediction_notes(slide_path, model_dir, tiling, predictions)}

    return resumable("predict", slide_path, out_dir, overwrite,
                     {"tiling": tiling, **engine_setting(engine),
                      **prediction_setting(tta, threshold)}, work,
                     model_dir=model_dir, extra=None if geojson else {"geojson": False})


def prediction_setting(tta: bool, threshold: float | None) -> dict[str, Any]:
    """TTA and an explicit threshold as part of a task's fingerprint, only when given (so
    folders finished before these options existed stay finished)."""
    return {**({"tta": True} if tta else {}),
            **({"threshold": float(threshold)} if threshold is not None else {})}


def qupath_files(predictions, outputs, heatmap: HeatmapOptions) -> dict[str, str]:
    """``predictions.geojson`` and ``regions.geojson`` (of the positive class; none when
    the model has several classes and none was chosen) for QuPath."""
    from histotile.errors import ModelError
    from histotile.postprocess.qupath import write_qupath

    try:
        positive_class = resolve_positive_class(list(predictions.classes),
                                                predictions.model, heatmap.class_name)
    except ModelError:
        positive_class = None
    threshold = used_threshold(predictions, heatmap.threshold, positive_class)
    return write_qupath(predictions, outputs.folder, class_name=positive_class,
                        threshold=threshold.value, overwrite=True)
