"""Artefact detection on RGB images: pen ink, out-of-focus regions and tissue folds.

Everything is measured in optical density (OD, ``-log10(I / 255)`` per channel), where
stains add: a pixel's OD vector is the sum of its stains' OD vectors times their amounts.
H&E tissue therefore lies in the wedge spanned by the haematoxylin and eosin directions;
marker ink does not, because inks absorb other wavelengths (green ink absorbs red, red ink
absorbs green *and* blue, black ink absorbs all three alike). So instead of a list of pen
colours, a colour is described by where its OD direction falls relative to the H&E plane:

* ``phi``: its angle within the H&E plane, from haematoxylin (0 degrees) toward eosin
  (about 22 degrees); H&E mixtures lie between, with a margin for stain variation.
* ``psi``: its angle out of that plane; H&E has almost none, grey/black ink has a lot.

Single pixels of dense nuclei or red blood cells stray out of the wedge, pen strokes are
large and uniform; so the decision is made on the colour averaged over a ~16 um window
(a box filter), whose statistics are those of tissue *regions*, not of single pixels.
The limits come from the bundled real slide (smoothed tissue: phi -26 .. 23 degrees, psi
-3.5 .. 12.4 degrees, 0th to 100th percentile), widened by a few degrees.

The rule is compiled once into a lookup table over all 2**24 RGB colours, like the tissue
test (:mod:`histotile.tiling.tissue`): a pen mask costs one box filter and one table
read per pixel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

# Macenko et al. (2009) reference stain OD directions (as used by torchstain and
# TIAToolbox): closer to real scans than Ruifrok-Johnston's, which describe pure stains.
H_REF = np.array([0.5626, 0.7201, 0.4062])
E_REF = np.array([0.2159, 0.8012, 0.5581])

INK_LIMITS = (
    # (from OD norm, phi range, psi range): H&E regions of at least this density keep
    # within these angles (degrees); outside them a region is ink. Denser H&E regions
    # keep closer to the stain directions (smoothed tissue of the bundled slide, phi:
    # -20.7 .. 23 at OD 0.2-0.5, -15.4 .. 23.7 at 0.5-0.8, -3.9 .. 10.4 from 1), while
    # ink keeps its own direction, over tissue too: blue ink transmits more green than
    # red light, haematoxylin the reverse (phi < 0); red ink absorbs blue light as well
    # (phi beyond eosin); black and green ink absorb blue light too (psi > 0). Negative
    # psi (bluish purple) is wide: stains vary there from lab to lab.
    (0.2, (-30.0, 27.0), (-12.0, 15.0)),
    (0.5, (-16.5, 27.0), (-12.0, 13.0)),
    (1.0, (-8.0, 16.0), (-12.0, 7.0)),
)
GLASS_OD = 0.2
"""Below this OD norm a region is glass (no ink or tissue to judge)."""
WINDOW_UM = 16.0
"""Side of the averaging window of the pen test, in microns (larger than a nucleus)."""
FOLD_FACTOR = 1.6
"""A fold is tissue at least this many times denser (OD) than the image's median tissue:
a fold doubles the section thickness (and its OD), less the natural spread of density."""
FOLD_MIN_OD = 0.9
"""... and at least this dense, so a faint section with a normal spot has no fold."""
FOLD_MIN_UM = 24.0
"""Folds narrower than this (microns) are dropped by an opening: dense nuclei clusters.
Density alone cannot tell a fold from naturally dense tissue (the bundled slide's
crushed keratin bands, 2 % of it, are as dense as a doubled section): folds are flagged
for review, and only tiles mostly fold are dropped."""
FOCUS_MPP = 1.0
"""Resolution (um/px) at which focus is measured, so the measure does not depend on the
scan's magnification (a 40x tile is shrunk to it; coarser images are measured as they
are, up to :data:`FOCUS_MAX_MPP`)."""
FOCUS_MAX_MPP = 2.0
"""Coarser than this, detail of a few microns is gone: blur is not measured."""
BLUR_THRESHOLD = 0.08
"""Focus measure (see :func:`focus_measure`) below which tissue is out of focus. Sharp
tissue tiles of the bundled slide score 0.26-1.7; blurred by a 1-um Gaussian 0.02-0.14."""
BLUR_BLOCK_UM = 128.0
"""Side of the blocks of the blur mask, in microns."""
_FALLBACK_MPP = 0.5
ANALYSIS_MPP = 2.0
"""Ink and folds are judged at about this resolution (um/px): both are averaged over
16 um or more, so finer pixels add cost, not information (a 0.5-um tile is shrunk 4x
before the test and the mask brought back to its pixels)."""

ARTEFACTS = ("pen", "blur", "fold")
"""The artefact kinds :func:`artefact_masks` returns, in drawing order."""


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Orthonormal basis: haematoxylin, the in-plane direction toward eosin, the normal."""
    h = _unit(H_REF)
    e = _unit(E_REF - (E_REF @ h) * h)
    return h, e, np.cross(h, e)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """OD (float32, same shape) of uint8 RGB pixels: ``-log10(max(I, 1) / 255)``, via a
    256-entry table (no per-pixel logarithm)."""
    table = (-np.log10(np.maximum(np.arange(256), 1) / 255.0)).astype(np.float32)
    return table[np.asarray(rgb)]


