"""Box integrals and block grouping shared by the tissue mask, the annotation maps and
the block reader. Plain numpy/OpenCV over arrays."""

from __future__ import annotations

import cv2
import numpy as np


def integral_image(mask: np.ndarray) -> np.ndarray:
    """Summed-area table of a 2-D bool/uint8 map: (h+1, w+1), ``I[r, c]`` = sum of
    ``mask[:r, :c]``. int32 (exact for maps up to 2**31 pixels)."""
    src = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8, copy=False)
    return cv2.integral(np.ascontiguousarray(src), sdepth=cv2.CV_32S)


def _sample(integral: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The integral at fractional map coordinates (bilinear interpolation, which is the
    exact area integral of a piecewise-constant map), clamped to the map."""
    h, w = integral.shape[0] - 1, integral.shape[1] - 1
    x = np.clip(x, 0.0, w)
    y = np.clip(y, 0.0, h)
    i = np.minimum(np.floor(x).astype(np.int64), max(w - 1, 0))
    j = np.minimum(np.floor(y).astype(np.int64), max(h - 1, 0))
    a = x - i
    b = y - j
    i1 = np.minimum(i + 1, w)
    j1 = np.minimum(j + 1, h)
    # Gather first, then convert: the table itself is never copied.
    f00, f01 = integral[j, i].astype(np.float64), integral[j, i1].astype(np.float64)
    f10, f11 = integral[j1, i].astype(np.float64), integral[j1, i1].astype(np.float64)
    return (1 - a) * (1 - b) * f00 + a * (1 - b) * f01 + (1 - a) * b * f10 + a * b * f11


def box_sums(integral: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray,
             y1: np.ndarray) -> np.ndarray:
    """Area-weighted sums of the map over boxes ``[x0, x1) x [y0, y1)`` given in (possibly
    fractional) map pixels. Parts of a box outside the map add nothing."""
    x0, y0, x1, y1 = (np.asarray(v, dtype=np.float64) for v in (x0, y0, x1, y1))
    sums = (_sample(integral, x1, y1) - _sample(integral, x0, y1)
            - _sample(integral, x1, y0) + _sample(integral, x0, y0))
    # Interpolation weights leave round-off (~1e-12 px) on empty boxes: snap it to zero so
    # that "no tissue" and "no annotation" are exactly 0.
    sums[np.abs(sums) < 1e-6] = 0.0
    return sums


def group_by_cells(xs: np.ndarray, ys: np.ndarray, cell: float) -> list[np.ndarray]:
    """Positions into ``xs``/``ys`` grouped by the square cell (side ``cell``, same units)
    holding each point, cells in raster order, positions sorted within a cell."""
    if len(xs) == 0:
        return []
    cx = (np.asarray(xs) // cell).astype(np.int64)
    cy = (np.asarray(ys) // cell).astype(np.int64)
    key = cy * (int(cx.max()) + 1) + cx
    order = np.argsort(key, kind="stable")
    sorted_keys = key[order]
    splits = np.flatnonzero(np.diff(sorted_keys)) + 1
    return np.split(order, splits)
