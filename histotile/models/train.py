"""Training with grouped, stratified cross-validation and a held-out test split.

:func:`train` reads a tile manifest or an ImageFolder, splits it by group (patient or
slide), trains and evaluates one model per fold, trains the final model on all
non-test tiles (for the median best epoch count of the folds), evaluates it on the test
split and writes the model directory atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histotile._atomic import check_writable
from histotile._files import folder_lock, match_umask, remove_stale_staging
from histotile._settings import required
from histotile.class_roles import require_positive_class, training_roles
from histotile.errors import ModelError
from histotile.models.audit import write_audit
from histotile.models.backends import load_backend
from histotile.models.card import build_card, write_card
from histotile.models.data import TileTable
from histotile.models.ensemble import final_description, fold_ensemble
from histotile.models.folds import FINAL, IN_PROCESS, FoldJob, FoldRunner, FoldSetup, load_table
from histotile.models.metrics import flat_row, summarise
from histotile.models.operating_choice import choose_on_validation
from histotile.models.registry import check_tile_size, get_spec
from histotile.models.settings import TrainSettings
from histotile.models.splits import Splits, check_disjoint, make_splits

log = logging.getLogger("histotile.models")
Progress = Callable[..., None]

METRICS_FILE = "metrics_folds.csv"
HISTORY_FILE = "history.csv"
LOG_FILE = "train.log"
CURVES_FILE = "learning_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
ROC_FILE = "roc_pr_curves.png"


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        model_dir: the written model directory.
        classes: class names in output order.
        folds: validation metrics per fold (see
            :func:`histotile.models.metrics.classification_metrics`, plus timing).
        summary: mean and std over folds per scalar metric.
        test: metrics of the final model on the held-out test split (None without one).
        card: the model card as written.
        seconds: wall time of the whole run.
    """

    model_dir: Path
    classes: list[str]
    folds: list[dict[str, Any]]
    summary: dict[str, dict[str, float | None]]
    test: dict[str, Any] | None
    card: dict[str, Any]
    seconds: float


def _no_progress(event: str, **info: Any) -> None:
    return None


