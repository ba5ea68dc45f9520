"""Small torch model folders and random tiles for the engine and export tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIDE = 64
CLASSES = ["normal", "tumour"]


def make_model(directory: Path, architecture: str = "lenet", side: int = SIDE,
               seed: int = 0) -> Path:
    """A freshly initialised (seeded) torch model folder with its card."""
    import torch

    from histotile.models import create, get_spec
    from histotile.models.card import build_card, write_card
    from histotile.models.torch_backend import save

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    weights = save(create(architecture, len(CLASSES), side), directory)
    write_card(build_card(architecture=architecture, backend="torch", description="test",
                          classes=CLASSES, tile_size=side, weights_file=weights,
                          normalisation=get_spec(architecture).normalisation(),
                          geometry={"tile_mpp": 0.5, "tile_downsample": 1.0},
                          settings={"positive_class": "tumour"}, data={}, metrics={},
                          final_epochs=None), directory)
    return directory


def tiles(count: int = 5, side: int = SIDE, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, side, side, 3), np.uint8)
