"""Per-slide tasks: module-level functions of paths and plain settings dicts, so that a
Dask worker can run them from nothing but their arguments. Each returns a
:class:`~histotile.workflows.report.SlideRecord` as a dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histotile.wsi import open_slide


def slide_info(path: str | Path) -> dict[str, Any]:
    """A slide's metadata as plain data (what ``histotile info`` prints)."""
    with open_slide(path) as slide:
        return {
            "path": str(slide.path),
            "name": slide.name,
            "vendor": slide.vendor,
            "dimensions": list(slide.dimensions),
            "mpp": slide.mpp,
            "objective_power": slide.objective_power,
            "levels": [
                {"level": i, "width": w, "height": h, "downsample": d,
                 "mpp": slide.level_mpp(i)}
                for i, ((w, h), d) in enumerate(zip(slide.level_dimensions,
                                                    slide.level_downsamples))
            ],
            "associated_images": slide.associated_images,
        }


# -- shared helpers ---------------------------------------------------------------------

def _set_threads() -> None:
    """Keep a task within its worker's share of the cores. On a Dask worker running N
    tasks at once, each may use cores // N threads (unless HISTOTILE_THREADS says
    otherwise): OpenCV, torch and histotile's own reader and writer threads follow it."""
    import os
    import sys

    from histotile._threads import ENVIRONMENT, available_cores, thread_budget

    if not os.environ.get(ENVIRONMENT):
        try:
            from distributed import get_worker

            slots = int(getattr(get_worker(), "nthreads", 1) or 1)
        except (ImportError, ValueError):
            return  # not on a cluster: the whole machine is ours
        os.environ[ENVIRONMENT] = str(max(1, available_cores() // slots))
    threads = thread_budget()
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


_PREDICTORS: dict[str, Any] = {}


def load_predictor(model_dir: str | Path, batch_size: int | None = None,
                   engine: str = "auto"):
    """A Predictor per model folder (and engine), kept per process: a worker serving many
    slides loads the weights once."""
    from histotile.models import Predictor

    key = f"{Path(model_dir).resolve()}|{batch_size}|{engine}"
    if key not in _PREDICTORS:
        _PREDICTORS[key] = Predictor(model_dir, batch_size=batch_size, engine=engine)
        _set_threads()  # torch is loaded now: give it the task's thread budget too
    return _PREDICTORS[key]


def positive_class(classes: list[str], model: dict[str, Any], requested: str | None) -> str:
    """The class heatmaps and decisions are about: ``requested`` (a class the model has),
    else the positive class recorded in the model card (``model``: the predictions' model
    reference), else the documented default, the last class (see
    :mod:`histotile.class_roles`; :func:`model_roles` also says what was assumed)."""
    return model_roles(classes, model, positive=requested).positive_class


def model_roles(classes: list[str], model: dict[str, Any], *, positive: str | None = None,
                default: str | None = None):
    """The :class:`~histotile.class_roles.ClassRoles` of a predictions table's model, with
    explicit choices (``--class``/``--positive-class``, ``--default-class``) on top."""
    import dataclasses

    from histotile.class_roles import card_roles

    reference = {**(model or {}), "classes": list(classes)}
    roles = card_roles(reference, default_class=default, positive_class=positive,
                       source=str((model or {}).get("model_dir") or "the model"))
    # What prediction already assumed for an old card, unless chosen explicitly now.
    earlier = [n for n in reference.get("assumed") or ()
               if not (positive and "positive class" in n)
               and not (default and "default class" in n)]
    return dataclasses.replace(roles, assumed=tuple(dict.fromkeys([*earlier, *roles.assumed])))


def _assumed(roles, *extra: str) -> str | None:
    """The roles' assumptions about the positive class, and ``extra`` notes, as one
    warning (None when nothing was assumed)."""
    notes = [n for n in roles.assumed if "default class" not in n] + list(extra)
    return "; ".join(notes) or None


def class_fractions(table, classes: list[str]) -> dict[str, float]:
    """Share of tiles whose most probable class is each class."""
    import numpy as np

    if len(table) == 0:
        return dict.fromkeys(classes, 0.0)
    probabilities = table[[f"prob_{c}" for c in classes]].to_numpy()
    winners = np.bincount(probabilities.argmax(axis=1), minlength=len(classes))
    return {c: float(n) / len(table) for c, n in zip(classes, winners)}


# -- option parsing shared by the CLI and the API ---------------------------------------

NAMED_COLOURS = {"green": (0, 255, 0), "red": (255, 0, 0), "blue": (0, 0, 255),
                 "yellow": (255, 255, 0), "cyan": (0, 255, 255), "magenta": (255, 0, 255),
                 "black": (0, 0, 0), "orange": (255, 165, 0)}


def parse_colour(text: str) -> tuple[int, int, int]:
    """``#00ff00``, ``00ff00`` or a colour name (green, red, blue, ...) as RGB."""
    from histotile.errors import ConfigError

    value = text.strip().lower()
    if value in NAMED_COLOURS:
        return NAMED_COLOURS[value]
    digits = value.lstrip("#")
    if len(digits) == 6:
        try:
            return tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
        except ValueError:
            pass
    raise ConfigError(f"colour {text!r}: use #rrggbb (e.g. #00ff00) or a name "
                      f"({', '.join(NAMED_COLOURS)})")


def parse_classes(text: str | None) -> dict[str, Any]:
    """``'normal,tumour=#00ff00'`` as ``{'classes': (...), 'palette': {...}}`` (empty when
    ``text`` is None). The first class is the default (unmarked) one."""
    from histotile._names import check_folder_name
    from histotile.errors import ConfigError

    if not text:
        return {}
    classes, palette = [], {}
    for item in text.split(","):
        name, _, colour = item.partition("=")
        name = name.strip()
        if not name:
            raise ConfigError(f"--classes {text!r}: empty class name")
        check_folder_name(name, f"--classes {text!r}")
        classes.append(name)
        if colour:
            palette[name] = parse_colour(colour)
    return {"classes": tuple(classes), "palette": palette}


def parse_ratios(text: str | dict | None) -> dict[str, float] | None:
    """``'normal=1,tumour=1'`` as ``{'normal': 1.0, 'tumour': 1.0}``."""
    from histotile.errors import ConfigError

    if text is None or isinstance(text, dict):
        return text
    ratios = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            ratios[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--balance {text!r}: write class=ratio pairs, e.g. "
                              "'normal=1,tumour=1'") from None
    return ratios


def tiling_settings(tiling: dict[str, Any] | None, classes: str | None = None):
    """A TilingSettings from CLI-style options (plus ``--classes``)."""
    from histotile.tiling import TilingSettings

    values = dict(tiling or {})
    values.update(parse_classes(classes))
    if "classes" in values and "palette" not in values:
        values["palette"] = {}
    return TilingSettings.from_dict(values)


def _record(slide_path: str, **fields: Any) -> dict[str, Any]:
    from histotile.workflows.report import SlideRecord

    path = Path(slide_path)
    return SlideRecord(slide=path.name.split(".")[0], path=str(path), **fields).to_dict()


def _skipped(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "status": "skipped", "seconds": 0.0}


# -- the per-slide tasks ----------------------------------------------------------------

def _resumable(kind: str, slide_path: str, out_dir: str, overwrite: bool,
               settings: dict[str, Any], work, *, model_dir: str | None = None,
               extra: dict[str, Any] | None = None, prepare=None) -> dict[str, Any]:
    """The frame of every per-slide task: skip when finished with the same fingerprint,
    ``prepare()`` (checks that must fail before the folder is claimed), claim the output
    folder, ``work(outputs, prepared)`` -> record fields, then mark it finished."""
    import time

    from histotile._files import FolderBusyError, folder_lock, remove_stale_temporaries
    from histotile.workflows.inputs import check_slide_input
    from histotile.workflows.outputs import SlideOutputs, fingerprint

    started = time.perf_counter()
    check_slide_input(Path(slide_path))
    outputs = SlideOutputs(out_dir, Path(slide_path).name.split(".")[0], kind)
    print_ = fingerprint(slide_path, settings, model_dir, extra=extra)
    if not overwrite and (done := outputs.completed_record(print_)) is not None:
        return _skipped(done)
    prepared = prepare() if prepare is not None else None
    try:
        with folder_lock(outputs.folder):  # one run per slide folder at a time
            outputs.begin(print_, overwrite)
            remove_stale_temporaries(outputs.folder)  # left by a killed earlier run
            _set_threads()
            fields = work(outputs, prepared)
            record = _record(slide_path, seconds=time.perf_counter() - started, **fields)
            outputs.finish(print_, record)
    except FolderBusyError as busy:
        return {**_record(slide_path), "status": "skipped", "error": str(busy)}
    return record


def _prediction_fields(predictions, parts: int | None = None) -> dict[str, Any]:
    """Record fields of a slide's predictions; ``parts``: how many cluster tasks
    predicted it (known only where it was predicted, not when read back)."""
    return {"tiles": len(predictions),
            "class_fractions": class_fractions(predictions.tiles, list(predictions.classes)),
            "extra": {} if parts is None else {"prediction_parts": parts}}


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
        write_manifest,
    )
    from histotile.tiling.annotation_checks import (
        check_annotation,
        check_labels,
        without_unknown_classes,
    )

    settings = tiling_settings(tiling, classes)

    def warn(problems: list[str]) -> None:
        if strict and problems:
            from histotile.errors import AnnotationError

            raise AnnotationError(f"{slide_path}: {'; '.join(problems)} (--strict)")
        found.extend(problems)

    found: list[str] = []

    def work(outputs, _prepared) -> dict[str, Any]:
        warn([missing_annotation] if missing_annotation else [])
        loaded = None if annotation is None else load_annotation(
            annotation, palette=settings.palette, classes=settings.classes)
        if loaded is not None:
            with open_slide(slide_path) as slide:
                problems = check_annotation(loaded, slide.dimensions, settings)
            warn(problems)
            if any("not in --classes" in p for p in problems):
                loaded = without_unknown_classes(loaded, settings.classes, outputs.path("."))
        manifest = extract_tiles(slide_path, settings, annotation=loaded, workers=workers)
        if loaded is not None:
            with open_slide(slide_path) as slide:
                warn(check_labels(loaded, manifest, slide, settings))
        path = write_manifest(manifest, outputs.path("manifest.csv"), overwrite=True)
        if export_images:
            export_imagefolder(manifest, Path(out_dir) / "images", overwrite=True)
        counts = manifest["label"].value_counts() if len(manifest) else {}
        return {"tiles": len(manifest),
                "class_fractions": {c: float(counts.get(c, 0)) / max(len(manifest), 1)
                                    for c in settings.classes},
                "outputs": {"manifest": str(path)}, "warning": "; ".join(found) or None,
                "extra": {"annotation": annotation, "tiling": settings.to_dict(),
                          "qc": _slide_qc_figures(slide_path)}}

    return _resumable("tile", slide_path, out_dir, overwrite, settings.to_dict(), work,
                      extra={"annotation": _file_identity(annotation),
                             "export_images": export_images, "strict": strict})


def _slide_qc_figures(slide_path: str) -> dict[str, Any]:
    """The QC fractions (tissue, pen, fold) and flag of a slide, from its low-resolution
    view only (the focus check reads tiles: left to ``histotile qc``)."""
    from histotile.tiling.qc import QCSettings, slide_qc

    result = slide_qc(slide_path, QCSettings(blur_tiles=0))
    return {"flag": result.flag, "reasons": result.reasons,
            **{k: v for k, v in result.fractions.items() if v == v}}  # NaN: not measured


def combine_manifests(records, out_dir: str | Path, balance: str | dict | None = None,
                      seed: int = 0) -> Path | None:
    """``OUT/manifest.csv``: the manifests of every tiled slide, balanced on request,
    with ``OUT/manifest.json`` recording the tiling settings for the model card."""
    import json

    import pandas as pd

    from histotile._atomic import write_text_atomic
    from histotile.tiling import balance as balance_classes
    from histotile.tiling import read_manifest, write_manifest

    parts = [read_manifest(r.outputs["manifest"]) for r in records
             if r.status in ("ok", "skipped") and "manifest" in r.outputs]
    if not parts:
        return None
    manifest = pd.concat(parts, ignore_index=True)
    ratios = parse_ratios(balance)
    if ratios:
        manifest = balance_classes(manifest, ratios, seed=seed)
    path = write_manifest(manifest, Path(out_dir) / "manifest.csv", overwrite=True)
    tiling = next((r.extra.get("tiling") for r in records if r.extra.get("tiling")), None)
    roles = {} if not tiling else {
        "classes": tiling["classes"],
        "default_class": tiling.get("default_class") or tiling["classes"][0],
        "positive_class": tiling.get("positive_class") or tiling["classes"][-1]}
    write_text_atomic(Path(out_dir) / "manifest.json",
                      json.dumps({"tiling": tiling, **roles, "balance": ratios,
                                  "slides": [r.slide for r in records if r.status != "failed"]},
                                 indent=2))
    return path


def _file_identity(path: str | None) -> list | None:
    """Name, size and modification time of an input file (None when absent)."""
    if path is None or not Path(path).exists():
        return None
    stat = Path(path).stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


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


def _predict(slide_path: str, model_dir: str, tiling: dict[str, Any] | None,
             batch_size: int | None, outputs,
             region_megapixels: float | None = None, engine: str = "auto"
             ) -> tuple[Any, dict[str, str], int]:
    """Predict (in parts over the cluster when large), save; return the predictions, the
    files written and the number of parts."""
    parts = _region_parts(slide_path, region_megapixels)
    if parts > 1:
        predictions = _predict_on_cluster(slide_path, model_dir, tiling, batch_size, parts,
                                          engine)
    else:
        predictions = predict_part(slide_path, model_dir, tiling, batch_size, None, engine)
    path = predictions.save(outputs.path("predictions.csv"), overwrite=True)
    return predictions, {"predictions": str(path)}, parts


def predict_part(slide_path: str, model_dir: str, tiling: dict[str, Any] | None,
                 batch_size: int | None, part: tuple[int, int] | None,
                 engine: str = "auto"):
    """Predictions of one slide, or of one part of it (a task of its own on a cluster)."""
    from histotile.postprocess import predict_slide

    _set_threads()
    predictor = load_predictor(model_dir, batch_size, engine)
    return predict_slide(slide_path, predictor, tiling=_merged_tiling(predictor, tiling),
                         batch_size=batch_size, part=part)


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
                        batch_size: int | None, parts: int, engine: str = "auto"):
    """Spread the parts of a very large slide over the cluster: each part is a task that
    gets only paths and settings; the tables of probabilities come back and are joined.
    This task leaves its worker slot while waiting (worker_client secedes)."""
    from distributed import worker_client

    from histotile.postprocess import concat_predictions

    with worker_client() as client:
        futures = [client.submit(predict_part, slide_path, model_dir, tiling, batch_size,
                                 (index, parts), engine, pure=False, retries=2)
                   for index in range(parts)]
        return concat_predictions(client.gather(futures))


