"""The training epochs both backends share: the loop (:func:`run_epochs`: seeded
shuffles, timing, validation, early stopping, the best weights restored) and its
bookkeeping (:class:`EpochTracker`: the history record, the validation loss and accuracy,
progress events and logging). The backends keep only what differs: one epoch's training
steps, validation predictions, and how they copy and restore weights."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Progress = Callable[..., None]

log = logging.getLogger("histotile.models")

IMPROVED, CONTINUE, STOP = "improved", "continue", "stop"


@dataclass(frozen=True)
class FitResult:
    """What a backend's ``fit`` gives.

    Attributes:
        history: one dict per epoch run (``fold``, ``epoch``, ``train_loss``,
            ``train_accuracy``, ``seconds``, and ``val_loss``/``val_accuracy`` when
            validating).
        best_epoch: 1-based epoch whose weights the model holds (the last one when none
            were restored).
        epochs_run: epochs run (fewer than asked after an early stop).
        train_seconds: seconds of training steps only (no validation).
        train_tiles_per_s: training tiles per second of those steps.
        collapsed: the kept weights predict one class for every validation tile of a
            validation set holding several (the fold learned nothing; see
            :func:`histotile.models.folds.train_fold`, which retries it).
        lr: the learning rate the model was trained with (set by the fold runner).
    """

    history: list[dict[str, Any]]
    best_epoch: int
    epochs_run: int
    train_seconds: float
    train_tiles_per_s: float
    collapsed: bool = False
    lr: float | None = None


def validation_scores(proba: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """An epoch's validation figures: ``val_loss`` (mean cross-entropy),
    ``val_accuracy``, ``val_balanced_accuracy`` (mean recall of the classes present, at
    the most probable class) and ``val_auc`` (of the second class for two classes, the
    mean one-vs-rest AUC otherwise; NaN when undefined)."""
    from histotile.models.metrics import roc_auc

    n = len(targets)
    picked = proba[np.arange(n), targets]
    predicted = proba.argmax(1)
    present = np.unique(targets)
    recalls = [float((predicted[targets == k] == k).mean()) for k in present]
    classes = range(proba.shape[1]) if proba.shape[1] > 2 else [1]
    aucs = [roc_auc(targets == k, proba[:, k]) for k in classes]
    aucs = [a for a in aucs if not np.isnan(a)]
    return {"val_loss": float(-np.log(np.clip(picked, 1e-7, 1.0)).mean()),
            "val_accuracy": float((predicted == targets).mean()),
            "val_balanced_accuracy": float(np.mean(recalls)),
            "val_auc": float(np.mean(aucs)) if aucs else float("nan"),
            "val_one_class": float(present.size > 1 and np.unique(predicted).size == 1)}


def _score(record: dict[str, Any], monitor: str) -> tuple[float, float]:
    """Larger is better: the monitored figure, then the lower loss (ties, NaN AUC)."""
    loss = -record["val_loss"]
    if monitor == "loss":
        return loss, 0.0
    value = record[f"val_{monitor}"]
    return (-1.0 if np.isnan(value) else value), loss


class EpochTracker:
    """Feed it each epoch's totals; it says whether the epoch improved the monitored
    validation figure (keep these weights), or whether patience ran out (stop).

    ``monitor``: ``"balanced_accuracy"``, ``"auc"`` or ``"loss"`` (see
    :class:`histotile.models.settings.TrainSettings`). ``min_epochs``: epochs before
    this one are neither kept nor counted towards patience. A decaying schedule's early,
    high-rate epochs are noisy, and choosing among them by a validation figure picks a
    model of that phase: on real patches of unseen patients a fold stopped at epoch 7 of
    15 on its best epoch 2 (AUC 0.86 where its neighbours reached 0.91-0.94), and with a
    floor at half the epochs folds still stopped at 13-15 of 25 on epochs 6-10."""

    def __init__(self, tag: str, epochs: int, patience: int, progress: Progress,
                 monitor: str = "loss", min_epochs: int = 0) -> None:
        self.tag, self.epochs, self.patience, self.progress = tag, epochs, patience, progress
        self.monitor, self.min_epochs = monitor, min_epochs
        self.history: list[dict[str, Any]] = []
        self.best_score: tuple[float, float] = (-np.inf, -np.inf)
        self.best_epoch, self.since_best, self.best_collapsed = 0, 0, False
        self.train_seconds, self.tiles_seen = 0.0, 0

    def end_epoch(self, epoch: int, *, loss_sum: float, correct: int, seen: int,
                  seconds: float, val_proba: np.ndarray | None = None,
                  val_targets: np.ndarray | None = None) -> str:
        """Record an epoch (``loss_sum`` summed over its ``seen`` training tiles, of which
        ``correct`` were right; validation probabilities and targets when validating)."""
        self.train_seconds += seconds
        self.tiles_seen += seen
        record: dict[str, Any] = {"fold": self.tag, "epoch": epoch,
                                  "train_loss": loss_sum / seen,
                                  "train_accuracy": correct / seen, "seconds": seconds}
        if val_proba is not None and val_targets is not None and len(val_targets):
            record.update(validation_scores(val_proba, val_targets))
        self.history.append(record)
        losses = {"train": record["train_loss"], "val": record.get("val_loss")}
        self.progress("epoch", tag=self.tag, epochs=self.epochs, losses=losses, **record)
        log.info("%s epoch %d/%d: %s", self.tag, epoch, self.epochs,
                 ", ".join(f"{k}={v:.4f}" for k, v in record.items()
                           if isinstance(v, float)))
        if "val_loss" not in record or epoch < self.min_epochs:
            return CONTINUE
        score = _score(record, self.monitor)
        if score > (self.best_score[0], self.best_score[1] + 1e-6):
            self.best_score, self.best_epoch, self.since_best = score, epoch, 0
            self.best_collapsed = bool(record["val_one_class"])
            return IMPROVED
        self.since_best += 1
        if self.patience and self.since_best >= self.patience and epoch >= self.min_epochs:
            log.info("%s: early stop after epoch %d (best epoch %d)", self.tag, epoch,
                     self.best_epoch)
            return STOP
        return CONTINUE

    def result(self, restored: bool) -> FitResult:
        """``fit``'s return value (see :class:`FitResult`)."""
        return FitResult(history=self.history,
                         best_epoch=self.best_epoch if restored else len(self.history),
                         epochs_run=len(self.history), train_seconds=self.train_seconds,
                         train_tiles_per_s=(self.tiles_seen / self.train_seconds
                                            if self.train_seconds else 0.0),
                         collapsed=restored and self.best_collapsed)


