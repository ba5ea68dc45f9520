"""PyTorch training and inference: the loops behind :func:`histotile.models.train` and
:class:`histotile.models.Predictor` for torch models."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from histotile._settings import required
from histotile.errors import ModelError
from histotile.models.epochs import (
    EpochSums,
    EpochTracker,
    FitResult,
    Progress,
    run_epochs,
)
from histotile.models.settings import TrainSettings
from histotile.models.specs import ModelSpec, get_spec
from histotile.models.tile_source import TileSource

log = logging.getLogger("histotile.models")
WEIGHTS_FILE = "model.pt"


def resolve_device(device: str | None) -> torch.device:
    """``None``: CUDA when present, else CPU. A named CUDA device that is absent is a
    :class:`ModelError`."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ModelError(f"device={device!r}: not a device name (use 'cpu', 'cuda' or "
                         "'cuda:N')") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device={device!r}: CUDA is not available on this machine; use "
                         "device='cpu' or leave it unset")
    return chosen


class InputTransform:
    """uint8 NHWC tiles -> normalised float NCHW tensor in channels-last memory (the
    permute of a contiguous NHWC tensor is exactly channels-last)."""

    def __init__(self, spec_or_norm: ModelSpec | dict, device: torch.device) -> None:
        norm = (spec_or_norm.normalisation() if isinstance(spec_or_norm, ModelSpec)
                else spec_or_norm)
        mean = torch.tensor(norm["mean"], dtype=torch.float32)
        std = torch.tensor(norm["std"], dtype=torch.float32)
        self.scale = (1.0 / (float(norm["divide_by"]) * std)).to(device)
        self.shift = (-mean / std).to(device)
        self.device = device

    def __call__(self, tiles: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(tiles))
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = torch.addcmul(self.shift, x.float(), self.scale)  # (N, H, W, 3)
        return x.permute(0, 3, 1, 2)


def prepare(model: nn.Module, spec: ModelSpec, device: torch.device) -> nn.Module:
    model = model.to(device)
    if spec.channels_last or device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def autocast(device: torch.device):
    """Mixed precision (fp16) on CUDA, as training and prediction run there; nothing on
    CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    params = model.parameters()
    lr = required(settings.lr, "lr")
    weight_decay = required(settings.weight_decay, "weight_decay")
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=required(settings.momentum, "momentum"),
                               weight_decay=weight_decay)
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def class_weights(targets: np.ndarray, classes: int) -> np.ndarray:
    """Loss weights of the classes: the inverse of each class's share of ``targets``,
    scaled so a balanced set gets 1 each (a class absent from them gets 0)."""
    counts = np.bincount(targets, minlength=classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def balanced_rows(rows: np.ndarray, targets: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """An epoch of ``rows.size`` rows drawn with replacement, each class equally likely
    (``balance="sampler"``), in random order."""
    weights = class_weights(targets[rows], int(targets.max()) + 1)[targets[rows]]
    return rng.choice(rows, size=rows.size, replace=True, p=weights / weights.sum())


def lr_factor(step: int, steps: int, kind: str, warmup: float) -> float:
    """The share of the base learning rate at optimiser step ``step`` (0-based) of
    ``steps``: ``onecycle``, a linear warm-up from 1/25 over ``warmup`` of the steps, then
    a cosine decay to 1e-4 (the one-cycle policy's shape); ``cosine``, a cosine decay
    from 1 to 0 over every step; ``constant``, 1. Written as a formula rather than
    torch's OneCycleLR, which divides by zero on runs of a handful of steps."""
    if kind == "constant" or steps < 2:
        return 1.0
    if kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, steps - 1) / (steps - 1)))
    warm = int(round(warmup * steps))
    if step < warm:
        return 1 / 25 + (1 - 1 / 25) * step / warm
    done = (step - warm) / max(1, steps - 1 - warm)
    return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))


