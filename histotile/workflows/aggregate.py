"""Combining the per-slide results of a batch: the tiled slides' manifests into one
training manifest, the slides' evaluations into one table with totals."""

from __future__ import annotations

from pathlib import Path

from histotile.workflows.jsonable import plain
from histotile.workflows.options import parse_ratios


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