def _engine_setting(engine: str) -> dict[str, str]:
    """The engine as part of a task's fingerprint only when it changes the results
    (int8); the float engines agree to about 1e-6, so finished slides stay finished."""
    return {"engine": engine} if engine.endswith("int8") else {}


def predict_task(slide_path: str, out_dir: str, model_dir: str,
                 tiling: dict[str, Any] | None = None, batch_size: int | None = None,
                 overwrite: bool = False,
                 region_megapixels: float | None = None,
                 geojson: bool = True, engine: str = "auto") -> dict[str, Any]:
    """Predict one slide: ``OUT/<slide>/predictions.csv`` (+ ``.json`` sidecar) and, with
    ``geojson``, the QuPath files. On a cluster, slides over ``region_megapixels`` are
    predicted in parts on several workers."""
    def work(outputs, _prepared) -> dict[str, Any]:
        predictions, written, parts = _predict(slide_path, model_dir, tiling, batch_size,
                                               outputs, region_megapixels, engine)
        if geojson:
            written.update(_qupath(predictions, outputs, {}))
        return {**_prediction_fields(predictions, parts), "outputs": written}

    return _resumable("predict", slide_path, out_dir, overwrite,
                      {"tiling": tiling, **_engine_setting(engine)}, work,
                      model_dir=model_dir, extra=None if geojson else {"geojson": False})