def schedule(optimizer: torch.optim.Optimizer, settings: TrainSettings,
             steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule of ``settings.schedule`` over ``steps`` optimiser steps
    (:func:`lr_factor`), or None for a constant rate."""
    kind = required(settings.schedule, "schedule")
    if kind == "constant":
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps, kind, settings.warmup))


def _training_loss(settings: TrainSettings, targets: np.ndarray, train_rows: np.ndarray,
                   device: torch.device, parallel: Any):
    """``loss(logits, y) -> (loss to back-propagate, summed loss of these tiles)``: the
    cross-entropy, each tile weighed by its class weight with ``balance="weights"``
    (:func:`class_weights`), summed and divided by the tiles of the (global) batch. The
    same sum on every data-parallel rank, so DDP and one process train alike."""
    weight = None
    if settings.balance == "weights":
        weight = torch.tensor(class_weights(targets[train_rows], int(targets.max()) + 1),
                              dtype=torch.float32, device=device)

    def loss(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if parallel is not None:
            return parallel.loss(logits, y, weight)
        summed = nn.functional.cross_entropy(logits, y, weight=weight, reduction="sum")
        return summed / y.numel(), summed.detach()

    return loss


def min_kept_epoch(schedule_kind: str, epochs: int) -> int:
    """The first epoch early stopping may keep or count: the last quarter of a decaying
    schedule (its low-rate tail, where its best models are), any epoch of a constant
    rate."""
    return 0 if schedule_kind == "constant" else max(1, -(-3 * epochs // 4))


def fit(model: nn.Module, spec: ModelSpec, source: TileSource, targets: np.ndarray,
        train_rows: np.ndarray, val_rows: np.ndarray | None, settings: TrainSettings, *,
        epochs: int, seed: int, device: torch.device, progress: Progress,
        tag: str, parallel: Any = None) -> FitResult:
    """Train ``model`` in place with the recipe of ``settings`` (class balance, schedule,
    augmentation); with validation rows, stop early on the monitored validation figure
    (``settings.monitor``, ``settings.patience``) and restore the best epoch's weights.

    ``parallel``: this rank's :class:`histotile.models.distributed.DataParallel` when
    training data-parallel, else None.

    Returns the :class:`~histotile.models.epochs.FitResult` (history, best epoch,
    epochs run, seconds and tiles per second of the training steps).
    """
    model = prepare(model, spec, device)
    net = model if parallel is None else parallel.wrap(model)
    transform = InputTransform(spec, device)
    optimizer = _optimizer(model, settings)
    loss_fn = _training_loss(settings, targets, train_rows, device, parallel)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    labels = torch.from_numpy(targets.astype(np.int64))
    batch_size = required(settings.batch_size, "batch_size")
    steps = -(-train_rows.size // batch_size)
    scheduler = schedule(optimizer, settings, steps * epochs)

    def train_epoch(epoch: int, rng: np.random.Generator) -> EpochSums:
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        epoch_rows = (balanced_rows(train_rows, targets, rng)
                      if settings.balance == "sampler" else train_rows)
        batches = (source.batches(epoch_rows, batch_size, shuffle=True, rng=rng,
                                  augment=settings.augment) if parallel is None else
                   parallel.batches(source, epoch_rows, batch_size, rng=rng,
                                    augment=settings.augment))
        for step, (rows, tiles) in enumerate(batches, start=1):
            x = transform(tiles)
            y = labels[rows].to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device):
                logits = net(x)
                loss, summed = loss_fn(logits.float(), y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += float(summed)
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += rows.size
            progress("batch", tag=tag, epoch=epoch, step=step, steps=steps)
        return loss_sum, correct, seen

    def validate() -> np.ndarray | None:
        if val_rows is None or val_rows.size == 0:
            return None
        predict = predict_rows if parallel is None else parallel.predict_rows
        return predict(model, spec, source, val_rows, batch_size, device,
                       transform=transform)

    result = run_epochs(
        EpochTracker(tag, epochs, settings.patience, progress,
                     required(settings.monitor, "monitor"),
                     min_epochs=min_kept_epoch(required(settings.schedule, "schedule"), epochs)),
        epochs=epochs, seed=seed,
        train_epoch=train_epoch, validate=validate,
        val_targets=None if val_rows is None else targets[val_rows],
        snapshot=lambda: copy.deepcopy(model.state_dict()), restore=model.load_state_dict,
        reduce=None if parallel is None else parallel.reduce,
        agree=None if parallel is None else parallel.agree)
    recalibrate_batchnorm(model, source, train_rows, batch_size, transform)
    return result


def recalibrate_batchnorm(model: nn.Module, source: TileSource, rows: np.ndarray,
                          batch_size: int, transform: InputTransform,
                          max_tiles: int = 4096) -> None:
    """Recompute BatchNorm running statistics for the final weights (a plain average
    over up to ``max_tiles`` training tiles). The running averages kept during training
    lag behind the weights; after short training on small data that lag alone can flip
    predictions in evaluation mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    rows = np.asarray(rows)[:max_tiles]
    with torch.no_grad():
        for _, tiles in source.batches(rows, max(batch_size, 32)):
            if tiles.shape[0] > 1:
                model(transform(tiles))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def _predict_batches(model: nn.Module, transform: InputTransform,
                     batches: Iterable[np.ndarray], device: torch.device) -> Iterator[np.ndarray]:
    model.eval()
    with torch.inference_mode(), autocast(device):
        for tiles in batches:
            logits = model(transform(tiles))
            yield torch.softmax(logits.float(), dim=1).cpu().numpy()


def predict_rows(model: nn.Module, spec: ModelSpec, source: TileSource, rows: np.ndarray,
                 batch_size: int, device: torch.device,
                 transform: InputTransform | None = None) -> np.ndarray:
    """Class probabilities (len(rows), C) float32 of table rows, in the order given."""
    transform = transform or InputTransform(spec, device)
    batches = (tiles for _, tiles in source.batches(rows, max(batch_size, 64)))
    parts = list(_predict_batches(model, transform, batches, device))
    return np.concatenate(parts).astype(np.float32)


def save(model: nn.Module, directory: Path) -> str:
    """Write the state dict (tensors only, loaded back with ``weights_only=True``)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, directory / WEIGHTS_FILE)
    return WEIGHTS_FILE


def ensemble_weights(members: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """One state dict of :class:`~histotile.models.torch_nets.Ensemble` from its members'
    weights files (``members.<k>.<tensor>``), as ``(file name, bytes)``."""
    import io

    state: dict[str, torch.Tensor] = {}
    for k, (_name, data) in enumerate(members):
        member = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        state.update({f"members.{k}.{key}": value for key, value in member.items()})
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return WEIGHTS_FILE, buffer.getvalue()


def build_for_card(card: dict[str, Any]) -> nn.Module:
    """The untrained network a model card describes: its architecture, or the
    :class:`~histotile.models.torch_nets.Ensemble` of ``final_model.members`` of them."""
    from histotile.models.torch_nets import Ensemble
    from histotile.models.torch_nets import build as build_net

    name, classes = get_spec(card["architecture"], "torch").name, len(card["classes"])
    members = int((card.get("final_model") or {}).get("members") or 0)
    if members:
        return Ensemble([build_net(name, classes, int(card["tile_size"]))
                         for _ in range(members)])
    return build_net(name, classes, int(card["tile_size"]))


class TorchRunner:
    """Inference half of :class:`Predictor` for torch models."""

    name = "torch"  # the engine name (histotile.models.engines)

    def __init__(self, card: dict[str, Any], directory: Path, device: str | None) -> None:
        from histotile.models.torch_nets import read_state_dict

        self.device = resolve_device(device)
        self.spec = get_spec(card["architecture"], "torch")
        model = build_for_card(card)
        state = read_state_dict(directory / card.get("weights_file", WEIGHTS_FILE))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ModelError(f"{directory}: the weights do not fit the {self.spec.name} "
                             f"described by the model card ({str(error).splitlines()[0]}); "
                             "the directory was altered: retrain or restore it") from None
        self.model = prepare(model, self.spec, self.device).eval()
        self.transform = InputTransform(card["input"]["normalisation"], self.device)

    def predict(self, tiles: np.ndarray, batch_size: int) -> np.ndarray:
        batches = (tiles[s:s + batch_size] for s in range(0, tiles.shape[0], batch_size))
        parts = list(_predict_batches(self.model, self.transform, batches, self.device))
        return np.concatenate(parts).astype(np.float32, copy=False)


def seed_everything(seed: int) -> None:
    """Seed torch's generators (weights initialisation, dropout)."""
    torch.manual_seed(seed)


def build(name: str, num_classes: int, tile_size: int,
          weights: str | Path | None = None) -> nn.Module:
    """The registry network ``name`` (see :func:`histotile.models.torch_nets.build`)."""
    from histotile.models.torch_nets import build as build_net

    return build_net(name, num_classes, tile_size, weights)


def load(card: dict[str, Any], directory: Path, device: str | None) -> TorchRunner:
    """The inference runner of a torch model folder."""
    return TorchRunner(card, directory, device)
