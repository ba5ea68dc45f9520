"""Inference: :class:`Predictor` turns batches of uint8 RGB tiles into class
probabilities, whichever backend trained the model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from histotile.errors import ModelError


def dihedral_views(tiles: np.ndarray) -> list[np.ndarray]:
    """The 8 elements of the dihedral group applied to uint8 tiles (N, T, T, 3): the
    rotations by 0, 90, 180 and 270 degrees, each as is and mirrored left to right
    (contiguous copies, as engines expect)."""
    views = []
    for k in range(4):
        turned = np.rot90(tiles, k, axes=(1, 2))
        views.append(np.ascontiguousarray(turned))
        views.append(np.ascontiguousarray(turned[:, :, ::-1]))
    return views


class Predictor:
    """A trained model directory, ready to classify tiles.

    Args:
        model_dir: a directory written by :func:`histotile.models.train`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; default CUDA when present (torch
            backend; mixed precision and channels-last on CUDA), else CPU.
        batch_size: tiles per forward pass (default 64 on CPU, 256 on CUDA).
        engine: ``"auto"`` (the fastest installed engine for the device, see
            :mod:`histotile.models.engines`), ``"torch"``, ``"mxnet"``, ``"onnxruntime"``
            or ``"onnxruntime-int8"`` (explicit only). ``model_dir`` may also be a file
            written by ``histotile export`` (ONNX or TorchScript).
        tta: test-time augmentation: each tile's probabilities are the mean over its 8
            flips and 90-degree rotations (the dihedral group), whatever the engine
            (8 times the inference work).

    Attributes:
        classes: class names, the column order of :meth:`predict`.
        tile_size: the tile side the network expects (px).
        card: the model card (dict).
        backend: ``"torch"`` or ``"mxnet"`` (the framework that trained it).
        engine: the engine that runs it (recorded in the predictions' JSON).
        tile_mpp, tile_downsample: the training tiles' geometry (um per tile px; level-0
            px per tile px), None when unknown: tile slides alike for prediction.
        temperature: the card's calibration temperature, applied to every prediction
            (None: the card records no calibration).
        threshold: the card's tile threshold of the positive class
            (:class:`~histotile.models.operating_point.TileThreshold`:
            :data:`~histotile.models.operating_point.DEFAULT_TILE_THRESHOLD`, with that
            said in ``source``, for a card that records none).
    """

    def __init__(self, model_dir: str | Path, device: str | None = None,
                 batch_size: int | None = None, engine: str = "auto",
                 tta: bool = False) -> None:
        from histotile.models.engines import load_engine

        self.model_dir = Path(model_dir)
        self.card, self._runner = load_engine(self.model_dir, engine, device)
        self.classes: list[str] = list(self.card["classes"])
        self.tile_size: int = int(self.card["tile_size"])
        self.backend: str = str(self.card["backend"])
        self.engine: str = str(self._runner.name)
        self.device = str(self._runner.device)
        from histotile.tiling.stain import normaliser_from_dict

        # The training tiles' stain normaliser (model card), applied to every tile.
        self.normaliser = normaliser_from_dict(self.card.get("stain_normaliser"))
        self.stain_failures = 0
        on_gpu = self.device.startswith(("cuda", "gpu"))
        self.batch_size = int(batch_size or (256 if on_gpu else 64))
        self._network_runner: Any = None
        self.tta = bool(tta)
        from histotile.models.calibration import card_temperature
        from histotile.models.operating_point import card_threshold

        self.temperature = card_temperature(self.card)
        self.threshold = card_threshold(self.card)

    def _network_source(self) -> Any:
        """The runner holding the framework network: the engine itself (torch, mxnet),
        else a torch runner loaded on first use (engines that run an exported graph)."""
        if hasattr(self._runner, "transform"):
            return self._runner
        if self._network_runner is None:
            if self.model_dir.is_file():
                raise ModelError(f"{self.model_dir}: an exported model holds no framework "
                                 "network; load the model folder for Grad-CAM or to "
                                 "measure the bare network")
            from histotile.models.torch_backend import TorchRunner

            self._network_runner = TorchRunner(self.card, self.model_dir, self.device)
        return self._network_runner

    @property
    def network(self) -> Any:
        """The loaded network (a torch module or MXNet block), for measuring it bare."""
        return self._network_source().model

    def to_input(self, tiles: np.ndarray) -> Any:
        """uint8 RGB tiles (N, T, T, 3) as the network's normalised input on its device
        (stain-normalised first, as in :meth:`predict`)."""
        return self._network_source().transform(self.normalise(tiles))

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
                f"classes={self.classes}, tile_size={self.tile_size}, engine={self.engine}, "
                f"device={self.device})")

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
        if self.normaliser is None:
            return self._engine(tiles, self.batch_size)
        return self._predict_overlapped(tiles)

    def _engine(self, tiles: np.ndarray, batch_size: int) -> np.ndarray:
        """The engine's probabilities of (normalised) tiles: averaged over the 8
        dihedral transforms with ``tta``, then calibrated when the card says so. The one
        place every engine's output passes through."""
        if self.tta:
            proba = np.mean([self._runner.predict(view, batch_size)
                             for view in dihedral_views(tiles)], axis=0)
        else:
            proba = self._runner.predict(tiles, batch_size)
        if self.temperature is not None:
            from histotile.models.calibration import apply_temperature

            proba = apply_temperature(proba, self.temperature)
        return np.asarray(proba, np.float32)

    def _predict_overlapped(self, tiles: np.ndarray) -> np.ndarray:
        """:meth:`predict` with the normalisation of batch k+1 in a background thread
        while the network runs batch k (:mod:`histotile.models.overlap`): the same
        batches, so the same probabilities; failures are counted once all succeeded,
        as when every tile is normalised first."""
        from histotile.models.overlap import overlapped
        from histotile.tiling.stain import normalise_tiles

        size, normaliser = self.batch_size, self.normaliser
        batches = [tiles[s:s + size] for s in range(0, len(tiles), size)]
        parts = overlapped(batches, lambda batch: normalise_tiles(normaliser, batch),
                           lambda done: (self._engine(done[0], size), done[1]))
        self.stain_failures += sum(failures for _, failures in parts)
        return np.concatenate([probabilities for probabilities, _ in parts])

    def normalise(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 RGB tiles (N, T, T, 3) stain-normalised as the training tiles were
        (unchanged without a normaliser; tiles it cannot handle stay as they are and
        are counted in ``stain_failures``)."""
        from histotile.tiling.stain import normalise_tiles

        tiles, failures = normalise_tiles(self.normaliser, tiles)
        self.stain_failures += failures
        return tiles
