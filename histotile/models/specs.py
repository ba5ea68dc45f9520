"""What histotile knows about each architecture, as data: :class:`ModelSpec` per registry
name, looked up with :func:`get_spec`.

A leaf module: it imports nothing of histotile but the errors, so the settings, the
backends and the builders all read it without importing each other (the registry pattern
of torchvision's ``models/_api.py``). Add a model: one :class:`ModelSpec` entry here, its
defaults in :data:`histotile.models.settings.MODEL_DEFAULTS`, its builder in the backend
(``torch_nets.build`` for torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from histotile.errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_TILE_SIZE = 64
"""The smallest tile side of the torchvision networks (five stride-2 stages)."""
SMALL_TILE_SIZE = 16
"""The smallest tile side of the networks made for small patches (LeNet, TileNet)."""


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one architecture.

    Attributes:
        name: registry name.
        backends: backends that provide it.
        mean, std: per-channel normalisation applied after dividing by 255.
        channels_last: run in channels-last memory format (faster convolutions on CPU
            and on tensor-core GPUs).
        description: one line for ``--help`` texts and the model card.
        cam_layer: the torch module (dotted name) whose activations Grad-CAM explains:
            the last convolutional block, after its activation.
        defaults: the training defaults of this model (optimiser, lr, momentum, batch
            size, epochs, weight decay); every one can be overridden in ``TrainSettings``.
        min_tile_size: the smallest tile side in pixels the network accepts.
    """

    name: str
    backends: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channels_last: bool
    description: str
    cam_layer: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict, compare=False)
    min_tile_size: int = MIN_TILE_SIZE

    def normalisation(self) -> dict[str, Any]:
        """The input transform, as stored in the model card: ``(x / 255 - mean) / std``
        on RGB uint8 tiles."""
        return {"divide_by": 255.0, "mean": list(self.mean), "std": list(self.std),
                "channel_order": "RGB"}


# The LeNet study used SGD (lr 0.001, momentum 0.8, batch 32), which left LeNet's sigmoid
# layers at the majority-class accuracy for many epochs on real patches; Adam at the same
# learning rate learns in a few (what the demo shows), so it is the default.
# optimizer="sgd" restores the study's setting (momentum stays 0.8).
_LENET_DEFAULTS = {"optimizer": "adam", "lr": 0.001, "momentum": 0.8, "batch_size": 32,
                   "epochs": 20, "weight_decay": 0.0}
# TileNet, the default: the recipe measured on real H&E patches of unseen patients
# (benchmarks/bench_validity.py): AdamW with a one-cycle schedule (warm-up, then cosine
# decay), batch 64, 25 epochs (5-fold patient CV of the IDC development set, pooled
# out-of-fold AUC 0.911 at 15 epochs, 0.918 at 25; 64 px input instead of 50: no gain).
# See histotile.models.settings for the rest of the recipe
# (class-balanced loss, colour augmentation, early stopping on balanced accuracy, the
# fold ensemble).
_TILENET_DEFAULTS = {"optimizer": "adamw", "lr": 0.003, "momentum": 0.9, "batch_size": 64,
                     "epochs": 25, "weight_decay": 1e-4}
# The torchvision study: 20 epochs, learning rate 0.001, early stopping.
_TORCHVISION_DEFAULTS = {"optimizer": "sgd", "lr": 0.001, "momentum": 0.9, "batch_size": 32,
                         "epochs": 20, "weight_decay": 1e-4}

SPECS: dict[str, ModelSpec] = {
    "tilenet": ModelSpec("tilenet", ("torch",), IMAGENET_MEAN, IMAGENET_STD, True,
                         "TileNet: a compact CNN for tiles and small patches (3x3 "
                         "convolutions with batch norm, four stages of 16 to 128 channels, "
                         f"global average pooling, dropout); any side from {SMALL_TILE_SIZE} px",
                         cam_layer="features.20", defaults=_TILENET_DEFAULTS,
                         min_tile_size=SMALL_TILE_SIZE),
    "lenet": ModelSpec("lenet", ("torch", "mxnet"), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), True,
                       "LeNet-style CNN of the prostate-biopsy study: conv20-5, max-pool, "
                       "conv50-5, max-pool, dense 500 and 84 (sigmoid), softmax; input / 255",
                       cam_layer="features.4", defaults=_LENET_DEFAULTS,
                       min_tile_size=SMALL_TILE_SIZE),
    "squeezenet": ModelSpec("squeezenet", ("torch",), IMAGENET_MEAN, IMAGENET_STD, True,
                            "torchvision SqueezeNet 1.1", cam_layer="features.12",
                            defaults=_TORCHVISION_DEFAULTS),
    "resnet18": ModelSpec("resnet18", ("torch",), IMAGENET_MEAN, IMAGENET_STD, True,
                          "torchvision ResNet-18", cam_layer="layer4",
                          defaults=_TORCHVISION_DEFAULTS),
    "alexnet": ModelSpec("alexnet", ("torch",), IMAGENET_MEAN, IMAGENET_STD, True,
                         "torchvision AlexNet", cam_layer="features.11",
                         defaults=_TORCHVISION_DEFAULTS),
    "shufflenet_v2": ModelSpec("shufflenet_v2", ("torch",), IMAGENET_MEAN, IMAGENET_STD, True,
                               "torchvision ShuffleNet V2 x1.0", cam_layer="conv5",
                               defaults=_TORCHVISION_DEFAULTS),
}


SMALLEST_TILE_SIZE = min(spec.min_tile_size for spec in SPECS.values())
"""The smallest network input side of any model (px): the lower bound of the CLI's
``train --tile-size`` and ``--patchify``; each model checks its own
:attr:`ModelSpec.min_tile_size`."""


def available_models(backend: str | None = None) -> list[str]:
    """Registry names, optionally only those a backend provides."""
    return [name for name, spec in SPECS.items() if backend is None or backend in spec.backends]


def get_spec(name: str, backend: str = "torch") -> ModelSpec:
    """The spec of ``name``; :class:`ModelError` for an unknown name or backend."""
    spec = SPECS.get(str(name).lower())
    if spec is None:
        raise ModelError(f"model {name!r}: unknown architecture (choose one of "
                         f"{', '.join(SPECS)})")
    if backend not in spec.backends:
        raise ModelError(f"model {name!r}: not available for backend {backend!r} "
                         f"(available: {', '.join(spec.backends)})")
    return spec


def lenet_feature_side(tile_size: int) -> int:
    """Side of LeNet's last feature map: two valid 5x5 convolutions, each followed by a
    2x2 max-pool."""
    side = (tile_size - 4) // 2
    return (side - 4) // 2


def check_tile_size(tile_size: int, minimum: int = MIN_TILE_SIZE) -> int:
    """``tile_size`` as an int; :class:`ModelError` below ``minimum`` px (a model's
    :attr:`ModelSpec.min_tile_size`). Training never meets this for small images: it
    resizes them to the model's minimum (:func:`histotile.models.data.load_tiles`)."""
    if int(tile_size) != tile_size or tile_size < minimum:
        raise ModelError(f"tile_size={tile_size!r}: this network needs square tiles of at "
                         f"least {minimum} px; pass tile_size={minimum} (--tile-size) to "
                         "resize them, or choose model='tilenet' "
                         f"({SPECS['tilenet'].min_tile_size} px and more)")
    return int(tile_size)