def _ink_rule(rgb: np.ndarray) -> np.ndarray:
    """The ink test for uint8 RGB colours (..., 3) that are region averages: True where
    the colour is ink (see the module docstring). The angles are not computed: phi
    outside (a, b) is ``y < x tan(a)`` or ``y > x tan(b)`` (x, the haematoxylin
    component, is positive for any colour with OD), psi outside (c, d) is ``z < |od|
    sin(c)`` or ``z > |od| sin(d)``, in float32: twice as fast as arctan2 and arcsin in
    float64 with the same table over all 2**24 colours (a test compares them)."""
    od = optical_density(rgb)
    h, e, n = (v.astype(np.float32) for v in _frame())
    x, y, z = od @ h, od @ e, od @ n
    norm = np.sqrt(np.einsum("...i,...i->...", od, od))
    ink = np.zeros(norm.shape, dtype=bool)
    for low, phi, psi in INK_LIMITS:
        tan = np.tan(np.radians(phi)).astype(np.float32)
        sin = np.sin(np.radians(psi)).astype(np.float32)
        ink |= (norm >= np.float32(low)) & ((y < x * tan[0]) | (y > x * tan[1])
                                            | (z < norm * sin[0]) | (z > norm * sin[1]))
    return ink


@functools.lru_cache(maxsize=1)
def ink_lut() -> np.ndarray:
    """The ink test as a bool table over all RGB colours (``R + G*256 + B*65536``; 16
    MiB, built once per process in about a second)."""
    table = np.empty(1 << 24, dtype=bool)
    chunk = 1 << 20
    for start in range(0, 1 << 24, chunk):
        code = np.arange(start, start + chunk, dtype=np.uint32)
        rgb = np.empty((chunk, 3), np.uint8)
        rgb[:, 0], rgb[:, 1], rgb[:, 2] = code & 255, (code >> 8) & 255, code >> 16
        table[start:start + chunk] = _ink_rule(rgb)
    table.setflags(write=False)
    return table


