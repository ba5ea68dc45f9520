"""Training settings: one dataclass, with per-model defaults that follow the two studies
behind this stage (LeNet: lr 0.001, batch 32, with Adam rather than the study's SGD, see
below; torchvision nets fine-tuned on BreakHis: 20 epochs, lr 0.001, early stopping,
4-fold cross-validation)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, get_args

from histotile._settings import refuse_unknown
from histotile.errors import ConfigError
from histotile.models.backends import BACKENDS as BACKEND_MODULES
from histotile.models.backends import BackendName
from histotile.models.specs import SPECS, available_models
from histotile.tiling.stain import METHODS as STAIN_METHODS
from histotile.tiling.stain import StainMethod

# Per-model optimiser defaults, read from each model's spec (the one place they are
# written: histotile.models.specs). Everything here can be overridden in TrainSettings.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {name: dict(spec.defaults)
                                             for name, spec in SPECS.items()}
Optimizer = Literal["sgd", "adam", "adamw"]
Balance = Literal["weights", "sampler", "none"]
Schedule = Literal["onecycle", "cosine", "constant"]
Monitor = Literal["balanced_accuracy", "auc", "loss"]
Final = Literal["ensemble", "retrain"]
OPTIMIZERS: tuple[Optimizer, ...] = get_args(Optimizer)
BALANCES: tuple[Balance, ...] = get_args(Balance)
SCHEDULES: tuple[Schedule, ...] = get_args(Schedule)
MONITORS: tuple[Monitor, ...] = get_args(Monitor)
FINALS: tuple[Final, ...] = get_args(Final)
RECIPE_DEFAULTS: dict[str, dict[str, str]] = {
    "torch": {"balance": "weights", "schedule": "onecycle", "monitor": "balanced_accuracy",
              "final": "ensemble"},
    "mxnet": {"balance": "none", "schedule": "constant", "monitor": "loss",
              "final": "retrain"},
}
"""The training recipe each backend defaults to (``None`` in :class:`TrainSettings`):
the torch recipe measured on real patches of unseen patients
(``benchmarks/bench_validity.py``); the retired MXNet backend keeps the study's plain
loop."""
DEFAULT_AUGMENT = "flip,colour"
"""Flips and 90-degree rotations with HED, HSV and brightness/contrast jitter: stain and
scanner differences between patients are what a tile classifier must not learn."""
BACKENDS: tuple[str, ...] = tuple(BACKEND_MODULES)
DDP_TIMEOUT_S = 600.0
"""Seconds a rank of data-parallel training waits for the others in a collective before
the job fails (:func:`histotile.models.distributed.start`, ``train --ddp-timeout``)."""


@dataclass(frozen=True)
class TrainSettings:
    """Everything that decides a training run. ``None`` means "the model's default"
    (see :data:`MODEL_DEFAULTS`) or "automatic" as documented per field. Frozen; what can
    be checked before those defaults are filled in is checked when it is made, the rest
    by :meth:`resolved` (both raise :class:`ConfigError` naming the setting).

    Attributes:
        model: architecture name (see :func:`histotile.models.available_models`).
        backend: ``"torch"`` or ``"mxnet"`` (MXNet: LeNet only).
        epochs: maximum epochs per fold and for the final model.
        batch_size: tiles per step.
        lr: learning rate.
        momentum: SGD momentum (ignored by Adam).
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        weight_decay: L2 penalty.
        patience: early stopping: epochs without a better validation figure (``monitor``)
            before stopping (0 disables early stopping); with a decaying ``schedule``
            only the last quarter of the epochs is kept or counted (its low-rate tail).
        folds: cross-validation folds (stratified, grouped); 0 skips cross-validation.
        test_fraction: fraction of the groups held out as the test split (0: none).
        group_column: manifest column whose values must never straddle train and
            validation/test (patient or slide).
        label_column: manifest column holding the class name.
        positive_class: the class to detect, recorded in the model card (heatmaps,
            decisions, sensitivity; default: the tiler's, else the last class).
        default_class: the label of unannotated tiles, recorded in the model card for
            evaluation (default: the tiler's, else the first class).
        classes: class order (default: the order the data declares; never sorted).
        seed: seeds the split, the weight initialisation, shuffling and augmentation.
        augment: augmentations of training tiles by name (:mod:`histotile.models.augment`):
            ``"flip"`` (flips and 90-degree rotations, the dihedral group, which keeps
            histology plausible), ``"colour"`` (HED/HSV jitter, brightness/contrast),
            ``"blur"``; default :data:`DEFAULT_AUGMENT`; ``True``: flips only; ``False``
            or ``"none"``: none.
        balance: how the classes are balanced in training: ``"weights"`` (the loss
            weighs each class by the inverse of its share, the default), ``"sampler"``
            (batches drawn with class-balanced probabilities) or ``"none"``.
        schedule: learning-rate schedule over the run: ``"onecycle"`` (linear warm-up
            for ``warmup`` of the steps, then cosine decay to ~0; the default),
            ``"cosine"`` (the same decay after the same warm-up from lr/25) or
            ``"constant"``.
        warmup: share of the steps spent warming up (0-0.5).
        monitor: the validation figure early stopping and the kept epoch follow:
            ``"balanced_accuracy"`` (the default; ties broken by the lower loss),
            ``"auc"`` or ``"loss"``.
        stain: fit a stain normaliser (``"macenko"`` or ``"reinhard"``) for an image
            folder: every training tile, and every tile the model later predicts, is
            normalised to it (a manifest's normaliser is chosen when tiling:
            ``histotile tile --stain-normalise``).
        stain_reference: the normaliser's reference image (default: a mosaic of 64 of
            the folder's images, a seeded sample).
        final: the final model: ``"ensemble"`` (the cross-validation's fold models
            averaged: one file, one predictor; no retraining) or ``"retrain"`` (one
            model trained on all development tiles for the folds' median best epoch).
        workers: DataLoader worker processes reading tiles (None: CPU cores - 1, 1 at
            least; 0 reads in the training process).
        threads: torch intra-op threads of the training process (None: CPU cores).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (None: CUDA when present).
        tile_size: network input side in pixels; tiles of another size are resized
            (None: the manifest's ``size`` / the image size).
        max_tiles: use at most this many tiles (a stratified, seeded sample by group).
        patchify: cut ImageFolder images into ``patch_size`` patches.
        patch_size: patch side in image pixels (None: ``tile_size``); patches are resized
            to ``tile_size`` (None: the patch size) for the network.
        patch_stride: step between patches in pixels (None: the patch size, no overlap;
            225 at 117 gives 3 x 5 = 15 patches of a 700 x 460 image).
        group_by: ``"patient"`` (parsed from file names: BreakHis by default),
            ``"slide"``, ``"region"`` (spatial cells of one slide) or a manifest column;
            None: ``group_column``. See :mod:`histotile.models.groups`.
        group_pattern: regular expression with a named group ``group`` that finds the
            patient in a file name (implies ``group_by="patient"``).
        weights: local file of starting weights (fine-tuning); never downloaded.
        cache_mb: tiles are read once into memory when they fit in this many MiB.
        disk_cache: tiles that do not fit in ``cache_mb`` are read once into an
            unlinked temporary file in ``cache_dir`` (when it has room for them and
            1 GiB more) instead of being streamed from the slides every epoch.
        cache_dir: folder of that file (None: the system's temporary folder).
        final_model: train the final model on all non-test tiles after cross-validation.
        operating_point: how the positive-class threshold is chosen on the pooled
            out-of-fold predictions: ``balanced`` (maximum balanced accuracy), ``youden``
            (maximum TPR - FPR: the same threshold for two classes),
            ``sensitivity=0.9``, ``specificity=0.9`` or a fixed threshold such as
            ``0.5`` (see :mod:`histotile.models.operating_point`).
        calibrate: fit a temperature on the out-of-fold predictions; the card records
            it and the Predictor applies it (:mod:`histotile.models.calibration`).
    """

    model: str = "tilenet"
    backend: BackendName = "torch"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    optimizer: Optimizer | None = None
    weight_decay: float | None = None
    patience: int = 5
    folds: int = 4
    test_fraction: float = 0.2
    group_column: str = "group"
    label_column: str = "label"
    positive_class: str | None = None
    default_class: str | None = None
    classes: list[str] | None = None
    seed: int = 0
    augment: bool | str = DEFAULT_AUGMENT
    balance: Balance | None = None
    schedule: Schedule | None = None
    warmup: float = 0.2
    monitor: Monitor | None = None
    final: Final | None = None
    stain: StainMethod | None = None
    stain_reference: str | None = None
    workers: int | None = None
    threads: int | None = None
    device: str | None = None
    tile_size: int | None = None
    max_tiles: int | None = None
    patchify: bool = False
    patch_size: int | None = None
    patch_stride: int | None = None
    group_by: str | None = None
    group_pattern: str | None = None
    weights: str | None = None
    cache_mb: int = 2048
    disk_cache: bool = True
    cache_dir: str | None = None
    final_model: bool = True
    operating_point: str = "balanced"
    calibrate: bool = False

    def __post_init__(self) -> None:
        self._check_model()
        self._validate()

    def _check_model(self) -> tuple[str, str]:
        """The model and backend names, lower case, checked against the registry."""
        name = str(self.model).lower()
        if name not in MODEL_DEFAULTS:
            raise ConfigError(f"model={self.model!r}: unknown model (choose one of "
                              f"{', '.join(available_models())})")
        backend = str(self.backend).lower()
        if backend not in BACKENDS:
            raise ConfigError(f"backend={self.backend!r}: unknown backend (choose one of "
                              f"{', '.join(BACKENDS)})")
        if backend not in SPECS[name].backends:
            offered = ", ".join(f"model={model!r}" for model in available_models(backend))
            raise ConfigError(f"backend={backend!r} offers only {offered}, not {name!r} "
                              "(use backend='torch' for the torchvision networks)")
        return name, backend

    def resolved(self) -> TrainSettings:
        """A copy with every ``None`` default filled in from the model's defaults and the
        machine, validated. Raises :class:`ConfigError` naming the bad setting."""
        name, backend = self._check_model()
        values = dataclasses.asdict(self)
        values["model"], values["backend"] = name, backend
        for key, default in (*MODEL_DEFAULTS[name].items(), *RECIPE_DEFAULTS[backend].items()):
            if values[key] is None:
                values[key] = default
        from histotile._threads import thread_budget

        cores = thread_budget()  # a Dask worker's share, else every core
        if values["workers"] is None:
            values["workers"] = max(1, min(4, cores - 1))
        if values["threads"] is None:
            values["threads"] = cores
        values["optimizer"] = str(values["optimizer"]).lower()
        if values["group_by"] not in (None, "patient", "slide", "region"):
            values["group_column"] = values["group_by"]  # a manifest column
        out = TrainSettings(**values)
        out._validate(resolved=True)
        return out

    def _validate(self, resolved: bool = False) -> None:
        """Every setting given; with ``resolved``, also those that must be known by now
        (the model's defaults: epochs, batch size, learning rate, momentum, optimizer)."""
        def bad(setting: str, problem: str) -> ConfigError:
            return ConfigError(f"{setting}={getattr(self, setting)!r}: {problem}")

        def given(setting: str) -> bool:
            return resolved or getattr(self, setting) is not None

        optimizer = None if self.optimizer is None else str(self.optimizer).lower()
        if given("optimizer") and optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"unknown optimizer (choose one of {', '.join(OPTIMIZERS)})")
        if str(self.backend).lower() == "mxnet" and optimizer == "adamw":
            raise bad("optimizer", "the MXNet backend offers 'sgd' and 'adam'")
        if given("epochs") and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise bad("epochs", "must be an integer >= 1")
        if given("batch_size") and (not isinstance(self.batch_size, int)
                                    or self.batch_size < 1):
            raise bad("batch_size", "must be an integer >= 1")
        if given("lr") and (not self.lr or self.lr <= 0):
            raise bad("lr", "the learning rate must be > 0")
        if given("momentum") and (self.momentum is None or not 0 <= self.momentum < 1):
            raise bad("momentum", "must be in [0, 1)")
        self._validate_recipe(bad, given)
        self._validate_data(bad)

    def _validate_recipe(self, bad, given) -> None:
        if self.patience < 0:
            raise bad("patience", "must be >= 0 (0 disables early stopping)")
        if self.folds == 1 or self.folds < 0:
            raise bad("folds", "use 0 (no cross-validation) or 2 and more folds")
        if not 0 <= self.test_fraction < 1:
            raise bad("test_fraction", "must be in [0, 1), e.g. 0.2 for a 20 % test split")
        for setting, choices in (("balance", BALANCES), ("schedule", SCHEDULES),
                                 ("monitor", MONITORS), ("final", FINALS)):
            if given(setting) and getattr(self, setting) not in choices:
                raise bad(setting, f"choose one of {', '.join(choices)}")
        if self.stain is not None and self.stain not in STAIN_METHODS:
            raise bad("stain", f"choose {' or '.join(STAIN_METHODS)} (or leave it unset)")
        if self.stain_reference is not None and self.stain is None:
            raise bad("stain_reference", "a reference needs a method: set stain too")
        if not 0 <= self.warmup <= 0.5:
            raise bad("warmup", "must be a share of the steps in [0, 0.5]")
        if str(self.backend).lower() == "mxnet":
            for setting, value in RECIPE_DEFAULTS["mxnet"].items():
                if given(setting) and getattr(self, setting) != value:
                    raise bad(setting, f"the MXNet backend trains with {setting}="
                              f"{value!r} only (use backend='torch' for the full recipe)")

    def _validate_data(self, bad) -> None:
        if self.workers is not None and self.workers < 0:
            raise bad("workers", "must be >= 0")
        minimum = SPECS[str(self.model).lower()].min_tile_size
        if self.tile_size is not None and self.tile_size < minimum:
            raise bad("tile_size", f"the networks need tiles of {minimum} px or more")
        if self.patch_stride is not None and self.patch_stride < 1:
            raise bad("patch_stride", "must be a positive number of pixels")
        if self.group_pattern is not None:
            from histotile.models.groups import compile_pattern

            compile_pattern(self.group_pattern)
        if self.max_tiles is not None and self.max_tiles < 2:
            raise bad("max_tiles", "must be at least 2")
        if self.patchify and self.tile_size is None and self.patch_size is None:
            raise bad("patchify", "patchify=True needs tile_size or patch_size (the patch "
                      "side in pixels)")
        from histotile.models.augment import augmentation_names

        augmentation_names(self.augment)  # unknown names fail before training
        from histotile.models.operating_point import OperatingRule

        OperatingRule.parse(self.operating_point)  # operating-point rule
        if self.folds == 0 and not self.final_model:
            raise bad("final_model", "with folds=0 the final model is the only model to "
                      "train; set final_model=True or folds>=2")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        """Build from a dict (e.g. a model card or YAML config); unknown keys are an error
        naming them."""
        refuse_unknown(cls, values, "training")
        return cls(**values)
