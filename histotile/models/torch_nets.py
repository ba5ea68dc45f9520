"""PyTorch networks: the study's LeNet and torchvision architectures with their heads
sized for the task. Imported only when a torch model is built (torch is heavy)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from histotile.errors import ModelError
from histotile.models.specs import lenet_feature_side

log = logging.getLogger("histotile.models")


class LeNet(nn.Module):
    """The LeNet of the prostate-biopsy study: conv 20@5x5, max-pool 2, conv 50@5x5,
    max-pool 2, then fully connected 500 and 84 with sigmoid, and the class outputs
    (softmax is applied by the loss / the predictor). Convolutions use ReLU. Initialised
    like the Gluon LeNet (Glorot-uniform weights, zero biases)."""

    def __init__(self, num_classes: int, tile_size: int) -> None:
        super().__init__()
        side = lenet_feature_side(tile_size)
        self.features = nn.Sequential(
            nn.Conv2d(3, 20, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(20, 50, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(50 * side * side, 500), nn.Sigmoid(),
            nn.Linear(500, 84), nn.Sigmoid(),
            nn.Linear(84, num_classes),
        )
        # Glorot-uniform weights and zero biases: what the MXNet backend's Xavier
        # initialiser does, so both backends start from the same distribution (and the
        # sigmoid layers start out of their flat region faster than with the default).
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _conv_bn(channels_in: int, channels_out: int) -> list[nn.Module]:
    return [nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True)]


class TileNet(nn.Module):
    """A compact CNN for tiles and small patches (the default network).

    Stages of 3x3 convolutions with batch norm and ReLU: 16 channels at full size, 32 and
    64 (two convolutions each) after 2x2 max-pools, then 128; global average pooling,
    dropout 0.3 and the class outputs. 0.14 M weights and (computed) about 20 M
    multiply-adds for a 50 px patch, so it trains on CPU cores in minutes; global pooling makes it
    take any side from 16 px (three pools) without resizing. Its batch norm keeps it
    from collapsing to one class the way LeNet's sigmoid layers can on real patches.
    """

    def __init__(self, num_classes: int, width: int = 16, dropout: float = 0.3) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn(3, w), nn.MaxPool2d(2),
            *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w), nn.MaxPool2d(2),
            *_conv_bn(2 * w, 4 * w), *_conv_bn(4 * w, 4 * w), nn.MaxPool2d(2),
            *_conv_bn(4 * w, 8 * w),
        )
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                        nn.Dropout(dropout), nn.Linear(8 * w, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Ensemble(nn.Module):
    """Several networks of one architecture as one: the output is the log of their
    averaged class probabilities, so a softmax of it (what the predictor and every engine
    apply) gives exactly the average of the members' probabilities. The fold models of a
    cross-validation become the final model this way (``final="ensemble"``)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([torch.softmax(m(x).float(), dim=1)
                                     for m in self.members]).mean(0)
        return torch.log(probabilities.clamp_min(1e-12))


Builder = Callable[[int, int], nn.Module]  # (num_classes, tile_size) -> a fresh network
BUILDERS: dict[str, Builder] = {}
"""Registry name -> its torch builder; each builder registers itself with
:func:`register_builder` (torchvision's ``register_model`` pattern), so adding a network
is one decorated function here and one spec in :mod:`histotile.models.specs`."""


def register_builder(name: str) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        BUILDERS[name] = builder
        return builder

    return register


@register_builder("tilenet")
def _tilenet(num_classes: int, _tile_size: int) -> nn.Module:
    return TileNet(num_classes)


@register_builder("lenet")
def _lenet(num_classes: int, tile_size: int) -> nn.Module:
    return LeNet(num_classes, tile_size)


@register_builder("squeezenet")
def _squeezenet(num_classes: int, _tile_size: int) -> nn.Module:
    from torchvision.models import squeezenet1_1

    return squeezenet1_1(weights=None, num_classes=num_classes)


@register_builder("resnet18")
def _resnet18(num_classes: int, _tile_size: int) -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None, num_classes=num_classes)


@register_builder("alexnet")
def _alexnet(num_classes: int, _tile_size: int) -> nn.Module:
    from torchvision.models import alexnet

    return alexnet(weights=None, num_classes=num_classes)


@register_builder("shufflenet_v2")
def _shufflenet_v2(num_classes: int, _tile_size: int) -> nn.Module:
    from torchvision.models import shufflenet_v2_x1_0

    return shufflenet_v2_x1_0(weights=None, num_classes=num_classes)


def build(name: str, num_classes: int, tile_size: int,
          weights: str | Path | None = None) -> nn.Module:
    """A freshly initialised network (torchvision with ``weights=None``), then the
    optional local starting weights."""
    builder = BUILDERS.get(name)
    if builder is None:  # the registry checked the name against the specs
        raise ModelError(f"model {name!r}: no torch builder")
    model = builder(num_classes, tile_size)
    if weights is not None:
        load_starting_weights(model, Path(weights))
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict read safely (``weights_only=True``: tensors and plain containers, no
    arbitrary pickled objects). Accepts a checkpoint dict holding ``state_dict``/``model``.

    A missing, empty, truncated or damaged file, and one holding other pickled objects,
    is a :class:`ModelError` in histotile's words: torch's own text would advise loading
    with ``weights_only=False``, which runs whatever code the file holds."""
    import pickle
    import warnings

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file (copy the whole model folder, or "
                         "train again)")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"{path}: the weights file is empty (0 bytes: a copy or save that "
                         "was cut short); copy the model folder again, or train again")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols: not for users
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(f"{path}: holds pickled Python objects besides tensors (or is "
                         "damaged), which histotile never loads, as they could run code; "
                         "save weights with torch.save(model.state_dict(), path), or copy "
                         "the model folder again") from None
    except Exception:  # noqa: BLE001 - torch raises many types (EOFError, RuntimeError...)
        raise ModelError(f"{path}: not a readable weights file ({size} bytes: truncated, "
                         "damaged or not written by torch.save); copy the model folder "
                         "again, or save weights with torch.save(model.state_dict(), path)"
                         ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ModelError(f"{path}: does not hold a state_dict of tensors; save weights with "
                         "torch.save(model.state_dict(), path)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_starting_weights(model: nn.Module, path: Path) -> None:
    """Load a local state dict for fine-tuning: tensors whose names and shapes match are
    copied; the rest (typically the classifier head) keep their initialisation. Fails
    when nothing matches (the file is for another architecture)."""
    state = read_state_dict(path)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable or len(usable) < len(own) // 2:
        raise ModelError(f"{path}: only {len(usable)} of the network's {len(own)} weight "
                         f"tensors match this file: it is for another architecture; name "
                         f"a weights file of the same network")
    skipped = sorted(set(own) - set(usable))
    model.load_state_dict(usable, strict=False)
    log.info("starting weights from %s: %d tensors loaded, %d kept fresh (%s)", path,
             len(usable), len(skipped), ", ".join(skipped[:6]) + ("..." if len(skipped) > 6
                                                                  else ""))