def train(data: str | Path | pd.DataFrame, out_dir: str | Path,
          settings: TrainSettings | None = None, *, progress: Progress | None = None,
          overwrite: bool = False, fold_runner: FoldRunner | None = None) -> TrainResult:
    """Cross-validate, train and save a tile classifier.

    Args:
        data: a tile manifest (CSV path or DataFrame; tiles are read from the slides on
            the fly) or an ImageFolder directory (``<dir>/<class>/<image>``).
        out_dir: the model directory to write (``model.pt``/``model.params``,
            ``model_card.json``, ``metrics_folds.csv``, ``history.csv``, ``splits.csv``
            (every tile's part and fold), ``predictions_oof.csv`` (out-of-fold and test
            predictions), ``image_level.csv`` (patch majority per image and group),
            ``learning_curves.png``, ``confusion_matrix.png``, ``train.log``).
        settings: :class:`TrainSettings` (defaults: LeNet, Adam at lr 1e-3).
        progress: optional ``callable(event, **info)``; events ``start`` (tiles, folds,
            classes), ``fold_start`` (tag, fold, epochs, n_train, n_val), ``batch`` (tag,
            epoch, step, steps), ``epoch`` (tag, epoch, epochs, train_loss, val_loss,
            train_accuracy, val_accuracy, losses={"train": ..., "val": ...}),
            ``fold_end`` (tag, metrics), ``test`` (metrics), ``done`` (model_dir).
        overwrite: replace an existing ``out_dir`` (only once the new one is complete).
        fold_runner: trains the folds and the final model (default: one after another in
            this process; see :mod:`histotile.models.folds`).

    Raises:
        OutputExistsError: ``out_dir`` exists and ``overwrite`` is False (checked first).
        DatasetError, ConfigError, ModelError: unusable data, settings or weights.
    """
    started = time.perf_counter()
    settings = (settings or TrainSettings()).resolved()
    out_dir = check_writable(out_dir, overwrite)
    progress = progress or _no_progress
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # One train per output at a time; then a killed earlier one's staging can go.
    lock = folder_lock(out_dir.parent, name=f".{out_dir.name}.lock")
    lock.__enter__()
    remove_stale_staging(out_dir.parent, out_dir.name)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial",
                                    dir=out_dir.parent))
    match_umask(staging, directory=True)  # mkdtemp makes 0700; the model is to be shared
    handler = logging.FileHandler(staging / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    previous_level = log.level
    log.addHandler(handler)
    if log.getEffectiveLevel() > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        with _torch_threads(required(settings.threads, "threads")):
            result = _run(data, staging, settings, progress, fold_runner)
        handler.close()
        log.removeHandler(handler)
        _publish(staging, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        handler.close()
        log.removeHandler(handler)
        log.setLevel(previous_level)
        lock.__exit__(None, None, None)
    result.model_dir = out_dir
    result.seconds = time.perf_counter() - started
    progress("done", model_dir=str(out_dir), seconds=result.seconds)
    return result


def _run(data: str | Path | pd.DataFrame, staging: Path, settings: TrainSettings,
         progress: Progress, fold_runner: FoldRunner | None = None) -> TrainResult:
    backend = load_backend(settings.backend)
    spec = get_spec(settings.model, settings.backend)
    if settings.weights is not None and not Path(settings.weights).is_file():
        raise ModelError(f"weights={settings.weights!r}: no such file (name a local weights "
                         "file; histotile never downloads weights)")
    log.info("training %s (%s backend), settings: %s", spec.name, settings.backend,
             settings.to_dict())
    table = load_table(data, settings)
    check_tile_size(table.tile_size, spec.min_tile_size)  # before any tile is read
    for note in table.notes:
        log.info("%s: %s", table.source, note)
    settings = _with_roles(table, settings)
    targets = table.targets
    splits = _split(table, settings)
    device = backend.resolve_device(settings.device)
    progress("start", tiles=int(len(targets)), folds=len(splits.folds),
             classes=table.classes, epochs=settings.epochs, device=str(device))

    setup = FoldSetup(data, settings, table)
    runner = fold_runner or IN_PROCESS
    ensemble = settings.final_model and settings.final == "ensemble" and bool(splits.folds)
    epochs = required(settings.epochs, "epochs")
    jobs = [FoldJob(f"fold{k}", k, len(splits.folds), settings.seed * 1000 + k,
                    epochs, train_rows, val_rows,
                    test_rows=splits.test if ensemble else None, keep_weights=ensemble)
            for k, (train_rows, val_rows) in enumerate(splits.folds, start=1)]
    final = None
    try:
        results = runner(setup, jobs, progress) if jobs else []
        fold_metrics = [required(r.metrics, f"{r.tag}'s metrics") for r in results]
        histories = [h for r in results for h in r.fitted.history]
        summary = summarise(fold_metrics) if fold_metrics else {}
        final_epochs = (max(1, int(round(float(np.median([m["best_epoch"]
                                                          for m in fold_metrics])))))
                        if fold_metrics else epochs)
        if ensemble:
            log.info("final model: the ensemble of the %d fold models", len(results))
            final = fold_ensemble(backend, results, targets[splits.test], table,
                                  settings, int(splits.development.size), progress)
        elif settings.final_model:
            log.info("final model: %d epochs on %d development tiles", final_epochs,
                     splits.development.size)
            final = runner(setup, [FoldJob(FINAL, 0, len(splits.folds), settings.seed * 1000,
                                           final_epochs, splits.development,
                                           test_rows=splits.test)], progress)[0]
            histories.extend(final.fitted.history)
    finally:
        setup.close()

    weights_file = None
    if final is not None and final.weights is not None:
        weights_file, weights = final.weights
        (staging / weights_file).write_bytes(weights)
    test_metrics = final.metrics if final is not None else None
    execution = {**runner.describe(), "device": str(device), "seed": settings.seed}
    # Each fold's validation rows and its probabilities of them (out-of-fold).
    validation = [(required(job.val_rows, f"{job.tag}'s validation rows"),
                   required(r.proba, f"{r.tag}'s probabilities")) for r, job in zip(results, jobs)]
    chosen = choose_on_validation(  # threshold (and temperature) on out-of-fold only
        settings.operating_point, settings.calibrate, table.classes, settings.positive_class,
        [(targets[rows], proba) for rows, proba in validation],
        None if final is None or final.proba is None else (targets[splits.test], final.proba))
    card = _write_outputs(staging, table, splits, settings, spec, fold_metrics, summary,
                          test_metrics, histories, final_epochs, weights_file, execution,
                          chosen)
    audit_parts = [(r.tag, rows, proba) for r, (rows, proba) in zip(results, validation)]
    scores = {"cross-validation (all folds)": [(targets[rows], proba)
                                               for rows, proba in validation]}
    scores = {title: parts for title, parts in scores.items() if parts}  # folds=0: none
    if final is not None and final.proba is not None:
        audit_parts.append(("test", splits.test, final.proba))
        scores["test (final model)"] = [(targets[splits.test], final.proba)]
    for name, value in write_audit(staging, table, splits, audit_parts,
                                         settings.positive_class).items():
        log.info("%s accuracy (patch majority): %.4f", name.replace("_", " "), value)
    _roc_pr_plot(scores, table.classes, settings.positive_class, staging / ROC_FILE)
    return TrainResult(staging, table.classes, fold_metrics, summary, test_metrics, card, 0.0)


def _with_roles(table: TileTable, settings: TrainSettings) -> TrainSettings:
    """The settings with the class roles filled in (:mod:`histotile.class_roles`); a
    binary task whose class order nobody declared must name its positive class."""
    tiler = table.geometry.get("tiling") or {}
    # Sorted folder names, or a manifest declaring no order: nobody chose the last class.
    guessed = table.kind == "imagefolder" or not table.declared_classes
    require_positive_class(table.classes, positive_class=settings.positive_class,
                           guessed_order=guessed and not (settings.classes
                                                          or tiler.get("positive_class")),
                           where=table.source)
    roles = training_roles(table.classes, tiler, default_class=settings.default_class,
                           positive_class=settings.positive_class, where=table.source)
    log.info("classes %s; default class %r, positive class %r", table.classes,
             roles.default_class, roles.positive_class)
    return dataclasses.replace(settings, default_class=roles.default_class,
                               positive_class=roles.positive_class)


def _split(table: TileTable, settings: TrainSettings) -> Splits:
    """The test split and folds of ``table``, grouped and checked disjoint."""
    targets, groups = table.targets, table.groups
    splits = make_splits(targets, groups, table.classes, folds=settings.folds,
                         test_fraction=settings.test_fraction, seed=settings.seed,
                         source=table.source, group_column=settings.group_column)
    check_disjoint(splits, groups)
    log.info("%d tiles, %d groups, classes %s; test %d tiles, development %d tiles, %d folds",
             len(targets), len(set(groups)), table.classes, splits.test.size,
             splits.development.size, len(splits.folds))
    return splits


def _write_outputs(staging: Path, table: TileTable, splits: Splits, settings: TrainSettings,
                   spec, fold_metrics: list[dict[str, Any]], summary: dict[str, Any],
                   test_metrics: dict[str, Any] | None, histories: list[dict[str, Any]],
                   final_epochs: int, weights_file: str | None,
                   execution: dict[str, Any] | None = None,
                   chosen: dict[str, Any] | None = None) -> dict[str, Any]:
    from histotile.models.plots import confusion_matrices, learning_curves

    classes = table.classes
    rows = [{"part": f"fold{m['fold']}", **flat_row(m, classes),
             **{k: m[k] for k in ("n_train", "best_epoch", "epochs_run", "train_seconds",
                                  "train_tiles_per_s", "inference_tiles_per_s")}}
            for m in fold_metrics]
    if summary:
        rows.append({"part": "mean", **{k: v["mean"] for k, v in summary.items()}})
        rows.append({"part": "std", **{k: v["std"] for k, v in summary.items()}})
    if test_metrics is not None:
        rows.append({"part": "test", **flat_row(test_metrics, classes),
                     "n_train": test_metrics["n_train"],
                     "train_seconds": test_metrics["train_seconds"],
                     "train_tiles_per_s": test_metrics["train_tiles_per_s"]})
    chosen = chosen or {}
    at_point = chosen.get("test_at_operating_point")
    if at_point is not None:  # the test split again, at the card's threshold
        rows.append({"part": f"test at threshold {at_point['threshold']:.4f}",
                     **flat_row(at_point, classes)})
    pd.DataFrame(rows).to_csv(staging / METRICS_FILE, index=False)
    history = pd.DataFrame(histories)
    history.to_csv(staging / HISTORY_FILE, index=False)
    if not history.empty:
        learning_curves(history, staging / CURVES_FILE)
    matrices: dict[str, Any] = {}
    if fold_metrics:
        matrices["cross-validation (all folds)"] = np.sum(
            [np.asarray(m["confusion"]) for m in fold_metrics], axis=0)
    if test_metrics is not None:
        matrices["test (final model)"] = test_metrics["confusion"]
    if at_point is not None:
        matrices[f"test, {at_point['positive_class']} if p >= {at_point['threshold']:.2f}"
                 ] = at_point["confusion"]
    if matrices:
        confusion_matrices(matrices, classes, staging / CONFUSION_FILE)
    final = final_description(settings, len(fold_metrics), final_epochs)
    card = build_card(
        architecture=spec.name, backend=settings.backend, description=spec.description,
        classes=classes, roles={"default_class": settings.default_class,
                                "positive_class": settings.positive_class},
        tile_size=table.tile_size, weights_file=weights_file or "",
        normalisation=spec.normalisation(), geometry=table.geometry,
        settings=settings.to_dict(),
        data={**table.summary(),
              "split": {"test_tiles": int(splits.test.size),
                        "development_tiles": int(splits.development.size),
                        "folds": len(splits.folds), "group_column": settings.group_column}},
        metrics={"folds": fold_metrics, "cross_validation": summary, "test": test_metrics},
        # The epochs of a retrained final model; an ensemble's members ran their own.
        final_epochs=final_epochs if (final or {}).get("kind") == "retrain" else None)
    card["final_model"] = final
    card["execution"] = execution  # engine, world size, device, seed (see models.folds)
    card["operating_point"] = chosen.get("operating_point")  # models.operating_point
    card["calibration"] = chosen.get("calibration")
    card["metrics"]["test_at_operating_point"] = chosen.get("test_at_operating_point")
    write_card(card, staging)
    return card


def _roc_pr_plot(scores: dict[str, list[tuple[np.ndarray, np.ndarray]]],
                 classes: list[str], positive_class: str | None, path: Path) -> None:
    """ROC and precision-recall curves of the positive class (for two classes, the second
    by default, as the metrics), cross-validation folds pooled, and test."""
    from histotile.models.plots import roc_pr_curves

    positive = positive_class or (classes[1] if len(classes) == 2 else None)
    if not scores or positive is None:
        return  # several classes and no positive one: the per-class AUCs are in the metrics
    index = list(classes).index(positive)
    curves = {title: (np.concatenate([t for t, _ in parts]) == index,
                      np.concatenate([p[:, index] for _, p in parts]))
              for title, parts in scores.items()}
    roc_pr_curves(curves, positive, path)


def _publish(staging: Path, out_dir: Path, overwrite: bool) -> None:
    """Move the complete staging directory onto ``out_dir``; an existing one is replaced
    only now, so a failed run never damages it."""
    check_writable(out_dir, overwrite)
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
        os.replace(staging, out_dir)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(staging, out_dir)


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
