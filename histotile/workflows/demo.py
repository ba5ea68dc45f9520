"""The demo: the whole pipeline on the bundled real H&E slide (CC0) and the painted
annotation overlay shipped for it. ``histotile demo`` / ``make demo``.

Besides its pictures and tables it writes ``summary.json``: the figures it measured (tile
counts, cross-validation and test metrics, the evaluation against the annotation, the
slide decision, its time) with when and where it ran. ``make docs-images`` keeps a copy
in ``docs/generated/demo-summary.json`` for the documentation, which types none of them."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import histotile
from histotile._atomic import write_text_atomic
from histotile._settings import refuse_unknown
from histotile.errors import ConfigError, OutputExistsError
from histotile.workflows.jsonable import plain

DATA = Path(histotile.__file__).parent / "data"
SLIDE = DATA / "CMU-1-Small-Region.svs"
OVERLAY = DATA / "CMU-1-Small-Region.overlay.png"
CLASSES = ("other", "epithelium")
POSITIVE = "epithelium"
DEMO_OUTPUTS = ("tiles", "model", "predictions.csv", "predictions.json", "heatmap.tif",
                "heatmap_preview.png", "heatmap_probability.tif",
                "heatmap_probability_preview.png", "side_by_side.png", "evaluation.json",
                "summary.json")
# The metrics the summary keeps of cross-validation and of the held-out test split.
SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "sensitivity", "specificity")


DEMO_OUT = "histotile-demo"
"""The demo's output folder unless told otherwise (``histotile demo --out``)."""
SCREENING_FRACTION = 0.1
"""The demo's slide decision: positive when at least this share of its tiles is (a
screening-style patch-majority rule)."""


@dataclass(frozen=True)
class DemoSettings:
    """What ``histotile demo`` runs (built by the CLI or the API).

    Attributes:
        epochs: training epochs per fold (a short run: the demo takes minutes).
    """

    epochs: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs!r}: must be an integer >= 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DemoSettings:
        """From option names and values; unknown names are a :class:`ConfigError`."""
        refuse_unknown(cls, values, "demo")
        return cls(**values)


def run_demo(out_dir: str | Path = DEMO_OUT, settings: DemoSettings | None = None, *,
             overwrite: bool = False, quiet: bool = False) -> dict[str, str]:
    """Tile, train (grouped cross-validation), predict, write heatmaps and evaluate on the
    bundled slide. Returns the outputs by name; prints where they are."""
    from histotile.workflows.cli.console import out

    out_dir = _claim(Path(out_dir), overwrite)
    say = (lambda *_: None) if quiet else out.print
    started, load_before = time.perf_counter(), _load()
    outputs: dict[str, str] = {}
    figures: dict[str, Any] = {}
    demo = settings or DemoSettings()
    tiling, balanced = _tile(out_dir, say, outputs, figures)
    model_dir = _train(out_dir, balanced, demo, say, quiet, outputs, figures)
    predictions = _predict(out_dir, model_dir, tiling, say, outputs, figures)
    _heatmaps(out_dir, predictions, say, outputs)
    _evaluate(out_dir, predictions, say, outputs, figures)
    seconds = time.perf_counter() - started
    outputs["summary"] = str(_write_summary(out_dir, figures, seconds, load_before))
    if not quiet:
        _show(outputs, seconds)
    return outputs