EpochSums = tuple[float, int, int]
"""One epoch's training ``(loss summed over tiles, tiles right, tiles seen)``."""


def run_epochs(tracker: EpochTracker, *, epochs: int, seed: int,
               train_epoch: Callable[[int, np.random.Generator], EpochSums],
               validate: Callable[[], np.ndarray | None],
               val_targets: np.ndarray | None,
               snapshot: Callable[[], Any], restore: Callable[[Any], None],
               reduce: Callable[[float, int, int], EpochSums] | None = None,
               agree: Callable[[str], str] | None = None) -> FitResult:
    """The epoch loop of every backend: epoch ``e`` shuffles with
    ``np.random.default_rng([seed, e])``; ``train_epoch(e, rng)`` runs its training steps
    (timed: training steps only, for tiles/s) and returns its sums, which ``reduce``
    totals across data-parallel ranks; ``validate()`` gives validation probabilities
    (None without validation rows); ``agree`` makes every rank take the same decision.
    The weights of the best validation epoch (``snapshot``) are put back (``restore``)
    at the end. Returns :meth:`EpochTracker.result`."""
    best = None
    for epoch in range(1, epochs + 1):
        rng = np.random.default_rng([seed, epoch])
        started = time.perf_counter()
        sums = train_epoch(epoch, rng)
        elapsed = time.perf_counter() - started
        if reduce is not None:
            sums = reduce(*sums)
        proba = validate()
        outcome = tracker.end_epoch(epoch, loss_sum=sums[0], correct=sums[1], seen=sums[2],
                                    seconds=elapsed, val_proba=proba,
                                    val_targets=None if proba is None else val_targets)
        if agree is not None:
            outcome = agree(outcome)
        if outcome == IMPROVED:
            best = snapshot()
        elif outcome == STOP:
            break
    if best is not None:
        restore(best)
    return tracker.result(restored=best is not None)
