"""The final model as the ensemble of the cross-validation's fold models
(``TrainSettings.final="ensemble"``, the default): their weights in one file, their test
figures from their averaged probabilities, and the card's description of it.

Averaging the fold models is both cheaper than retraining on all development tiles (no
further training) and steadier on new patients: each member saw a different 3/4 of the
patients, and their errors partly cancel. The one-module form that predicts with it is
:class:`histotile.models.torch_nets.Ensemble`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from histotile.errors import ModelError
from histotile.models.backends import Backend
from histotile.models.data import TileTable
from histotile.models.epochs import FitResult, Progress
from histotile.models.folds import FINAL, FoldResult
from histotile.models.metrics import classification_metrics
from histotile.models.settings import TrainSettings

log = logging.getLogger("histotile.models")


def fold_ensemble(backend: Backend, results: list[FoldResult], test_targets: np.ndarray,
                  table: TileTable, settings: TrainSettings, development_tiles: int,
                  progress: Progress) -> FoldResult:
    """The final model's :class:`FoldResult` from the fold results (each holding its
    weights and its probabilities of the test rows): one weights file of every member,
    and test metrics of the members' averaged probabilities (None without a test
    split)."""
    members = [r.weights for r in results]
    if any(m is None for m in members):
        raise ModelError("the fold models' weights did not come back from the fold runner; "
                         "train again (or use final='retrain')")
    combine = getattr(backend, "ensemble_weights", None)
    if combine is None:
        raise ModelError(f"backend {settings.backend!r} cannot average fold models; use "
                         "final='retrain'")
    weights = combine(members)
    seconds = float(sum(r.fitted.train_seconds for r in results))
    rates = [r.fitted.train_tiles_per_s for r in results if r.fitted.train_tiles_per_s]
    fitted = FitResult(history=[], best_epoch=0, epochs_run=0, train_seconds=seconds,
                       train_tiles_per_s=float(np.mean(rates)) if rates else 0.0)
    metrics, proba = None, None
    if test_targets.size:
        probas = [r.test_proba for r in results if r.test_proba is not None]
        if len(probas) != len(results):
            raise ModelError("the fold models' test probabilities did not come back from the "
                             "fold runner; train again (or use final='retrain')")
        proba = np.mean(probas, axis=0).astype(np.float32)
        metrics = classification_metrics(test_targets, proba, table.classes,
                                         settings.positive_class)
        metrics.update(n_train=development_tiles, train_seconds=seconds,
                       train_tiles_per_s=fitted.train_tiles_per_s)
        log.info("test: accuracy %.4f, balanced accuracy %.4f, AUC %s (the ensemble of the "
                 "%d fold models)", metrics["accuracy"], metrics["balanced_accuracy"],
                 metrics["roc_auc"], len(results))
        progress("test", metrics=metrics)
    return FoldResult(FINAL, 0, fitted, metrics, weights, proba)


def final_description(settings: TrainSettings, folds: int,
                      final_epochs: int) -> dict[str, Any] | None:
    """The model card's ``final_model``: how the final model was made (None without
    one). ``members`` is what a predictor needs to rebuild an ensemble."""
    if not settings.final_model:
        return None
    if settings.final == "ensemble" and folds:
        return {"kind": "ensemble", "members": folds,
                "combination": "mean of the members' class probabilities"}
    return {"kind": "retrain", "epochs": final_epochs}
