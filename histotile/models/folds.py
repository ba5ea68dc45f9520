"""One cross-validation fold (or the final model) as a unit of work: a :class:`FoldJob`
in, a :class:`FoldResult` out.

:func:`histotile.models.train` plans the jobs and hands them to a fold runner. The
default, :data:`IN_PROCESS`, trains them one after another in this process;
:mod:`histotile.workflows.training.cluster` runs them as tasks on a Dask cluster and
:mod:`histotile.models.distributed` trains each one data-parallel across
``torch.distributed`` ranks. A job holds only row indices and numbers and a result only
plain values and the weights file's bytes, so both travel between processes; a fold
trained anywhere from the same job gives the same result.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from histotile._settings import required
from histotile.models.backends import Backend, load_backend
from histotile.models.data import TileTable, load_tiles
from histotile.models.epochs import FitResult, Progress
from histotile.models.metrics import classification_metrics
from histotile.models.registry import create, get_spec
from histotile.models.settings import TrainSettings
from histotile.models.tile_source import TileSource

log = logging.getLogger("histotile.models")
FINAL = "final"


@dataclass(frozen=True)
class FoldJob:
    """One model to train.

    Attributes:
        tag: ``fold1``, ``fold2``... or ``final``.
        fold: 1-based fold number; 0 for the final model.
        folds: number of cross-validation folds of the run (for progress).
        seed: seeds the weight initialisation, shuffling and augmentation.
        epochs: maximum epochs.
        train_rows: tile-table rows to train on.
        val_rows: validation rows of a fold (early stopping, fold metrics); None for the
            final model.
        test_rows: the held-out test rows the final model is evaluated on (None or empty:
            no test metrics); for a fold whose model joins the final ensemble, the rows
            it predicts for the ensemble's test figures.
        keep_weights: return the fold model's weights (a member of the final ensemble).
    """

    tag: str
    fold: int
    folds: int
    seed: int
    epochs: int
    train_rows: np.ndarray
    val_rows: np.ndarray | None = None
    test_rows: np.ndarray | None = None
    keep_weights: bool = False

    def rows(self) -> np.ndarray:
        """Every row this job reads (for a tile cache of only these)."""
        parts = [p for p in (self.train_rows, self.val_rows, self.test_rows) if p is not None]
        return np.unique(np.concatenate(parts))


@dataclass
class FoldResult:
    """What training one :class:`FoldJob` gave.

    Attributes:
        tag, fold: as in the job.
        fitted: the backend's ``fit`` result (:class:`~histotile.models.epochs.FitResult`).
        metrics: a fold's validation metrics, or the final model's test metrics (None
            without a test split).
        weights: the final model's weights file as ``(file name, bytes)``; None for folds.
        proba: class probabilities of the job's validation rows (a fold) or test rows (the
            final model), for the out-of-fold audit trail and the ROC/PR curves; None
            when there are none.
        test_proba: a fold's probabilities of the job's test rows (an ensemble member).
    """

    tag: str
    fold: int
    fitted: FitResult
    metrics: dict[str, Any] | None
    weights: tuple[str, bytes] | None = None
    proba: np.ndarray | None = None
    test_proba: np.ndarray | None = None


@dataclass
class FoldSetup:
    """What every job of a run shares: the data as given to ``train``, the resolved
    settings and the tile table. The tile source (the tile cache) is opened on first use
    by whoever trains in this process, and closed by :meth:`close`."""

    data: str | Path | pd.DataFrame
    settings: TrainSettings
    table: TileTable
    rows: np.ndarray | None = None  # cache only these rows (None: every row)
    _source: TileSource | None = field(default=None, repr=False)

    def tile_source(self) -> TileSource:
        if self._source is None:
            s = self.settings
            self._source = TileSource(self.table.reader(), workers=required(s.workers, "workers"),
                                      cache_mb=s.cache_mb, rows=self.rows,
                                      disk_cache=s.disk_cache, cache_dir=s.cache_dir,
                                      stain=self.table.geometry.get("stain"))
            log.info("tiles %s", {"memory": "cached in memory",
                                  "disk": "cached in a temporary file (over cache_mb)",
                                  "streamed": "streamed from the slides every epoch"}[
                                      self._source.cache_kind])
        return self._source

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


def load_table(data: str | Path | pd.DataFrame, settings: TrainSettings) -> TileTable:
    """The tile table of ``data`` as ``settings`` select it (the same in every process),
    with the stain normaliser ``settings.stain`` asks for an image folder."""
    from histotile.models.stain_fit import fit_table_stain

    table = load_tiles(data, group_column=settings.group_column,
                      label_column=settings.label_column, classes=settings.classes,
                      tile_size=settings.tile_size, patchify=settings.patchify,
                      max_tiles=settings.max_tiles, seed=settings.seed,
                      group_by=settings.group_by, group_pattern=settings.group_pattern,
                      patch_size=settings.patch_size, patch_stride=settings.patch_stride,
                      min_tile_size=get_spec(settings.model, settings.backend).min_tile_size)
    fit_table_stain(table, settings.stain, settings.stain_reference, settings.seed)
    return table


class FoldRunner(Protocol):
    """Trains a list of jobs and returns their results in the order of the jobs."""

    def __call__(self, setup: FoldSetup, jobs: list[FoldJob],
                 progress: Progress) -> list[FoldResult]: ...

    def describe(self) -> dict[str, Any]:
        """How the models were trained, for the model card (``engine``, ``world_size``
        and what else the engine knows)."""
        ...


class InProcess:
    """The default runner: every job in this process, one after another."""

    def __call__(self, setup: FoldSetup, jobs: list[FoldJob],
                 progress: Progress) -> list[FoldResult]:
        return [train_fold(setup, job, progress) for job in jobs]

    def describe(self) -> dict[str, Any]:
        return {"engine": "in-process", "world_size": 1}


IN_PROCESS = InProcess()


def train_fold(setup: FoldSetup, job: FoldJob, progress: Progress, *,
               parallel: Any = None) -> FoldResult:
    """Train and evaluate one job with the tile source of ``setup``.

    ``parallel``: a :class:`histotile.models.distributed.DataParallel` when this process is
    one rank of a data-parallel job (torch only), else None.
    """
    settings, table = setup.settings, setup.table
    backend = load_backend(settings.backend)
    spec = get_spec(settings.model, settings.backend)
    device = backend.resolve_device(settings.device)
    source = setup.tile_source()
    targets, groups = table.targets, table.groups
    train_rows, val_rows = job.train_rows, job.val_rows
    progress("fold_start", tag=job.tag, fold=job.fold, folds=job.folds, epochs=job.epochs,
             n_train=int(train_rows.size), n_val=0 if val_rows is None else int(val_rows.size))
    model, fitted = _fit(backend, spec, source, table, job, settings, device, progress,
                         parallel)
    if val_rows is None:  # the final model
        predict = backend.predict_rows if parallel is None else parallel.predict_rows
        metrics, proba = _test_metrics(predict, model, spec, source, targets, table, job,
                                       fitted, settings, device, progress)
        return FoldResult(job.tag, job.fold, fitted, metrics, _weights(backend, model), proba)
    predict = backend.predict_rows if parallel is None else parallel.predict_rows
    eval_started = time.perf_counter()
    batch_size = required(settings.batch_size, "batch_size")
    proba = predict(model, spec, source, val_rows, batch_size, device)
    eval_seconds = time.perf_counter() - eval_started
    metrics = classification_metrics(targets[val_rows], proba, table.classes,
                                     settings.positive_class)
    test_proba = None
    if job.test_rows is not None and job.test_rows.size:
        test_proba = predict(model, spec, source, job.test_rows, batch_size, device)
    metrics.update(fold=job.fold, n_train=int(train_rows.size), n_val=int(val_rows.size),
                   train_groups=int(np.unique(groups[train_rows]).size),
                   val_groups=int(np.unique(groups[val_rows]).size),
                   best_epoch=fitted.best_epoch, epochs_run=fitted.epochs_run,
                   collapsed=fitted.collapsed, lr=fitted.lr,
                   train_seconds=fitted.train_seconds,
                   train_tiles_per_s=fitted.train_tiles_per_s,
                   inference_tiles_per_s=val_rows.size / eval_seconds if eval_seconds
                   else None)
    about = metrics["positive_class"] or "macro"  # the class the figures are about
    log.info("%s: accuracy %.4f, balanced accuracy %.4f, loss %.4f, sensitivity (%s) %.4f, "
             "specificity (%s) %.4f, F1 (%s) %.4f, AUC %s", job.tag, metrics["accuracy"],
             metrics["balanced_accuracy"], metrics["loss"], about, metrics["sensitivity"],
             about, metrics["specificity"], about, metrics["f1"], metrics["roc_auc"])
    progress("fold_end", tag=job.tag, fold=job.fold, metrics=metrics)
    weights = _weights(backend, model) if job.keep_weights else None
    return FoldResult(job.tag, job.fold, fitted, metrics, weights, proba, test_proba)


def _fit(backend: Backend, spec: Any, source: TileSource, table: TileTable, job: FoldJob,
         settings: TrainSettings, device: Any, progress: Progress,
         parallel: Any) -> tuple[Any, FitResult]:
    """A fresh model trained for ``job``. A fold whose kept weights predict one class
    for every validation tile learned nothing (a learning rate too high for the data
    can do that): it is reported (``collapse`` event, a warning) and trained once more
    from the start at a tenth of the learning rate; :attr:`FitResult.lr` says which rate
    the returned model was trained with."""
    extra = {} if parallel is None else {"parallel": parallel}
    for attempt in range(2):
        backend.seed_everything(job.seed)
        model = create(spec.name, len(table.classes), table.tile_size, settings.backend,
                       settings.weights)
        fitted = backend.fit(model, spec, source, table.targets, job.train_rows,
                             job.val_rows, settings, epochs=job.epochs, seed=job.seed,
                             device=device, progress=progress, tag=job.tag, **extra)
        lr = required(settings.lr, "lr")
        fitted = dataclasses.replace(fitted, lr=lr)
        if not fitted.collapsed or attempt:
            break
        log.warning("%s collapsed: every validation tile predicted as one class at lr %g; "
                    "training it again at lr %g", job.tag, lr, lr / 10)
        progress("collapse", tag=job.tag, lr=lr, retry_lr=lr / 10)
        settings = dataclasses.replace(settings, lr=lr / 10)
    if fitted.collapsed:
        log.warning("%s still predicts one class at lr %g: its figures are those of a "
                    "model that learned nothing (check the labels and the data)", job.tag,
                    settings.lr)
    return model, fitted


def _test_metrics(predict: Callable[..., np.ndarray], model: Any, spec: Any, source: TileSource,
                  targets: np.ndarray, table: TileTable, job: FoldJob, fitted: FitResult,
                  settings: TrainSettings, device: Any,
                  progress: Progress) -> tuple[dict[str, Any] | None, np.ndarray | None]:
    if job.test_rows is None or not job.test_rows.size:
        return None, None
    proba = predict(model, spec, source, job.test_rows, settings.batch_size, device)
    metrics = classification_metrics(targets[job.test_rows], proba, table.classes,
                                     settings.positive_class)
    metrics.update(n_train=int(job.train_rows.size), train_seconds=fitted.train_seconds,
                   train_tiles_per_s=fitted.train_tiles_per_s)
    log.info("test: accuracy %.4f, balanced accuracy %.4f, loss %.4f, F1 (%s) %.4f, AUC %s",
             metrics["accuracy"], metrics["balanced_accuracy"], metrics["loss"],
             metrics["positive_class"] or "macro", metrics["f1"], metrics["roc_auc"])
    progress("test", metrics=metrics)
    return metrics, proba


def _weights(backend: Backend, model: Any) -> tuple[str, bytes]:
    """The backend's weights file, as bytes (it travels back from a worker)."""
    with tempfile.TemporaryDirectory(prefix="histotile-weights-") as folder:
        name = backend.save(model, Path(folder))
        return name, (Path(folder) / name).read_bytes()
