"""Grad-CAM on a task whose signal is known: positive tiles carry a bright square in
their top-left corner, so the explanation of 'positive' must lie on the square."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from histotile.errors import ModelError
from histotile.models.cam import cam_layer_name, cam_method, cam_overlay, grad_cam, network_cam
from histotile.models.registry import SPECS

TILE, SQUARE = 64, 20


def square_tiles(positive: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat tiles of random grey-brown with mild noise; a bright square where positive."""
    n = len(positive)
    base = rng.integers(90, 170, (n, 1, 1, 3))
    tiles = np.clip(base + rng.normal(0, 6, (n, TILE, TILE, 3)), 0, 255).astype(np.uint8)
    tiles[positive, :SQUARE, :SQUARE] = 245
    return tiles


def test_every_registry_model_names_a_layer_that_exists():
    import torch

    from histotile.models import create

    for name in SPECS:
        with torch.device("meta"):  # structure only: no weights allocated
            network = create(name, 2, TILE)
        layer = network.get_submodule(cam_layer_name(name))
        assert isinstance(layer, torch.nn.Module), name
    assert cam_method("lenet") == "hirescam" and cam_method("resnet18") == "gradcam"


@pytest.mark.slow
def test_activation_mass_lies_on_the_bright_square():
    import torch

    from histotile.models import create

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 512).astype(bool)
    inputs = torch.from_numpy(square_tiles(labels, rng)).float().div(255).permute(0, 3, 1, 2)
    targets = torch.from_numpy(labels.astype(np.int64))
    network = create("lenet", 2, TILE)
    optimiser = torch.optim.Adam(network.parameters(), 1e-3)
    for _ in range(40):
        batch = torch.randint(0, 512, (16,))
        loss = torch.nn.functional.cross_entropy(network(inputs[batch]), targets[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    network.eval()
    test = square_tiles(np.ones(12, bool), np.random.default_rng(5))
    x = torch.from_numpy(test).float().div(255).permute(0, 3, 1, 2)
    with torch.no_grad():
        assert torch.softmax(network(x), 1)[:, 1].min() > 0.8, "the model did not learn"
    maps = network_cam(network, cam_layer_name("lenet"), x, np.ones(12, int),
                       cam_method("lenet"))
    assert maps.shape == (12, TILE, TILE) and maps.min() >= 0 and maps.max() <= 1
    inside = maps[:, :SQUARE, :SQUARE].sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    # The square is 10% of the tile; most of the activation mass lies on it.
    assert (inside > 0.5).all(), inside
    overlay = cam_overlay(test, maps)
    assert overlay.shape == test.shape and overlay.dtype == np.uint8
    assert not np.array_equal(overlay, test)


def test_mxnet_models_are_refused_clearly():
    predictor = SimpleNamespace(backend="mxnet", model_dir="model/")
    with pytest.raises(ModelError, match="not supported for the MXNet backend"):
        grad_cam(predictor, np.zeros((1, TILE, TILE, 3), np.uint8))