def _qupath(predictions, outputs, heatmap: dict[str, Any]) -> dict[str, str]:
    """``predictions.geojson`` and ``regions.geojson`` (of the positive class; none when
    the model has several classes and none was chosen) for QuPath."""
    from histotile.errors import ModelError
    from histotile.postprocess.qupath import write_qupath

    try:
        target = positive_class(list(predictions.classes), predictions.model,
                                heatmap.get("class_name"))
    except ModelError:
        target = None
    return write_qupath(predictions, outputs.folder, class_name=target,
                        threshold=heatmap.get("threshold", 0.5), overwrite=True)


def _heatmap_and_decision(slide_path: str, predictions, heatmap: dict[str, Any],
                          outputs) -> tuple[dict[str, str], str, dict[str, Any]]:
    from histotile.postprocess import slide_decision, write_heatmap
    from histotile.postprocess.render import DEFAULT_FLOOR

    options = dict(heatmap or {})
    roles = model_roles(list(predictions.classes), predictions.model,
                        positive=options.get("class_name"))
    target = roles.positive_class
    colour = options.get("color", (0, 255, 0))
    result = write_heatmap(
        slide_path, predictions, outputs.path("heatmap.tif"), class_name=target,
        mode=options.get("mode", "threshold"), threshold=options.get("threshold", 0.5),
        color=parse_colour(colour) if isinstance(colour, str) else tuple(colour),
        alpha=options.get("alpha", 0.4), downsample=options.get("downsample"),
        colormap=options.get("colormap", "viridis"), floor=options.get("floor", DEFAULT_FLOOR),
        preview_path=outputs.path("preview.png"), overwrite=True)
    decision = slide_decision(predictions, target,
                              tile_threshold=options.get("threshold", 0.5),
                              fraction_threshold=options.get("decision_threshold", 0.5))
    written = {"heatmap": str(result.path), "preview": str(result.preview_path)}
    from histotile.postprocess.montage import MONTAGE_FILE, write_montage

    written["montage"] = str(write_montage(
        slide_path, predictions, outputs.path(MONTAGE_FILE), class_name=target,
        threshold=options.get("threshold", 0.5), overwrite=True))
    if options.get("probability_tiff"):
        from histotile.postprocess.probability_slide import (
            PROBABILITY_FILE,
            write_probability_slide,
        )

        written["probability"] = str(write_probability_slide(
            outputs.path(PROBABILITY_FILE), predictions, target, overwrite=True))
    label = "positive" if decision.positive else "negative"
    verdict = f"{label} ({decision.fraction:.1%} {target})"
    if len(predictions) == 0:  # nothing was predicted: not evidence of a negative slide
        verdict = "no tissue (0 tiles; check the slide and the tissue settings)"
    return written, verdict, {
        "positive_class": target, "decision": decision.to_dict(),
        "warning": _assumed(roles),
        "heatmap": {"mode": result.style.mode, "alpha": result.style.alpha,
                    "threshold": result.style.threshold,
                    "downsample": result.downsample}}