def _lookup(table: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """``table`` at each pixel of uint8 RGB (..., 3): each pixel's 3 bytes (and the next
    pixel's first, masked off) read as one little-endian uint32, as the tissue test does:
    no per-channel arithmetic."""
    rgb = np.ascontiguousarray(rgb)
    shape = rgb.shape[:-1]
    count = int(np.prod(shape))
    out = np.empty(count, dtype=table.dtype)
    if count == 0:
        return out.reshape(shape)
    flat = rgb.reshape(-1)
    if count > 1:
        words = np.ndarray((count - 1,), dtype="<u4", buffer=flat, offset=0, strides=(3,))
        np.take(table, words & np.uint32(0xFFFFFF), out=out[:-1])
    last = flat[-3:].astype(np.uint32)
    out[-1] = table[int(last[0] | (last[1] << 8) | (last[2] << 16))]
    return out.reshape(shape)


def _window(mpp: float | None, um: float) -> int:
    return int(min(max(1, 2 * round(um / (mpp or _FALLBACK_MPP) / 2) + 1), 255))


def _check(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected one RGB uint8 image (h, w, 3), got {image.shape} "
                         f"{image.dtype}")
    return np.ascontiguousarray(image)


def _shrink_factor(mpp: float | None) -> int:
    return max(1, int(ANALYSIS_MPP // (mpp or _FALLBACK_MPP)))


def _coarse(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w / factor)), max(1, round(h / factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _full(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if mask.shape == tuple(shape[:2]):
        return mask
    return cv2.resize(mask.view(np.uint8), (shape[1], shape[0]),
                      interpolation=cv2.INTER_NEAREST).view(bool)


def pen_mask(image: np.ndarray, mpp: float | None = None) -> np.ndarray:
    """Bool (h, w) mask of marker ink of any colour on an RGB uint8 image whose pixels are
    ``mpp`` microns (None: 0.5). The colour is averaged over :data:`WINDOW_UM` first
    (box filter, in transmission: cheap on uint8 and close to the OD mean for
    classification), then tested against the ink table, at :data:`ANALYSIS_MPP`."""
    image = _check(image)
    factor = _shrink_factor(mpp)
    small = _coarse(image, factor)
    k = _window((mpp or _FALLBACK_MPP) * factor, WINDOW_UM)
    smooth = cv2.blur(small, (k, k), borderType=cv2.BORDER_REFLECT) if k > 1 else small
    return _full(_lookup(ink_lut(), smooth), image.shape)


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
    return _lookup(ink_lut(), small)


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


def fold_mask(image: np.ndarray, mpp: float | None = None,
              pen: np.ndarray | None = None, tissue_od: float | None = None) -> np.ndarray:
    """Bool (h, w) mask of tissue folds: regions at least :data:`FOLD_FACTOR` times as
    dense (OD norm, averaged over :data:`WINDOW_UM`) as typical tissue, at least
    :data:`FOLD_MIN_OD`, not ink, and wider than :data:`FOLD_MIN_UM`. Typical tissue is
    ``tissue_od`` (an OD norm measured at the same resolution) or this image's median."""
    image = _check(image)
    if pen is None:
        pen = pen_mask(image, mpp)
    od = optical_density(image)
    norm = np.sqrt((od * od).sum(axis=-1))
    # Judged at ANALYSIS_MPP: the OD (not the colour, whose average would be paler) is
    # averaged down, and the mask brought back to the image's pixels at the end.
    factor = _shrink_factor(mpp)
    norm = _coarse(norm, factor)
    pen = _coarse(pen.view(np.uint8), factor) > 0 if factor > 1 else pen
    mpp = (mpp or _FALLBACK_MPP) * factor
    tissue = cv2.blur(norm, (_window(mpp, WINDOW_UM),) * 2,
                      borderType=cv2.BORDER_REFLECT) >= GLASS_OD
    # Density averaged like the pen test's colour: single dark nuclei average out with
    # the paler tissue around them; the opening below drops clusters of them.
    k = _window(mpp, WINDOW_UM)
    norm = cv2.blur(norm, (k, k), borderType=cv2.BORDER_REFLECT)
    tissue &= ~pen
    if not tissue.any():
        return np.zeros(image.shape[:2], dtype=bool)
    typical = float(np.median(norm[tissue])) if tissue_od is None else tissue_od
    level = max(FOLD_FACTOR * typical, FOLD_MIN_OD)
    dense = ((norm >= level) & tissue).view(np.uint8)
    if not dense.any():
        return np.zeros(image.shape[:2], dtype=bool)
    side = _window(mpp, FOLD_MIN_UM)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    return _full(cv2.morphologyEx(dense, cv2.MORPH_OPEN, kernel).view(bool), image.shape)


def focus_measure(image: np.ndarray, mpp: float | None = None) -> float:
    """Sharpness of an RGB uint8 image: variance of the Laplacian of the grey image at
    :data:`FOCUS_MPP` um/px, divided by the grey variance (+25, for near-blank images),
    so that neither magnification nor stain intensity sets the score. Lower is
    blurrier; NaN when the image is coarser than :data:`FOCUS_MAX_MPP`."""
    image = _check(image)
    mpp = mpp or _FALLBACK_MPP
    if mpp > FOCUS_MAX_MPP:
        return float("nan")
    if mpp < 0.9 * FOCUS_MPP:  # a resize by nearly 1 would smooth: measure as is
        # Shrunk as RGB uint8, as a scanner's pyramid level is: a 40x tile then scores
        # like the same tissue scanned at 20x.
        # A shrink by a near-whole factor is made whole (2 for 0.499 um/px): a fractional
        # area resize smooths more than a plain box average and would lower the score.
        factor = FOCUS_MPP / mpp
        if abs(factor - round(factor)) < 0.1:
            factor = round(factor)
        size = (max(3, round(image.shape[1] / factor)), max(3, round(image.shape[0] / factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    laplacian = cv2.Laplacian(grey, cv2.CV_32F)
    return float(laplacian.var() / (grey.var() + 25.0))


def blur_mask(image: np.ndarray, mpp: float | None = None,
              threshold: float = BLUR_THRESHOLD) -> np.ndarray:
    """Bool (h, w) mask of out-of-focus tissue: blocks of :data:`BLUR_BLOCK_UM` that are
    mostly tissue (OD >= :data:`GLASS_OD`) and whose :func:`focus_measure` is below
    ``threshold``. All False where the image is too coarse to judge focus."""
    image = _check(image)
    out = np.zeros(image.shape[:2], dtype=bool)
    if (mpp or _FALLBACK_MPP) > FOCUS_MAX_MPP:
        return out
    side = max(16, round(BLUR_BLOCK_UM / (mpp or _FALLBACK_MPP)))
    od = optical_density(image).sum(axis=-1)
    for y in range(0, image.shape[0], side):
        for x in range(0, image.shape[1], side):
            if (od[y:y + side, x:x + side] >= GLASS_OD).mean() < 0.5:
                continue
            if focus_measure(image[y:y + side, x:x + side], mpp) < threshold:
                out[y:y + side, x:x + side] = True
    return out


def artefact_masks(image: np.ndarray, mpp: float | None = None) -> dict[str, np.ndarray]:
    """Bool (h, w) masks of each artefact of :data:`ARTEFACTS` on an RGB uint8 image
    whose pixels are ``mpp`` microns (None: 0.5): ``pen`` (marker ink of any colour),
    ``blur`` (out-of-focus tissue; empty on images coarser than 2 um/px), ``fold``
    (doubled tissue). Bubbles and coverslip edges are not detected."""
    image = _check(image)
    pen = pen_mask(image, mpp)
    return {"pen": pen, "blur": blur_mask(image, mpp), "fold": fold_mask(image, mpp, pen)}


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
        blurry[which] = (_focus_measures(some, mpp) < BLUR_THRESHOLD).astype(float)
    return TileArtefacts(share, fold, blurry)
