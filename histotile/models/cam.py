"""Grad-CAM for tiles: which pixels of a tile made the network call it a class.

Uses the maintained ``grad-cam`` package (imported when a map is computed) on the layer
the registry names for each architecture (:attr:`ModelSpec.cam_layer`: the last
convolutional block, after its activation). Maps come back at the tile's size, scaled
0-1 per tile, as arrays and as overlays on the tiles. Torch models only: the MXNet
backend gets a clear :class:`~histotile.errors.ModelError`.

The target is the explained class's softmax probability (its gradient weighs the class
against the others, which a two-class logit alone does not). Networks that pool their
last feature maps globally (the torchvision ones) use Grad-CAM proper; LeNet's dense head
sees every position separately, so averaging its gradients over the map (Grad-CAM's
channel weights) mixes evidence from everywhere and, measured on the synthetic
corner-square task, came out negative over the whole tile: LeNet uses HiResCAM (the same
package; gradient times activation per position), which is exact for such heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from histotile.errors import ModelError


@dataclass(frozen=True)
class CamResult:
    """Grad-CAM of a batch of tiles.

    Attributes:
        maps: float32 (N, T, T), 0-1 per tile: where the explained class's evidence lies
            (tile pixels).
        probabilities: float32 (N, C), the model's class probabilities of each tile.
        class_index: int64 (N,), the class each map explains.
        classes: the model's class names.
    """

    maps: np.ndarray
    probabilities: np.ndarray
    class_index: np.ndarray
    classes: tuple[str, ...]


def cam_layer_name(architecture: str) -> str:
    """The registry's Grad-CAM layer of ``architecture`` (torch)."""
    from histotile.models.registry import get_spec

    layer = get_spec(architecture, "torch").cam_layer
    if not layer:
        raise ModelError(f"model {architecture!r}: the registry names no Grad-CAM layer")
    return layer


# Architectures with a dense head over the flattened feature map (see the module text).
_HIRES = frozenset({"lenet"})


def cam_method(architecture: str) -> str:
    """``"hirescam"`` for dense-headed networks, else ``"gradcam"``."""
    return "hirescam" if str(architecture).lower() in _HIRES else "gradcam"


def network_cam(network: Any, layer_name: str, inputs: Any, class_indices: np.ndarray,
                method: str = "gradcam") -> np.ndarray:
    """Class activation maps of a torch ``network`` at its submodule ``layer_name`` for a
    batch of normalised ``inputs`` (N, 3, T, T) and one class index per input; float32
    (N, T, T) scaled 0-1 per input. ``method``: ``"gradcam"`` or ``"hirescam"``."""
    try:
        from pytorch_grad_cam import GradCAM, HiResCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    except ImportError:
        raise ModelError("explanations need the grad-cam package: pip install "
                         "'histotile[explain]'") from None

    try:
        layer = network.get_submodule(layer_name)
    except AttributeError:
        raise ModelError(f"the network has no layer {layer_name!r} for Grad-CAM; check "
                         "cam_layer in histotile.models.registry") from None
    targets = [ClassifierOutputSoftmaxTarget(int(k))
               for k in np.asarray(class_indices).ravel()]
    kind = {"gradcam": GradCAM, "hirescam": HiResCAM}[method]
    with kind(model=network, target_layers=[layer]) as cam:
        maps = cam(input_tensor=inputs, targets=targets)
    return np.nan_to_num(np.asarray(maps, np.float32), nan=0.0)


def explained_class(predictor: Any, class_name: str | None) -> int | None:
    """Index of ``class_name`` among the predictor's classes; None (each tile's most
    probable class) when no class is given and the card names no positive class."""
    classes = list(predictor.classes)
    if class_name is None:
        card = predictor.card
        class_name = card.get("positive_class") or (card.get("training") or {}).get(
            "positive_class")
        if class_name is None:
            return None
    if class_name not in classes:
        raise ModelError(f"class {class_name!r} is not one of the model's classes {classes} "
                         "(choose --class among them)")
    return classes.index(class_name)


def grad_cam(predictor: Any, tiles: np.ndarray, class_name: str | None = None,
             batch_size: int | None = None) -> CamResult:
    """Grad-CAM maps of uint8 RGB ``tiles`` (N, T, T, 3) under a
    :class:`~histotile.models.Predictor`'s network, for ``class_name`` (default: the
    card's positive class, else each tile's most probable class)."""
    if predictor.backend != "torch":
        raise ModelError(f"{predictor.model_dir}: Grad-CAM is not supported for the MXNet "
                         "backend; train the model with --backend torch to explain its "
                         "predictions")
    tiles = np.asarray(tiles)
    probabilities = predictor.predict(tiles)  # also checks shape and dtype
    chosen = explained_class(predictor, class_name)
    index = (probabilities.argmax(axis=1) if chosen is None
             else np.full(len(tiles), chosen)).astype(np.int64)
    layer = cam_layer_name(predictor.architecture)
    method = cam_method(predictor.architecture)
    size = int(batch_size or predictor.batch_size)
    # An ensemble (the fold models of a cross-validation) is explained by the mean of its
    # members' maps, each from its own layer: the evidence the averaged output rests on.
    members = list(getattr(predictor.network, "members", None) or [predictor.network])
    maps = [np.mean([network_cam(member, layer, predictor.to_input(tiles[s:s + size]),
                                 index[s:s + size], method) for member in members], axis=0)
            for s in range(0, len(tiles), size)]
    tile = predictor.tile_size
    stacked = np.concatenate(maps) if maps else np.zeros((0, tile, tile), np.float32)
    return CamResult(stacked, probabilities, index, tuple(predictor.classes))


def cam_overlay(tiles: np.ndarray, maps: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The maps over the tiles in viridis (dark: no evidence, yellow: most), uint8
    (N, T, T, 3): ``round((1 - alpha) * tile + alpha * colour)``."""
    tiles = np.asarray(tiles, np.uint8)
    levels = np.clip(np.rint(np.asarray(maps, np.float32) * 255), 0, 255).astype(np.uint8)
    # OpenCV's viridis: the models stage does not depend on postprocess's lookup tables.
    colours = cv2.applyColorMap(levels.reshape(-1, levels.shape[-1]), cv2.COLORMAP_VIRIDIS)
    colours = colours.reshape(*levels.shape, 3)[..., ::-1].astype(np.float32)
    out = (1.0 - alpha) * tiles.astype(np.float32) + alpha * colours
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
