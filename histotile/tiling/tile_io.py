"""Reading one tile as the manifest describes it: the contract shared by tiling, training
and prediction, so every stage sees exactly the same pixels for a tile."""

from __future__ import annotations

import cv2
import numpy as np

from histotile.wsi import Slide

# Columns of the tile manifest (CSV), the source of truth between stages. Per-class
# fraction columns are named ``frac_<class>``; a ``group`` column (patient or slide) is
# what cross-validation groups by.
MANIFEST_COLUMNS = ("slide", "path", "group", "x", "y", "extent", "level", "read_size",
                    "size", "tissue_fraction", "label")


def read_tile(slide: Slide, x: int, y: int, level: int, read_size: int,
              size: int) -> np.ndarray:
    """One tile as RGB uint8 (size, size, 3).

    Args:
        slide: the open slide.
        x, y: top-left corner in level-0 pixels.
        level: pyramid level read.
        read_size: side of the square read at ``level``, in that level's pixels.
        size: side of the returned tile; the read is shrunk (area interpolation) when it
            differs from ``read_size`` (a target resolution between stored levels).
    """
    pixels = slide.read_region((x, y), level, (read_size, read_size))
    return resize_tile(pixels, size)


def resize_tile(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize a square RGB block to ``size`` (area interpolation when shrinking)."""
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    shrinking = pixels.shape[0] > size
    return cv2.resize(pixels, (size, size),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