def _claim(out_dir: Path, overwrite: bool) -> Path:
    """The output folder, emptied of an earlier demo's outputs (only those) on request."""
    existing = [out_dir / name for name in DEMO_OUTPUTS if (out_dir / name).exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{out_dir}: holds outputs of an earlier demo (pass "
                                "--overwrite to replace them, or --out another folder)")
    for path in existing:  # only the demo's own outputs, never anything else there
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _tile(out_dir: Path, say, outputs: dict[str, str], figures: dict[str, Any]):
    """Step 1: tiles labelled from the painted overlay, balanced 1:1, grouped by region."""
    from histotile.models.groups import spatial_groups
    from histotile.tiling import (
        TilingSettings,
        balance,
        extract_tiles,
        load_annotation,
        write_manifest,
    )
    from histotile.workflows.cli.console import progress_bar

    say(f"[bold]1/5 tiling[/] {SLIDE.name} (real H&E, 20x) with the painted overlay "
        f"{OVERLAY.name} (green = {POSITIVE})")
    settings = TilingSettings(tile_size=128, stride=64, mpp=0.5, classes=CLASSES,
                              positive_class=POSITIVE, palette={POSITIVE: (0, 255, 0)},
                              seed=0)
    annotation = load_annotation(OVERLAY, palette=settings.palette, classes=settings.classes)
    with progress_bar("tiling", None, "tiles") as advance:
        manifest = extract_tiles(SLIDE, settings, annotation=annotation, workers=2,
                                 progress=advance)
    manifest["group"] = spatial_groups(manifest)
    balanced = balance(manifest, {c: 1.0 for c in CLASSES}, seed=0)
    balanced.attrs["tiling"] = settings.to_dict()  # class order and roles for the card
    outputs["manifest"] = str(write_manifest(balanced, out_dir / "tiles" / "manifest.csv"))
    write_text_atomic(out_dir / "tiles" / "manifest.json",
                      json.dumps({"tiling": settings.to_dict()}, indent=2))
    counts = manifest["label"].value_counts().to_dict()
    figures["tiles"] = {"tiled": len(manifest), "trained": len(balanced),
                        "region_groups": int(balanced["group"].nunique())}
    say(f"   {len(manifest)} tiles ({counts}); balanced 1:1 to {len(balanced)}, "
        f"{balanced['group'].nunique()} region groups")
    return settings, balanced


def _train(out_dir: Path, balanced, demo: DemoSettings, say, quiet: bool,
           outputs: dict[str, str], figures: dict[str, Any]) -> Path:
    """Step 2: the default recipe with grouped cross-validation; returns the model
    folder."""
    from histotile.models import TrainSettings, train
    from histotile.workflows.cli.console import out, training_progress

    train_settings = TrainSettings(epochs=demo.epochs, folds=3, seed=0,
                                   positive_class=POSITIVE)
    say("[bold]2/5 training[/] the default recipe (TileNet, class-weighted, one-cycle "
        f"schedule, colour augmentation), {train_settings.folds}-fold cross-validation "
        f"grouped by region, {train_settings.test_fraction * 100:g} % of regions held out for "
        f"test, up to {demo.epochs} epochs; the final model is the ensemble of the "
        f"{train_settings.folds} fold models")
    with training_progress() as progress:
        result = train(balanced, out_dir / "model", train_settings, progress=progress)
    outputs["model"] = str(result.model_dir)
    figures["cross_validation"] = {"folds": len(result.folds)} | {
        name: result.summary[name] for name in SUMMARY_METRICS if name in result.summary}
    test = result.test or {}
    figures["test"] = {"tiles": test.get("n")} | {
        name: test[name] for name in SUMMARY_METRICS if name in test}
    if not quiet:
        from histotile.workflows.cli.console import training_summary

        out.print(training_summary(result))
    return result.model_dir


def _predict(out_dir: Path, model_dir: Path, settings, say, outputs: dict[str, str],
             figures: dict[str, Any]):
    """Step 3: every tissue tile predicted, the table saved and the slide decided."""
    from histotile.models import Predictor
    from histotile.postprocess import predict_slide, slide_decision
    from histotile.workflows.cli.console import progress_bar

    say(f"[bold]3/5 predicting[/] every tissue tile ({settings.tile_size} px, stride "
        f"{settings.stride}: overlaps averaged)")
    predictor = Predictor(model_dir)
    with progress_bar("predicting", None, "tiles") as advance:
        predictions = predict_slide(SLIDE, predictor, tiling=settings,
                                    progress=lambda done, total: advance(0) or None)
    outputs["predictions"] = str(predictions.save(out_dir / "predictions.csv"))
    threshold = predictor.threshold  # the card's operating point
    decision = slide_decision(predictions, POSITIVE, tile_threshold=threshold.value,
                              fraction_threshold=SCREENING_FRACTION)
    figures["tiles"]["predicted"] = len(predictions)
    figures["slide_decision"] = {"positive": bool(decision.positive),
                                 "fraction_positive": decision.fraction,
                                 "tile_threshold": threshold.value}
    say(f"   {len(predictions)} tiles; slide decision: "
        f"{'positive' if decision.positive else 'negative'} for {POSITIVE} "
        f"({decision.fraction:.1%} of tiles at {POSITIVE} probability >= "
        f"{threshold.value:.3f}, from the {threshold.source}; positive from "
        f"{SCREENING_FRACTION * 100:g} %)")
    return predictions


def _heatmaps(out_dir: Path, predictions, say, outputs: dict[str, str]) -> None:
    """Step 4: the threshold and the continuous heatmap slides with their previews."""
    from histotile.postprocess import write_heatmap
    from histotile.workflows.tasks.roles import used_threshold

    say("[bold]4/5 heatmap slides[/] (pyramidal JPEG TIFF for OpenSlide/QuPath + PNG preview)")
    used = used_threshold(predictions, None, POSITIVE).value  # the card's, as recorded
    threshold = write_heatmap(SLIDE, predictions, out_dir / "heatmap.tif",
                              positive_class=POSITIVE,
                              preview_path=out_dir / "heatmap_preview.png", threshold=used)
    continuous = write_heatmap(SLIDE, predictions, out_dir / "heatmap_probability.tif",
                               positive_class=POSITIVE, mode="continuous",
                               preview_path=out_dir / "heatmap_probability_preview.png")
    outputs.update(heatmap=str(threshold.path), heatmap_preview=str(threshold.preview_path),
                   probability_heatmap=str(continuous.path),
                   probability_preview=str(continuous.preview_path))


def _evaluate(out_dir: Path, predictions, say, outputs: dict[str, str],
              figures: dict[str, Any]) -> None:
    """Step 5: the tiles scored against the painted annotation, and the side-by-side."""
    from histotile.postprocess import evaluate_slide, write_side_by_side
    from histotile.workflows.tasks.roles import used_threshold

    say("[bold]5/5 evaluating[/] tiles against the painted annotation")
    used = used_threshold(predictions, None, POSITIVE).value  # the card's, as recorded
    evaluation = evaluate_slide(SLIDE, predictions, OVERLAY, positive_class=POSITIVE,
                                tile_threshold=used)
    outputs["side_by_side"] = str(write_side_by_side(
        SLIDE, predictions, OVERLAY, out_dir / "side_by_side.png", positive_class=POSITIVE,
        threshold=used, evaluation=evaluation))
    row = evaluation.row()
    write_text_atomic(out_dir / "evaluation.json", json.dumps(plain(
        {**row, "confusion": evaluation.confusion.tolist(),
         "classes": list(evaluation.classes)}), indent=2))
    outputs["evaluation"] = str(out_dir / "evaluation.json")
    figures["against_the_annotation"] = {
        "tiles": row["tiles"], "tile_threshold": used, "sensitivity": row["sensitivity"],
        "specificity": row["specificity"], "accuracy": row["accuracy"]}
    say(f"   tiles {row['tiles']}: TP {row['TP']}, FP {row['FP']}, FN {row['FN']}, "
        f"TN {row['TN']}; sensitivity ({POSITIVE}) {row['sensitivity']:.3f}, "
        f"specificity ({POSITIVE}) {row['specificity']:.3f} at threshold {used:.3f}")


def _load() -> list[float] | None:
    """The load averages (1, 5, 15 min) where the system has them."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _write_summary(out_dir: Path, figures: dict[str, Any], seconds: float,
                   load_before: list[float] | None) -> Path:
    """``summary.json``: the figures this demo measured, when and where (time in s)."""
    summary = {"command": "histotile demo", "histotile": histotile.__version__,
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": {"cores": os.cpu_count(), "platform": platform.platform(),
                           "load_before": load_before, "load_after": _load()},
               "figures": {"seconds": round(seconds, 1), **figures}}
    path = out_dir / "summary.json"
    write_text_atomic(path, json.dumps(plain(summary), indent=2) + "\n")
    return path


def _show(outputs: dict[str, str], seconds: float) -> None:
    """The table of outputs and where to look at them."""
    from rich.markup import escape
    from rich.table import Table

    from histotile.workflows.cli.console import console, out

    table = Table(title=f"demo outputs ({seconds:.0f} s)", title_justify="left")
    table.add_column("output")
    table.add_column("where")
    for name, path in outputs.items():
        table.add_row(name, escape(str(path)))  # the --out folder may hold brackets
    out.print(table)
    console.print("Open heatmap.tif in QuPath or any OpenSlide viewer; "
                  "side_by_side.png shows the annotation next to the prediction.")
