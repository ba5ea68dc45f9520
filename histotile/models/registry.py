"""The model registry: :func:`create` builds a registry model on a backend. The specs
live in :mod:`histotile.models.specs`, the backends in :mod:`histotile.models.backends`.

Networks are built without pretrained weights (``weights=None`` for torchvision); starting
weights come only from a local file the user names. Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histotile.errors import ModelError
from histotile.models.backends import load_backend
from histotile.models.specs import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MIN_TILE_SIZE,
    SPECS,
    ModelSpec,
    available_models,
    check_tile_size,
    get_spec,
    lenet_feature_side,
)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "MIN_TILE_SIZE", "SPECS", "ModelSpec",
           "available_models", "check_tile_size", "create", "get_spec", "lenet_feature_side"]



def create(name: str, num_classes: int, tile_size: int, backend: str = "torch",
           weights: str | Path | None = None) -> Any:
    """Build a network for ``num_classes`` classes on ``tile_size`` x ``tile_size`` RGB
    tiles (any size from the model's :attr:`ModelSpec.min_tile_size` up).

    Args:
        name: one of :func:`available_models`.
        num_classes: number of output classes (>= 2).
        tile_size: input side in pixels.
        backend: ``"torch"`` (a ``torch.nn.Module``) or ``"mxnet"`` (an initialised Gluon
            block; LeNet only; needs the ``mxnet`` extra).
        weights: a local file of starting weights (torch: a ``state_dict`` file, e.g.
            torchvision's ImageNet ``.pth``; layers whose shapes differ, such as the
            classifier head, keep their fresh initialisation. MXNet: a ``.params`` file).
            Never downloaded.

    Raises:
        ModelError: unknown name/backend, tile size below the model's minimum, unusable
            weights file.
    """
    spec = get_spec(name, backend)
    tile_size = check_tile_size(tile_size, spec.min_tile_size)
    if int(num_classes) < 2:
        raise ModelError(f"num_classes={num_classes!r}: a classifier needs at least 2 classes")
    if weights is not None and not Path(weights).is_file():
        raise ModelError(f"{weights}: weights file not found (name a local file; histotile "
                         "never downloads weights)")
    return load_backend(backend).build(spec.name, int(num_classes), tile_size, weights)
