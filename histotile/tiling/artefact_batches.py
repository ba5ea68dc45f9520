"""Artefact checks on batches of tiles: the same figures as the single-image functions of
:mod:`histotile.tiling.artefacts` (tests compare them pixel for pixel), computed for a
whole batch at once. Each step says why batching it gives the same pixels: one shrink,
one box filter and one table read per batch instead of one per tile.

Tiling measures focus here, tile by tile (it needs detail of a few microns); pen ink and
folds it reads off the slide's view (:mod:`histotile.tiling.artefact_map`). The pen masks
here are for tiles without a slide: :func:`~histotile.tiling.tissue.tissue_fraction` of
any RGB tile takes ink out of its tissue.
"""

from __future__ import annotations

import cv2
import numpy as np

from histotile.tiling._pixels import grow, shrink
from histotile.tiling._rgb_table import rgb_lookup
from histotile.tiling.artefacts import (  # the rules and their single-image helpers
    BLUR_THRESHOLD,
    FALLBACK_MPP,
    FOCUS_MAX_MPP,
    FOCUS_MPP,
    WINDOW_UM,
    ink_lut,
    shrink_factor,
    window_px,
)


def _shrink_tiles(tiles: np.ndarray, factor: float) -> np.ndarray:
    """:func:`shrink` of each tile of a batch (n, h, w[, c]), in one OpenCV call where
    that gives the same pixels: an area shrink by a whole factor that divides the tile's
    sides averages disjoint factor x factor blocks, so on the tiles stacked into one tall
    image no block crosses two tiles (n calls on small tiles cost more in call overhead
    than in arithmetic). Otherwise tile by tile."""
    n, h, w = tiles.shape[:3]
    if factor == 1:
        return tiles
    if n == 0:
        return np.zeros((0, max(1, round(h / factor)), max(1, round(w / factor)),
                         *tiles.shape[3:]), tiles.dtype)
    if factor != int(factor) or h % factor or w % factor:
        return np.stack([shrink(tile, factor) for tile in tiles])
    factor = int(factor)
    tall = np.ascontiguousarray(tiles).reshape(n * h, w, *tiles.shape[3:])
    small = cv2.resize(tall, (w // factor, n * h // factor), interpolation=cv2.INTER_AREA)
    return small.reshape(n, h // factor, w // factor, *tiles.shape[3:])


def _grow_tiles(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """:func:`grow` of each bool mask of a batch (n, H, W) to (n, *shape). A nearest
    resize by a power of two repeats each pixel into a block, which numpy does on the
    whole batch at once; other factors are resized tile by tile."""
    n, h, w = masks.shape
    if (h, w) == tuple(shape):
        return masks
    if not masks.any():  # the usual batch: np.zeros maps zero pages, it writes nothing
        return np.zeros((n, *shape), bool)
    fy, fx = shape[0] // max(h, 1), shape[1] // max(w, 1)
    if fy == fx and (fy & (fy - 1)) == 0 and fy * h == shape[0] and fx * w == shape[1]:
        return np.broadcast_to(masks[:, :, None, :, None], (n, h, fy, w, fx)).reshape(
            n, *shape)
    return np.stack([grow(mask, shape) for mask in masks])


def _ink_small(tiles: np.ndarray, mpp: float | None) -> np.ndarray:
    """The ink test of each tile of a uint8 batch at :data:`ANALYSIS_MPP`: bool (n, H, W).
    One shrink, one box filter (:func:`_blur_tiles`: no window crosses two tiles) and one
    table read for the whole batch."""
    factor = shrink_factor(mpp)
    k = window_px((mpp or FALLBACK_MPP) * factor, WINDOW_UM)
    small = _shrink_tiles(tiles, factor)
    if k > 1:
        small = _blur_tiles(small, k)
    return rgb_lookup(ink_lut(), small)


def _blur_tiles(tiles: np.ndarray, k: int) -> np.ndarray:
    """``cv2.blur`` (k x k, BORDER_REFLECT) of each tile of a batch (n, h, w[, c]) in one
    call: each tile padded with its own reflection (numpy's ``symmetric`` is OpenCV's
    REFLECT), the padded tiles stacked, blurred, and their insides cut out. A pixel's
    value does not depend on where its tile sits in the stack: on uint8 the box filter
    sums whole numbers; on float32 it keeps running sums in float64, exact for the OD
    norms here (a float32 value carries 24 bits; all of them together span well under
    float64's 53), so the sums, and the one scaling after them, are the same."""
    n, h, w = tiles.shape[:3]
    r = k // 2
    if r >= min(h, w):  # a window wider than the tile: reflected more than once
        return np.stack([cv2.blur(t, (k, k), borderType=cv2.BORDER_REFLECT) for t in tiles])
    pad = ((0, 0), (r, r), (r, r)) + ((0, 0),) * (tiles.ndim - 3)
    padded = np.pad(tiles, pad, mode="symmetric")
    tall = padded.reshape(n * (h + 2 * r), w + 2 * r, *tiles.shape[3:])
    smooth = cv2.blur(tall, (k, k)).reshape(padded.shape)
    return np.ascontiguousarray(smooth[:, r:r + h, r:r + w])


def pen_masks(tiles: np.ndarray, mpp: float | None = None) -> np.ndarray:
    """:func:`pen_mask` of each tile of a uint8 batch (n, h, w, 3): bool (n, h, w), with
    the same pixels, shrunk and grown for the whole batch at once."""
    tiles = np.asarray(tiles)
    if len(tiles) == 0:
        return np.zeros(tiles.shape[:3], bool)
    return _grow_tiles(_ink_small(tiles, mpp), (tiles.shape[1], tiles.shape[2]))


def _focus_measures(tiles: np.ndarray, mpp: float | None) -> np.ndarray:
    """:func:`focus_measure` of each tile of a uint8 batch (n, h, w, 3): float64 (n,),
    the same values. The shrink and grey conversion run on the whole batch; the
    Laplacian of whole grey levels is a whole number, so it is computed exactly in int16
    with the reflect-101 border OpenCV uses; the variances are numpy's float32 ones."""
    n = len(tiles)
    mpp = mpp or FALLBACK_MPP
    if mpp > FOCUS_MAX_MPP:
        return np.full(n, np.nan)
    if n == 0:
        return np.zeros(0)
    if mpp < 0.9 * FOCUS_MPP:
        factor = FOCUS_MPP / mpp
        if abs(factor - round(factor)) < 0.1:
            factor = round(factor)
        size = (max(3, round(tiles.shape[2] / factor)), max(3, round(tiles.shape[1] / factor)))
        if size == (tiles.shape[2] / factor, tiles.shape[1] / factor):
            tiles = _shrink_tiles(tiles, factor)
        else:
            tiles = np.stack([cv2.resize(t, size, interpolation=cv2.INTER_AREA)
                              for t in tiles])
    h, w = tiles.shape[1:3]
    grey = cv2.cvtColor(np.ascontiguousarray(tiles).reshape(n * h, w, 3),
                        cv2.COLOR_RGB2GRAY).reshape(n, h, w)
    g = np.pad(grey.astype(np.int16), ((0, 0), (1, 1), (1, 1)), mode="reflect")
    laplacian = (g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:]
                 - 4 * g[:, 1:-1, 1:-1]).astype(np.float32)
    grey = grey.astype(np.float32)
    # float64 from the variances on, as focus_measure's numpy scalars are.
    return (laplacian.var(axis=(1, 2)).astype(np.float64)
            / (grey.var(axis=(1, 2)).astype(np.float64) + 25.0))


def blurry_tiles(tiles: np.ndarray, mpp: float | None, judged: np.ndarray) -> np.ndarray:
    """1.0 for each ``judged`` tile (bool (n,)) of a uint8 batch (n, h, w, 3) of ``mpp``
    um/px that is out of focus (:func:`focus_measure` below :data:`BLUR_THRESHOLD`),
    else 0.0: float64 (n,). Only the judged tiles are measured."""
    out = np.zeros(len(tiles))
    which = np.flatnonzero(judged)
    if len(which):
        some = tiles if len(which) == len(tiles) else np.asarray(tiles)[which]
        out[which] = (_focus_measures(some, mpp) < BLUR_THRESHOLD).astype(float)
    return out
