"""Per-pixel rules compiled to a 2**24-entry table over RGB, and the one fast way to read
such a table at every pixel (the tissue test and the ink test both use it)."""

from __future__ import annotations

import numpy as np


def rgb_lookup(table: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """``table`` (2**24 entries, index ``R | G << 8 | B << 16``) at each pixel of uint8 RGB
    (..., 3), shaped like ``rgb`` without its last axis.

    Each pixel's 3 bytes (and the next pixel's first, masked off) are read as one
    little-endian uint32: no copy of the pixels, no per-channel arithmetic, one table read
    per pixel; the last pixel, which has no next byte, is read alone."""
    rgb = np.ascontiguousarray(rgb)
    shape = rgb.shape[:-1]
    count = int(np.prod(shape))
    out = np.empty(count, dtype=table.dtype)
    if count == 0:
        return out.reshape(shape)
    flat = rgb.reshape(-1)
    if count > 1:
        words: np.ndarray = np.ndarray((count - 1,), dtype="<u4", buffer=flat, offset=0,
                                       strides=(3,))
        np.take(table, words & np.uint32(0xFFFFFF), out=out[:-1])
    last = flat[-3:].astype(np.uint32)
    out[-1] = table[int(last[0] | (last[1] << 8) | (last[2] << 16))]
    return out.reshape(shape)
