"""Pixel helpers of the artefact checks (:mod:`histotile.tiling.artefacts`,
:mod:`histotile.tiling.mount_artefacts`): the input check, the area shrink to an analysis
resolution and the nearest-neighbour way back to the image's pixels."""

from __future__ import annotations

import cv2
import numpy as np


def rgb_uint8(image: np.ndarray) -> np.ndarray:
    """``image`` as a C-contiguous RGB uint8 (h, w, 3) array; ValueError otherwise."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected one RGB uint8 image (h, w, 3), got {image.shape} "
                         f"{image.dtype}")
    return np.ascontiguousarray(image)


def shrink(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` (h, w[, c]) area-averaged to 1/``factor`` of its sides (rounded, at
    least 1 px); itself when ``factor`` is 1."""
    if factor == 1:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def grow(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A bool mask brought back to (h, w) = ``shape[:2]`` (nearest neighbour)."""
    if mask.shape == tuple(shape[:2]):
        return mask
    return cv2.resize(mask.view(np.uint8), (shape[1], shape[0]),
                      interpolation=cv2.INTER_NEAREST).view(bool)
