"""Artefact checks on batches of tiles, as tiling runs them: the same figures as the
single-image functions of :mod:`histotile.tiling.artefacts` (tests compare them pixel for
pixel), computed for a whole batch at once. Each step says why batching it gives the same
pixels: one shrink, one box filter and one table read per batch instead of one per tile.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from histotile.tiling._rgb_table import rgb_lookup
from histotile.tiling.artefacts import (  # the rules and their single-image helpers
    _FALLBACK_MPP,
    BLUR_THRESHOLD,
    FOCUS_MAX_MPP,
    FOCUS_MPP,
    FOLD_FACTOR,
    FOLD_MIN_OD,
    FOLD_MIN_UM,
    GLASS_OD,
    WINDOW_UM,
    _coarse,
    _full,
    _shrink_factor,
    _window,
    ink_lut,
    optical_density,
)


def _shrink_tiles(tiles: np.ndarray, factor: float) -> np.ndarray:
    """:func:`_coarse` of each tile of a batch (n, h, w[, c]), in one OpenCV call where
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
        return np.stack([_coarse(tile, factor) for tile in tiles])
    factor = int(factor)
    tall = np.ascontiguousarray(tiles).reshape(n * h, w, *tiles.shape[3:])
    small = cv2.resize(tall, (w // factor, n * h // factor), interpolation=cv2.INTER_AREA)
    return small.reshape(n, h // factor, w // factor, *tiles.shape[3:])


def _grow_tiles(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """:func:`_full` of each bool mask of a batch (n, H, W) to (n, *shape). A nearest
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
    return np.stack([_full(mask, shape) for mask in masks])


def _ink_small(tiles: np.ndarray, mpp: float | None) -> np.ndarray:
    """The ink test of each tile of a uint8 batch at :data:`ANALYSIS_MPP`: bool (n, H, W).
    One shrink, one box filter (:func:`_blur_tiles`: no window crosses two tiles) and one
    table read for the whole batch."""
    factor = _shrink_factor(mpp)
    k = _window((mpp or _FALLBACK_MPP) * factor, WINDOW_UM)
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
    return _grow_tiles(_ink_small(tiles, mpp), tiles.shape[1:3])


@dataclass
class TileArtefacts:
    """Per-tile artefact figures of a batch (each float64 (n,)): ``pen`` and ``fold`` are
    covered fractions (0-1); ``blurry`` is 1.0 for an out-of-focus tissue tile, else 0;
    ``artefact`` is the tile's artefact fraction, the largest of the three."""

    pen: np.ndarray
    fold: np.ndarray
    blurry: np.ndarray

    @property
    def artefact(self) -> np.ndarray:
        return np.maximum(np.maximum(self.pen, self.fold), self.blurry)


def _od_norms(tiles: np.ndarray) -> np.ndarray:
    """OD norm (float32 (..., h, w)) of uint8 RGB pixels, the same values as
    ``sqrt((optical_density(x) ** 2).sum(-1))``: each channel's squared OD read from a
    256-entry float32 table by ``cv2.LUT`` on the split planes, then added in place in
    the order numpy's sum adds them (1.5x faster than one LUT on the interleaved pixels,
    4x faster than the float OD array and its reduction over a 3-long axis; no 2**24
    table to hold)."""
    od = optical_density(np.arange(256, dtype=np.uint8))
    squared = od * od
    red, green, blue = cv2.split(np.ascontiguousarray(tiles).reshape(-1, tiles.shape[-2], 3))
    out = cv2.LUT(red, squared)
    out += cv2.LUT(green, squared)
    out += cv2.LUT(blue, squared)
    return np.sqrt(out, out=out).reshape(tiles.shape[:-1])


def _fold_fractions(tiles: np.ndarray, mpp: float | None, pen: np.ndarray,
                    tissue_od: float | None) -> np.ndarray:
    """Mean of :func:`fold_mask` of each tile of a uint8 batch (n, h, w, 3), given their
    full-size pen masks: float64 (n,). The same steps as :func:`fold_mask` on the whole
    batch, except the median and the opening, which only tiles that can hold a fold
    need: a fold is at least :data:`FOLD_MIN_OD` dense, so a tile whose smoothed tissue
    stays below it has none whatever its median (most tiles)."""
    n = len(tiles)
    out = np.zeros(n)
    if n == 0:
        return out
    factor = _shrink_factor(mpp)
    norm = _shrink_tiles(_od_norms(tiles), factor)
    if factor == 1:
        ink = pen
    else:  # shrunk only for the tiles with some ink (few)
        ink = np.zeros((n, *norm.shape[1:]), bool)
        inked = np.flatnonzero(pen.reshape(n, -1).any(axis=1))
        ink[inked] = _shrink_tiles(pen[inked].view(np.uint8), factor) > 0
    step = (mpp or _FALLBACK_MPP) * factor
    k = _window(step, WINDOW_UM)
    norm = _blur_tiles(norm, k)
    tissue = (norm >= GLASS_OD) & ~ink
    peak = np.where(tissue, norm, 0).reshape(n, -1).max(axis=1)
    side = _window(step, FOLD_MIN_UM)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    for i in np.flatnonzero(peak >= max(FOLD_FACTOR * (tissue_od or 0.0), FOLD_MIN_OD)):
        typical = float(np.median(norm[i][tissue[i]])) if tissue_od is None else tissue_od
        dense = ((norm[i] >= max(FOLD_FACTOR * typical, FOLD_MIN_OD)) & tissue[i])
        if dense.any():
            opened = cv2.morphologyEx(dense.view(np.uint8), cv2.MORPH_OPEN, kernel)
            out[i] = _full(opened.view(bool), tiles.shape[1:3]).mean()
    return out


def _focus_measures(tiles: np.ndarray, mpp: float | None) -> np.ndarray:
    """:func:`focus_measure` of each tile of a uint8 batch (n, h, w, 3): float64 (n,),
    the same values. The shrink and grey conversion run on the whole batch; the
    Laplacian of whole grey levels is a whole number, so it is computed exactly in int16
    with the reflect-101 border OpenCV uses; the variances are numpy's float32 ones."""
    n = len(tiles)
    mpp = mpp or _FALLBACK_MPP
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


def tile_artefacts(tiles: np.ndarray, mpp: float | None = None,
                   tissue: np.ndarray | None = None, min_tissue: float = 0.25,
                   tissue_od: float | None = None,
                   pen: np.ndarray | None = None) -> TileArtefacts:
    """:class:`TileArtefacts` of a uint8 batch (n, h, w, 3) of ``mpp`` um/px tiles. Focus
    is judged only on tiles whose ``tissue`` fraction (given) reaches ``min_tissue``:
    glass has no focus to measure, nor folds. ``tissue_od``: the typical tissue
    density against which folds are judged (None: each tile's own median). ``pen``: the
    tiles' :func:`pen_masks` when already computed. The same figures as
    :func:`fold_mask` and :func:`focus_measure` tile by tile, computed on the batch."""
    tiles = np.asarray(tiles)
    n = len(tiles)
    ink = pen_masks(tiles, mpp) if pen is None else np.asarray(pen)
    # A bool count divided by the size: mean()'s value, without its float64 cast.
    share = np.count_nonzero(ink.reshape(n, -1), axis=1) / max(1, ink[0].size) if n else np.zeros(0)
    fold, blurry = np.zeros(n), np.zeros(n)
    judged = np.ones(n, bool) if tissue is None else np.asarray(tissue) >= min_tissue
    which = np.flatnonzero(judged)
    if len(which) == 0:
        return TileArtefacts(share, fold, blurry)
    some = tiles if len(which) == n else tiles[which]
    fold[which] = _fold_fractions(some, mpp, ink if len(which) == n else ink[which],
                                  tissue_od)
    if tissue is not None:
        blurry = blurry_tiles(tiles, mpp, judged)
    return TileArtefacts(share, fold, blurry)


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
