"""What every stain normaliser shares: the error for a tile or reference it cannot use,
the protocol the pipeline relies on, and the check of an RGB uint8 image."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from histotile.errors import HistotileError


class StainError(HistotileError):
    """A tile or reference a normaliser cannot use (too little stain)."""


class Normaliser(Protocol):
    """What the pipeline needs of a stain normaliser."""

    method: str

    def fit(self, image: np.ndarray) -> Normaliser: ...

    def transform(self, tile: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


def rgb_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB uint8 {what} (h, w, 3), got {image.shape} "
                         f"{image.dtype}")
    return image
