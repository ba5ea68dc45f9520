"""Inference: :class:`Predictor` turns batches of uint8 RGB tiles into class
probabilities, whichever backend trained the model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from histotile.errors import ModelError
from histotile.models.card import read_card


class Predictor:
    """A trained model directory, ready to classify tiles.

    Args:
        model_dir: a directory written by :func:`histotile.models.train`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default CUDA when present (torch
            backend; mixed precision and channels-last on CUDA), else CPU.
        batch_size: tiles per forward pass (default 64 on CPU, 256 on CUDA).

    Attributes:
        classes: class names, the column order of :meth:`predict`.
        tile_size: the tile side the network expects (px).
        card: the model card (dict).
        backend: ``"torch"`` or ``"mxnet"``.
        tile_mpp, tile_downsample: the training tiles' geometry (um per tile px; level-0
            px per tile px), None when unknown: tile slides alike for prediction.
    """

    def __init__(self, model_dir: str | Path, device: str | None = None,
                 batch_size: int | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.card: dict[str, Any] = read_card(self.model_dir)
        self.classes: list[str] = list(self.card["classes"])
        self.tile_size: int = int(self.card["tile_size"])
        self.backend: str = str(self.card["backend"])
        if self.backend == "torch":
            from histotile.models.torch_backend import TorchRunner

            self._runner: Any = TorchRunner(self.card, self.model_dir, device)
        elif self.backend == "mxnet":
            from histotile.models.mxnet_backend import MXNetRunner

            self._runner = MXNetRunner(self.card, self.model_dir, device)
        else:
            raise ModelError(f"{self.model_dir}: unknown backend {self.backend!r} in the "
                             "model card (expected 'torch' or 'mxnet')")
        self.device = str(self._runner.device)
        on_gpu = self.device.startswith(("cuda", "gpu"))
        self.batch_size = int(batch_size or (256 if on_gpu else 64))

    @property
    def network(self) -> Any:
        """The loaded network (a torch module or MXNet block), for measuring it bare."""
        return self._runner.model

    def to_input(self, tiles: np.ndarray) -> Any:
        """uint8 RGB tiles (N, T, T, 3) as the network's normalised input on its device."""
        return self._runner.transform(tiles)

    @property
    def tile_mpp(self) -> float | None:
        return (self.card.get("tiling") or {}).get("tile_mpp")

    @property
    def tile_downsample(self) -> float | None:
        return (self.card.get("tiling") or {}).get("tile_downsample")

    @property
    def architecture(self) -> str:
        return str(self.card["architecture"])

    @property
    def roles(self):
        """The model's class order, default and positive class
        (:class:`~histotile.class_roles.ClassRoles`; ``assumed`` says what an old card
        lacked)."""
        from histotile.class_roles import card_roles

        return card_roles(self.card, source=str(self.model_dir))

    def __repr__(self) -> str:
        return (f"Predictor({str(self.model_dir)!r}, {self.architecture}/{self.backend}, "
                f"classes={self.classes}, tile_size={self.tile_size}, device={self.device})")

    def check_compatible(self, classes: Sequence[str] | None = None,
                         tile_size: int | None = None) -> None:
        """Raise :class:`ModelError` when the model was trained on another tile size or
        class list (names and order) than the caller expects."""
        if tile_size is not None and int(tile_size) != self.tile_size:
            raise ModelError(f"{self.model_dir}: the model was trained on {self.tile_size} px "
                             f"tiles, not {tile_size} px: tile with size {self.tile_size} "
                             "or use a model trained on this tile size")
        if classes is not None and list(classes) != self.classes:
            raise ModelError(f"{self.model_dir}: the model's classes are {self.classes}, not "
                             f"{list(classes)}: use a model trained on these classes (same "
                             "names, same order)")

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        """Class probabilities of RGB tiles.

        Args:
            tiles: uint8 array (N, tile_size, tile_size, 3) (one tile (H, W, 3) is also
                accepted).

        Returns:
            float32 (N, len(classes)), rows summing to 1.
        """
        tiles = np.asarray(tiles)
        if tiles.ndim == 3:
            tiles = tiles[None]
        if tiles.ndim != 4 or tiles.shape[-1] != 3:
            raise ModelError(f"{self.model_dir}: tiles must be an (N, H, W, 3) RGB array, "
                             f"got shape {tiles.shape}")
        if tiles.shape[1] != self.tile_size or tiles.shape[2] != self.tile_size:
            raise ModelError(f"{self.model_dir}: the model takes {self.tile_size}x"
                             f"{self.tile_size} px tiles, got {tiles.shape[2]}x{tiles.shape[1]}"
                             f" px: tile with size {self.tile_size} (or resize the tiles)")
        if tiles.dtype != np.uint8:
            raise ModelError(f"{self.model_dir}: tiles must be uint8 RGB (0-255), got dtype "
                             f"{tiles.dtype}")
        if tiles.shape[0] == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return self._runner.predict(tiles, self.batch_size)
