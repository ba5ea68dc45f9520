"""What the pages show about each slide, read from a ``histotile run`` results folder
(``<results>/<slide>/predictions.csv`` + sidecar and the ``.histotile-run.json`` record)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from histotile.errors import HistotileError

_STATE_FILES = (".histotile-run.json", ".histotile-heatmap.json",
                ".histotile-evaluate.json", ".histotile-predict.json")


def default_positive(classes: list[str], card: dict[str, Any] | None) -> str:
    """The class a decision is about: the card's ``positive_class`` (or the one training
    recorded, ``training.positive_class``; a predictions' model reference carries it at
    the top) when it names one of ``classes``, else the last class (the training default
    for two classes)."""
    card = card or {}
    for declared in (card.get("positive_class"),
                     (card.get("training") or {}).get("positive_class")):
        if declared in classes:
            return declared
    return classes[-1]


def predictions_path(results: Path | None, name: str) -> Path | None:
    """``<results>/<name>/predictions.csv`` when it exists (``name`` already checked)."""
    if results is None:
        return None
    path = results / name / "predictions.csv"
    return path if path.is_file() else None


def _records(folder: Path) -> dict[str, Any]:
    """The finished records of the slide's output folder, merged (run first)."""
    merged: dict[str, Any] = {}
    for state_name in reversed(_STATE_FILES):
        try:
            state = json.loads((folder / state_name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if state.get("state") == "done" and isinstance(state.get("record"), dict):
            record = state["record"]
            merged.update({k: v for k, v in record.items() if k != "extra"})
            merged.setdefault("extra", {}).update(record.get("extra") or {})
    return merged


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def slide_summary(results: Path | None, name: str) -> dict[str, Any]:
    """Decision, positive fraction, tiles and evaluation of one slide (None where the
    results folder has nothing)."""
    summary: dict[str, Any] = {"name": name, "has_results": False, "decision": None,
                               "positive": None, "fraction": None, "positive_class": None,
                               "tiles": None, "sensitivity": None, "specificity": None}
    if results is None or predictions_path(results, name) is None:
        return summary
    record = _records(results / name)
    extra = record.get("extra") or {}
    decision = extra.get("decision") or {}
    evaluation = extra.get("evaluation") or {}
    summary.update(has_results=True, decision=record.get("decision"),
                   positive=decision.get("positive"),
                   fraction=_number(decision.get("fraction")),
                   positive_class=extra.get("positive_class") or decision.get("positive_class"),
                   tiles=record.get("tiles"),
                   sensitivity=_number(evaluation.get("sensitivity")),
                   specificity=_number(evaluation.get("specificity")))
    return summary


def result_names(results: Path | None) -> list[str]:
    """Slides with predictions in the results folder."""
    if results is None or not results.is_dir():
        return []
    return sorted(p.name for p in results.iterdir()
                  if p.is_dir() and (p / "predictions.csv").is_file())


def overlay_payload(path: Path) -> dict[str, Any]:
    """The predictions of one slide as the viewer draws them: tile boxes in level-0
    pixels (x, y, extent) and one probability list per class, rounded to 4 digits."""
    from histotile.postprocess import load_predictions

    predictions = load_predictions(path)
    tiles = predictions.tiles
    classes = list(predictions.classes)
    card = predictions.model if isinstance(predictions.model, dict) else {}
    return {
        "slide": predictions.slide_name,
        "dimensions": list(predictions.dimensions),
        "mpp": predictions.mpp,
        "classes": classes,
        "positive_class": default_positive(classes, card),
        "x": tiles["x"].astype(int).tolist(),
        "y": tiles["y"].astype(int).tolist(),
        "extent": tiles["extent"].astype(int).tolist(),
        "probabilities": {c: predictions.probabilities(c).round(4).tolist() for c in classes},
    }


def safe_overlay(path: Path | None) -> dict[str, Any] | None:
    """:func:`overlay_payload`, or None when there are no (readable) predictions."""
    if path is None:
        return None
    try:
        return overlay_payload(path)
    except HistotileError:
        return None
