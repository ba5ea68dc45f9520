"""Data-parallel training of one model with ``torch.distributed``
(``DistributedDataParallel``; gloo on CPU, NCCL on CUDA).

Every rank runs the same :func:`histotile.models.train` (started by ``torchrun``, which
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``):
the same splits and seeds, each fold trained by all ranks together. Per step, every
rank takes its share of the same global batch the single-process run would take
(``batch_size`` tiles), reads those tiles from its own tile cache, and the gradients are
averaged so that the step equals the single-process step on the whole batch. Training
loss and accuracy are summed over ranks, validation and test tiles are predicted in
shares and gathered, and early stopping follows rank 0's decision, so every rank stops
at the same epoch. Only rank 0 writes the model folder.

A rank that fails stops the job: under ``torchrun`` the launcher ends the other ranks and
names the failed one; elsewhere every collective has a timeout (``timeout_s``), after
which the waiting ranks fail with a message instead of hanging.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from histotile.errors import ConfigError
from histotile.models.epochs import CONTINUE, IMPROVED, STOP
from histotile.models.folds import FoldJob, FoldResult, FoldSetup, train_fold
from histotile.models.settings import DDP_TIMEOUT_S
from histotile.models.tile_source import TileSource

log = logging.getLogger("histotile.models")
_OUTCOMES = (IMPROVED, CONTINUE, STOP)


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job (from torchrun's environment variables)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def from_environment(cls) -> RankInfo | None:
        """None when this process is not one rank of a ``torchrun`` job."""
        if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
            return None
        try:
            world = int(os.environ["WORLD_SIZE"])
            rank = int(os.environ["RANK"])
            local = int(os.environ.get("LOCAL_RANK", rank))
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        except ValueError:
            raise ConfigError("RANK/WORLD_SIZE/LOCAL_RANK are not whole numbers; start "
                              "data-parallel training with torchrun") from None
        return cls(rank, world, local, local_world)


def start(info: RankInfo, device: str | None, timeout_s: float = DDP_TIMEOUT_S
          ) -> DataParallel:
    """Join the process group (NCCL when training on CUDA, else gloo) and return this
    rank's :class:`DataParallel`. ``device``: as in ``TrainSettings.device``; CUDA ranks
    use ``cuda:LOCAL_RANK``."""
    use_cuda = (device is None and torch.cuda.is_available()) or (
        device is not None and device.startswith("cuda"))
    if use_cuda:
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r}: CUDA is not available on this machine")
        chosen = torch.device("cuda", info.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(chosen)
    else:
        chosen = torch.device("cpu")
    group = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(group, timeout=timedelta(seconds=timeout_s),
                                rank=info.rank, world_size=info.world_size)
    return DataParallel(info, chosen, group)


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class DataParallel:
    """One rank's half of data-parallel training: what ``torch_backend.fit`` asks when
    it runs on several ranks (see the module docstring)."""

    def __init__(self, info: RankInfo, device: torch.device, group: str) -> None:
        self.info, self.device, self.group = info, device, group
        self.rank, self.world = info.rank, info.world_size
        # Collectives run on CUDA tensors with NCCL, on CPU tensors with gloo.
        self._comm = device if group == "nccl" else torch.device("cpu")
        self._global = 1

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        if self.group == "nccl":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return DistributedDataParallel(model, device_ids=[self.device.index])
        # On CPU (gloo) BatchNorm statistics stay per rank: torch's SyncBatchNorm needs
        # CUDA. LeNet has none; for the torchvision nets the step differs slightly from
        # the single-process one.
        return DistributedDataParallel(model)

    def batches(self, source: TileSource, rows: np.ndarray, batch_size: int, *,
                rng: np.random.Generator, augment: bool
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """This rank's share (every ``world``-th row) of each global batch, in the order
        the single process would draw them. Written here rather than with torch's
        ``DistributedSampler``, which deals each rank a separate stream of whole batches:
        its global steps differ from the single-process ones, ours equal them."""
        rows = np.asarray(rows, np.int64)
        rows = rows[rng.permutation(rows.size)]  # the single process's epoch order
        # Augmentation draws differ per rank (a rank's own stream).
        local_rng = np.random.default_rng([int(rng.integers(2**31)), self.rank])
        shares = [rows[s:s + batch_size][self.rank::self.world]
                  for s in range(0, rows.size, batch_size)]
        totals = [min(batch_size, rows.size - s) for s in range(0, rows.size, batch_size)]
        mine = np.concatenate(shares) if shares else rows[:0]
        stream = source.batches(mine, max(1, -(-batch_size // self.world)), augment=augment,
                                rng=local_rng)
        side = source.reader.tile_size
        held_rows, held_tiles = rows[:0], np.empty((0, side, side, 3), np.uint8)
        for share, total in zip(shares, totals):
            while held_rows.size < share.size:
                index, tiles = next(stream)
                held_rows = np.concatenate([held_rows, index])
                held_tiles = np.concatenate([held_tiles, tiles])
            self._global = total
            yield held_rows[:share.size], held_tiles[:share.size]
            held_rows, held_tiles = held_rows[share.size:], held_tiles[share.size:]

    def loss(self, logits: torch.Tensor, targets: torch.Tensor,
             weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to back-propagate, this rank's summed loss). DDP averages gradients over
        ranks, so each rank's summed loss is scaled by ``world / global batch``: the
        average is then the gradient of the mean loss over the whole global batch.
        ``weight``: per-class weights of each tile's loss (the class balance)."""
        summed = nn.functional.cross_entropy(logits, targets, weight=weight, reduction="sum")
        return summed * (self.world / self._global), summed.detach()

    def reduce(self, loss_sum: float, correct: int, seen: int) -> tuple[float, int, int]:
        """Sums over ranks (float64)."""
        totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64,
                              device=self._comm)
        dist.all_reduce(totals)
        loss_sum, correct, seen = totals.tolist()
        return loss_sum, int(round(correct)), int(round(seen))

    def predict_rows(self, model: nn.Module, spec: Any, source: TileSource,
                     rows: np.ndarray, batch_size: int, device: torch.device,
                     transform: Any = None) -> np.ndarray:
        """Class probabilities of ``rows`` (in order) on every rank: each predicts every
        ``world``-th row, then the shares are gathered."""
        from histotile.models.torch_backend import predict_rows

        model = getattr(model, "module", model)
        rows = np.asarray(rows, np.int64)
        mine = rows[self.rank::self.world]
        proba = (predict_rows(model, spec, source, mine, batch_size, device,
                                            transform=transform) if mine.size else None)
        classes = torch.tensor([0 if proba is None else proba.shape[1]], device=self._comm)
        dist.all_reduce(classes, op=dist.ReduceOp.MAX)
        longest = -(-rows.size // self.world)
        padded = torch.zeros((longest, int(classes.item())), dtype=torch.float32,
                             device=self._comm)
        if proba is not None:
            padded[:mine.size] = torch.from_numpy(proba).to(self._comm)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        out = np.empty((rows.size, padded.shape[1]), np.float32)
        for rank, part in enumerate(parts):
            count = rows[rank::self.world].size
            out[rank::self.world] = part[:count].cpu().numpy()
        return out

    def agree(self, outcome: str) -> str:
        """Rank 0's early-stopping outcome, on every rank."""
        code = torch.tensor([_OUTCOMES.index(outcome)], device=self._comm)
        dist.broadcast(code, src=0)
        return _OUTCOMES[int(code.item())]


class DistributedFolds:
    """Fold runner: each job trained by all ranks together (see the module docstring)."""

    def __init__(self, parallel: DataParallel) -> None:
        self.parallel = parallel

    def __call__(self, setup: FoldSetup, jobs: list[FoldJob], progress: Any
                 ) -> list[FoldResult]:
        if setup.settings.backend != "torch":
            raise ConfigError("data-parallel training (torchrun, --ddp) needs backend='torch'")
        return [train_fold(setup, job, progress, parallel=self.parallel) for job in jobs]

    def describe(self) -> dict[str, Any]:
        p = self.parallel
        return {"engine": "torch.distributed (DistributedDataParallel)",
                "world_size": p.world, "process_group": p.group,
                "nodes": max(1, p.world // max(1, p.info.local_world_size))}
