"""Combining the per-slide results of a batch: the tiled slides' manifests into one
training manifest, the slides' evaluations into one table with totals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histotile.errors import ConfigError
from histotile.workflows.jsonable import plain
from histotile.workflows.options import parse_ratios

# Tiling settings that must agree between the slides of one tile folder: its
# manifest.csv is one training set, and manifest.json records one tiling for the card.
SHARED_TILING = ("tile_size", "magnification", "mpp", "level", "classes", "default_class",
                 "positive_class")
# How long a batch waits for another run combining the same folder's manifest (seconds).
COMBINE_WAIT = 120.0


def tiled_slides(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The slides of a tile output folder whose tiling finished (and whose manifest is
    still there): slide folder name -> its stored record, by name."""
    from histotile.workflows.tasks.outputs import SlideOutputs

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return {}
    found = {}
    for folder in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        # The record's output paths are as the batch that wrote them was given --out
        # (relative to its working folder): the manifest is looked for in the folder.
        record = SlideOutputs(out_dir, folder.name, "tile").finished_record(
            check_outputs=False)
        if record is not None and (folder / "manifest.csv").is_file():
            found[folder.name] = record
    return found


def check_tiling_agrees(out_dir: str | Path, tiling: dict[str, Any],
                        redone: set[str]) -> None:
    """Refuse to tile into a folder whose finished slides (other than those in ``redone``,
    about to be tiled again) were tiled with other settings than ``tiling`` (a
    :class:`~histotile.tiling.TilingSettings` dict): ``OUT/manifest.csv`` would mix them."""
    for name, record in tiled_slides(out_dir).items():
        earlier = (record.get("extra") or {}).get("tiling") or {}
        differ = [k for k in SHARED_TILING if k in earlier and k in tiling
                  and _plain(earlier[k]) != _plain(tiling[k])]
        if name not in redone and differ:
            shown = ", ".join(f"{k} {earlier[k]!r} there, {tiling[k]!r} here" for k in differ)
            raise ConfigError(
                f"{out_dir}: slide {name!r} there was tiled with other settings ({shown}) "
                "and OUT/manifest.csv combines every slide of the folder; choose another "
                "--out, or tile with the same settings")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def combine_manifests(records, out_dir: str | Path, balance: str | dict | None = None,
                      seed: int = 0) -> Path | None:
    """``OUT/manifest.csv``: the union of the manifests of every slide tiled into the
    folder (this batch's and earlier ones'), read from the per-slide files under the
    folder's lock, balanced on request, with ``OUT/manifest.json`` recording the tiling
    settings for the model card. ``records``: this batch's, whose tiling settings
    ``manifest.json`` records when one has them."""
    from histotile._files import folder_lock

    with folder_lock(out_dir, wait=COMBINE_WAIT):  # two batches combine one at a time
        return _combine(records, Path(out_dir), balance, seed)


def _combine(records, out_dir: Path, balance: str | dict | None, seed: int) -> Path | None:
    import json

    import pandas as pd

    from histotile._atomic import write_text_atomic
    from histotile.tiling import balance as balance_classes
    from histotile.tiling import read_manifest, write_manifest

    slides = tiled_slides(out_dir)
    if not slides:
        return None
    manifest = pd.concat([read_manifest(out_dir / name / "manifest.csv") for name in slides],
                         ignore_index=True)
    ratios = parse_ratios(balance)
    if ratios:
        manifest = balance_classes(manifest, ratios, seed=seed)
    path = write_manifest(manifest, out_dir / "manifest.csv", overwrite=True)
    stored = [(r.get("extra") or {}).get("tiling") for r in slides.values()]
    tiling = next((r.extra.get("tiling") for r in records if r.extra.get("tiling")),
                  next((t for t in stored if t), None))
    roles = {} if not tiling else {
        "classes": tiling["classes"],
        "default_class": tiling.get("default_class") or tiling["classes"][0],
        "positive_class": tiling.get("positive_class") or tiling["classes"][-1]}
    write_text_atomic(Path(out_dir) / "manifest.json",
                      json.dumps({"tiling": tiling, **roles, "balance": ratios,
                                  "slides": list(slides)},
                                 indent=2))
    return path


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
    about = sorted({str(row.get("positive_class")) for row in rows})
    overall["positive_class"] = about[0] if len(about) == 1 else ", ".join(about)
    columns = ["slide", "positive_class", "tiles", "TN", "FP", "FN", "TP", "sensitivity",
               "specificity", "accuracy", "tile_threshold", "tile_threshold_source"]
    table = pd.DataFrame([{c: row.get(c) for c in columns} for row in rows] + [overall])
    write_text_atomic(Path(out_dir) / "evaluation.csv", table.to_csv(index=False))
    return write_text_atomic(Path(out_dir) / "evaluation.json", json.dumps(
        plain({"overall": overall, "slides": rows}), indent=2))


def _safe_ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None