def heatmap_task(slide_path: str, out_dir: str, predictions_dir: str,
                 heatmap: dict[str, Any] | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Heatmap slide and preview of one slide from its saved predictions."""
    from histotile.postprocess import load_predictions

    saved = _saved_predictions(slide_path, predictions_dir)

    def work(outputs, predictions) -> dict[str, Any]:
        written, decision, extra = _heatmap_and_decision(slide_path, predictions,
                                                         heatmap or {}, outputs)
        fields = _prediction_fields(predictions)
        return {**fields, "decision": decision, "outputs": written,
                "warning": extra.pop("warning"), "extra": {**fields["extra"], **extra}}

    return _resumable("heatmap", slide_path, out_dir, overwrite, {"heatmap": heatmap}, work,
                      extra={"predictions": _file_identity(saved)},
                      prepare=lambda: load_predictions(saved))


def _saved_predictions(slide_path: str, predictions_dir: str) -> str:
    """Where ``predict``/``run`` saved a slide's predictions."""
    return str(Path(predictions_dir) / Path(slide_path).name.split(".")[0] / "predictions.csv")


def run_task(slide_path: str, out_dir: str, model_dir: str,
             tiling: dict[str, Any] | None = None, heatmap: dict[str, Any] | None = None,
             annotation: str | None = None, batch_size: int | None = None,
             overwrite: bool = False,
             region_megapixels: float | None = None,
             geojson: bool = True, engine: str = "auto") -> dict[str, Any]:
    """Predict, heatmap, decide and (with an annotation) evaluate one slide (prediction
    in parts over the cluster for slides over ``region_megapixels``); with ``geojson``
    also the QuPath files."""
    def work(outputs, _prepared) -> dict[str, Any]:
        predictions, written, parts = _predict(slide_path, model_dir, tiling, batch_size,
                                               outputs, region_megapixels, engine)
        if geojson:
            written.update(_qupath(predictions, outputs, heatmap or {}))
        more, decision, extra = _heatmap_and_decision(slide_path, predictions,
                                                      heatmap or {}, outputs)
        written.update(more)
        warning = extra.pop("warning")
        if annotation is not None:
            evaluation = _evaluate(slide_path, predictions, annotation,
                                   extra["positive_class"], heatmap or {}, outputs)
            written.update(evaluation.pop("outputs"))
            warning = "; ".join(filter(None, (warning, evaluation.pop("warning")))) or None
            extra["evaluation"] = evaluation
        fields = _prediction_fields(predictions, parts)
        return {**fields, "decision": decision, "outputs": written, "warning": warning,
                "extra": {**fields["extra"], **extra}}

    return _resumable("run", slide_path, out_dir, overwrite,
                      {"tiling": tiling, "heatmap": heatmap, **_engine_setting(engine)}, work,
                      model_dir=model_dir,
                      extra={"annotation": _file_identity(annotation),
                             **({} if geojson else {"geojson": False})})


def _evaluate(slide_path: str, predictions, annotation: str, target: str,
              options: dict[str, Any], outputs) -> dict[str, Any]:
    """Evaluate against the annotation; the default class (the truth of unannotated
    tiles) is ``--default-class``, else the model card's, never the class order."""
    import json

    from histotile._atomic import write_text_atomic
    from histotile.postprocess import evaluate_slide, write_side_by_side

    threshold = options.get("threshold", 0.5)
    roles = model_roles(list(predictions.classes), predictions.model, positive=target,
                        default=options.get("default_class"))
    recorded = not any("default class" in note for note in roles.assumed)
    default = roles.default_class if recorded else None
    evaluation = evaluate_slide(slide_path, predictions, annotation, positive_class=target,
                                tile_threshold=threshold, default_class=default)
    summary = plain({**evaluation.row(), "classes": list(evaluation.classes),
                     "positive_class": target, "default_class": evaluation.default_class,
                     "confusion": evaluation.confusion.tolist()})
    from histotile.postprocess.evaluation import write_roc_pr

    summary.update(plain(write_roc_pr(predictions, evaluation, outputs.path("roc_pr.png"),
                                      overwrite=True)))
    json_path = write_text_atomic(outputs.path("evaluation.json"),
                                  json.dumps(summary, indent=2))
    image = write_side_by_side(slide_path, predictions, annotation,
                               outputs.path("side_by_side.png"), class_name=target,
                               threshold=threshold, evaluation=evaluation, overwrite=True)
    guessed = () if recorded else (
        f"the model records no default class: unannotated tiles were taken as "
        f"{evaluation.default_class!r}, the class that is not positive (pass "
        "--default-class to choose)",)
    return {**summary, "outputs": {"evaluation": str(json_path), "side_by_side": str(image),
                                   "roc_pr": str(outputs.path("roc_pr.png"))},
            "warning": _assumed(roles, *guessed)}


def evaluate_task(slide_path: str, predictions_dir: str, out_dir: str,
                  annotation: str | None, heatmap: dict[str, Any] | None = None,
                  overwrite: bool = False) -> dict[str, Any]:
    """Evaluate one slide's saved predictions against its annotation."""
    from histotile.errors import AnnotationError
    from histotile.postprocess import load_predictions

    name = Path(slide_path).name.split(".")[0]
    if annotation is None:
        raise AnnotationError(f"{slide_path}: no annotation found (looked for {name}.geojson, "
                              f"{name}.overlay.*, {name}.mask.*); pass --annotations FOLDER")
    saved = _saved_predictions(slide_path, predictions_dir)

    def work(outputs, predictions) -> dict[str, Any]:
        target = positive_class(list(predictions.classes), predictions.model,
                                (heatmap or {}).get("class_name"))
        evaluation = _evaluate(slide_path, predictions, annotation, target, heatmap or {},
                               outputs)
        written = evaluation.pop("outputs")
        warning = evaluation.pop("warning")
        return {**_prediction_fields(predictions), "outputs": written, "warning": warning,
                "extra": {"evaluation": evaluation, "positive_class": target}}

    return _resumable("evaluate", slide_path, out_dir, overwrite, {"heatmap": heatmap}, work,
                      extra={"annotation": _file_identity(annotation),
                             "predictions": _file_identity(saved)},
                      prepare=lambda: load_predictions(saved))


def combine_evaluations(records, out_dir: str | Path) -> Path | None:
    """``OUT/evaluation.json`` and ``.csv``: per-slide tile counts (TN, FP, FN, TP of the
    positive class), sensitivity and specificity, and their total over all slides."""
    import json

    import pandas as pd

    from histotile._atomic import write_text_atomic

    rows = [r.extra["evaluation"] for r in records
            if r.status in ("ok", "skipped") and "evaluation" in r.extra]
    if not rows:
        return None
    totals = {k: int(sum(row[k] for row in rows)) for k in ("TN", "FP", "FN", "TP", "tiles")}
    overall = {"slide": "overall", **totals,
               "sensitivity": _safe_ratio(totals["TP"], totals["TP"] + totals["FN"]),
               "specificity": _safe_ratio(totals["TN"], totals["TN"] + totals["FP"]),
               "accuracy": _safe_ratio(
                   sum(sum(row["confusion"][i][i] for i in range(len(row["confusion"])))
                       for row in rows), totals["tiles"])}
    columns = ["slide", "tiles", "TN", "FP", "FN", "TP", "sensitivity", "specificity",
               "accuracy"]
    table = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows] + [overall])
    write_text_atomic(Path(out_dir) / "evaluation.csv", table.to_csv(index=False))
    return write_text_atomic(Path(out_dir) / "evaluation.json", json.dumps(
        plain({"overall": overall, "slides": rows}), indent=2))


def plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN as None (valid JSON)."""
    import math

    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _safe_ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


# -- training ---------------------------------------------------------------------------

def train_task(data: str | Path, out_dir: str | Path, options: dict[str, Any],
               show_progress: bool = True, fold_runner: Any = None):
    """Train from CLI-style options (see :func:`histotile.models.train`)."""
    import dataclasses

    from histotile.models import TrainSettings, train

    # Every training setting is accepted (flags and --config alike).
    names = {f.name for f in dataclasses.fields(TrainSettings)}
    values = {k: v for k, v in options.items() if k in names and v is not None}
    if options.get("patch_size"):
        values["patchify"] = True
    settings = TrainSettings(**values)
    if not show_progress:
        return train(data, out_dir, settings, overwrite=bool(options.get("overwrite")),
                     fold_runner=fold_runner)
    from histotile.workflows.console import training_progress

    with training_progress() as progress:
        return train(data, out_dir, settings, progress=progress,
                     overwrite=bool(options.get("overwrite")), fold_runner=fold_runner)


def training_summary(result) -> Any:
    """A rich table of cross-validation (mean +- std over folds) and test metrics."""
    from rich.table import Table

    table = Table(title=f"cross-validation ({len(result.folds)} folds) and held-out test",
                  title_justify="left")
    table.add_column("metric")
    table.add_column("folds: mean +- std", justify="right")
    table.add_column("test", justify="right")
    for name in ("accuracy", "loss", "sensitivity", "specificity", "precision", "f1",
                 "roc_auc", "tiles_per_second"):
        stats = result.summary.get(name)
        test = (result.test or {}).get(name)
        if not isinstance(test, (int, float)):
            test = None
        if not stats and test is None:
            continue
        mean = "-" if not stats or stats.get("mean") is None else (
            f"{stats['mean']:.3f} +- {stats.get('std') or 0:.3f}")
        table.add_row(name, mean, "-" if test is None else f"{test:.3f}")
    return table
