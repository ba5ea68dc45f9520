"""Tissue detection: which pixels are stained tissue, the tissue fraction of tiles, and
a low-resolution tissue mask of a whole slide.

The pixel test works on colour, because what must be told apart is colour: H&E tissue is
pink to purple (eosin, haematoxylin); glass is near-white and unsaturated; dust, the edge
of the coverslip, black ink and shadows are grey or black (unsaturated); green, blue and
red pen marks are saturated colours that no H&E stain produces. A pixel is tissue when

* its chroma (max - min of R, G, B) reaches the threshold (adaptive per slide, by Otsu
  on the low-resolution view, clamped to a sane range so blank glass stays blank and faint
  tissue is kept), and
* it is not black (V < 40), and
* its hue is not an ink hue: green/cyan/yellow-green (60-190 degrees) with some
  saturation; saturated bright blue (190-240 degrees, S >= 0.5, V >= 100; darker or duller
  blues are haematoxylin); saturated bright red (350-12 degrees, S >= 0.7, V >= 100;
  eosin and red blood cells are less saturated).

The rule is compiled once into a 2**24-entry lookup table over RGB, so testing a pixel
is a single table read (about 3 ns per pixel), whatever the rule.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from histotile.tiling._boxes import box_sums, integral_image
from histotile.tiling._rgb_table import rgb_lookup
from histotile.wsi.decimate import overview

DEFAULT_THRESHOLD = 20.0
"""Chroma threshold of :func:`tissue_fraction` when none is given (0-255 scale)."""
THRESHOLD_RANGE = (12.0, 30.0)
"""Adaptive (Otsu) thresholds are clamped to this range: below it, JPEG noise on glass
would count as tissue; above it, faint tissue would be lost."""
_BLACK_V = 40
_FALLBACK_MPP = 0.5  # slides without resolution metadata are taken as 20x for morphology


def _rule(rgb: np.ndarray) -> np.ndarray:
    """The tissue test written out (vectorised) for an (h, w, 3) uint8 RGB image: the
    pixel's chroma (1-255) where its colour can be tissue, 0 where it cannot; a pixel is
    tissue when this value reaches the chroma threshold."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
    r, g, b = cv2.split(rgb)
    chroma = cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))
    # Bands in OpenCV's full-range HSV: hue in 1/256 turns (60 deg -> 42.7), S and V 0-255.
    not_tissue = [
        ((43, 64, 0), (135, 255, 255)),  # green, cyan, yellow-green: 60-190 deg, S >= .25
        ((136, 128, 100), (170, 255, 255)),  # bright saturated blue: 190-240 deg, S >= .5
        ((249, 179, 100), (255, 255, 255)),  # bright saturated red: 350-360 deg, S >= .7
        ((0, 179, 100), (8, 255, 255)),  # ... and 0-12 deg
        ((0, 0, 0), (255, 255, _BLACK_V - 1)),  # black
    ]
    ink = np.zeros(rgb.shape[:2], np.uint8)
    for low, high in not_tissue:
        ink = cv2.bitwise_or(ink, cv2.inRange(hsv, low, high))
    return cv2.bitwise_and(cv2.max(chroma, 1), cv2.bitwise_not(ink))


@functools.lru_cache(maxsize=1)
def tissue_lut() -> np.ndarray:
    """The pixel test as a uint8 table over all RGB colours, indexed by
    ``R + G*256 + B*65536``: the colour's chroma where it can be tissue, else 0 (16 MiB,
    built once per process, about a second)."""
    table = np.empty(1 << 24, dtype=np.uint8)
    chunk = 1 << 18
    for start in range(0, 1 << 24, chunk):
        code = np.arange(start, start + chunk, dtype=np.uint32)
        rgb = np.empty((chunk, 3), np.uint8)
        rgb[:, 0], rgb[:, 1], rgb[:, 2] = code & 255, (code >> 8) & 255, code >> 16
        table[start:start + chunk] = _rule(rgb.reshape(512, 512, 3)).reshape(-1)
    table.setflags(write=False)
    return table


def _level(threshold: float | None) -> int:
    value = DEFAULT_THRESHOLD if threshold is None else threshold
    return int(min(max(math.ceil(value), 1), 255))


@functools.lru_cache(maxsize=4)
def _bool_lut(level: int) -> np.ndarray:
    """The table thresholded at one chroma level (bool, 16 MiB): one lookup per pixel."""
    table = tissue_lut() >= level
    table.setflags(write=False)
    return table


def tissue_pixels(rgb: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Bool mask (same leading shape as ``rgb``) of the tissue pixels of an RGB uint8
    array of shape (..., 3). ``threshold`` is the chroma threshold (0-255; None = the
    default, 20). Ink, pen marks, dust and glass are not tissue."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim < 2 or rgb.shape[-1] != 3:
        raise ValueError(f"expected RGB uint8 pixels of shape (..., 3), got {rgb.shape} "
                         f"{rgb.dtype}")
    if rgb.size == 0:
        return np.zeros(rgb.shape[:-1], dtype=bool)
    return rgb_lookup(_bool_lut(_level(threshold)), rgb)


def tissue_fraction(tile_rgb: np.ndarray, threshold: float | None = None,
                    mpp: float | None = None) -> float:
    """Fraction (0-1) of a tile's pixels that are tissue. ``tile_rgb``: RGB uint8
    (h, w, 3) of ``mpp`` um/px (None: 0.5). Glass, ink and pen marks (including ink
    over tissue, see :func:`~histotile.tiling.artefacts.pen_mask`), dust and black count
    as background."""
    tile_rgb = np.asarray(tile_rgb)
    if tile_rgb.ndim != 3:
        raise ValueError(f"expected one RGB tile (h, w, 3), got shape {tile_rgb.shape}")
    return float(tissue_fractions(tile_rgb[None], threshold, mpp)[0])


def tissue_fractions(tiles: np.ndarray, threshold: float | None = None,
                     mpp: float | None = None, pen: np.ndarray | None = None,
                     inked: np.ndarray | None = None) -> np.ndarray:
    """Vectorised :func:`tissue_fraction` for a batch (n, h, w, 3) -> float64 (n,).
    ``pen``: the tiles' ink masks (bool (n, h, w)) when already computed; with
    ``inked`` (positions into the batch), the masks of those tiles only (k, h, w), the
    others having no ink."""
    from histotile.tiling.artefact_batches import pen_masks

    tiles = np.asarray(tiles)
    if tiles.ndim != 4:
        raise ValueError(f"expected a batch of RGB tiles (n, h, w, 3), got {tiles.shape}")
    if len(tiles) == 0:
        return np.zeros(0)
    mask = tissue_pixels(tiles, threshold).reshape(len(tiles), -1)
    if inked is None:
        pen = (pen_masks(tiles, mpp) if pen is None else np.asarray(pen)).reshape(len(tiles), -1)
        # Ink is taken out only of the tiles that have some (few): a pass over the bool
        # ink masks is cheaper than writing the whole batch's mask again.
        inked = np.flatnonzero(pen.any(axis=1))
        pen = pen[inked]
    if len(inked):
        mask[inked] &= ~np.asarray(pen).reshape(len(inked), -1)
    return np.count_nonzero(mask, axis=1) / mask.shape[1]


GLASS_MARGIN = 12.0
"""Chroma above the glass's own (95th percentile of the pixels Otsu calls background)
from which a pixel can be tissue."""


def adaptive_threshold(rgb: np.ndarray) -> float:
    """The chroma threshold for one slide, from a low-resolution view: Otsu's threshold
    on chroma, lowered to :data:`GLASS_MARGIN` above the glass's chroma when that is
    lower (Otsu splits pale from dark tissue on strongly stained slides), clamped to
    :data:`THRESHOLD_RANGE`."""
    r, g, b = cv2.split(np.ascontiguousarray(rgb))
    chroma = cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))
    otsu, _ = cv2.threshold(chroma.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    glass = chroma[chroma < otsu]
    if glass.size:
        otsu = min(otsu, float(np.percentile(glass, 95)) + GLASS_MARGIN)
    low, high = THRESHOLD_RANGE
    return float(min(max(otsu, low), high))


@dataclass
class TissueMask:
    """A low-resolution tissue mask of a slide.

    Attributes:
        mask: bool (height, width), True on tissue.
        downsample: level-0 pixels per mask pixel.
        threshold: the chroma threshold the pixel test used (0-255).
        slide_dimensions: level-0 (width, height) of the slide.
    """

    mask: np.ndarray
    downsample: float
    threshold: float
    slide_dimensions: tuple[int, int]

    @functools.cached_property
    def _integral(self) -> np.ndarray:
        return integral_image(self.mask)

    @property
    def tissue_area_fraction(self) -> float:
        """Fraction of the slide area that is tissue."""
        return float(self.mask.mean())

    def fraction(self, xs: np.ndarray, ys: np.ndarray, width: float | np.ndarray,
                 height: float | np.ndarray | None = None) -> np.ndarray:
        """Tissue fraction (0-1, area-weighted) of level-0 boxes with top-left ``(xs,
        ys)`` and sides ``width`` x ``height`` (level-0 pixels; ``height`` defaults to
        ``width``). Parts of a box outside the slide count as background."""
        xs = np.asarray(xs, dtype=np.float64)
        ys = np.asarray(ys, dtype=np.float64)
        height = width if height is None else height
        width_arr = np.broadcast_to(np.asarray(width, dtype=np.float64), xs.shape)
        height_arr = np.broadcast_to(np.asarray(height, dtype=np.float64), xs.shape)
        ds = self.downsample
        sums = box_sums(self._integral, xs / ds, ys / ds, (xs + width_arr) / ds,
                        (ys + height_arr) / ds)
        return np.clip(sums / (width_arr * height_arr / ds**2), 0.0, 1.0)

    def touches(self, xs: np.ndarray, ys: np.ndarray, extent: int) -> np.ndarray:
        """bool (n,): whether each level-0 box (top-left ``(xs, ys)``, side ``extent``)
        touches the mask grown by one mask pixel (a margin for rounding): the tiles worth
        reading, since a tile touching no tissue at low resolution is background."""
        return self.dilated(1).fraction(xs, ys, extent) > 0

    def dilated(self, pixels: int = 1) -> TissueMask:
        """The mask grown by ``pixels`` mask pixels (a safety margin for rounding)."""
        kernel = np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)
        grown = cv2.dilate(self.mask.view(np.uint8), kernel).astype(bool)
        return TissueMask(grown, self.downsample, self.threshold, self.slide_dimensions)


MASK_MPP = 8.0
"""Default resolution of the tissue mask, microns per pixel."""
SNAP_BELOW = 0.98
"""A pyramid level whose downsample is at least this share of the wanted one is read as
the mask's view."""


def auto_mask_downsample(dimensions: tuple[int, int], mpp: float | None,
                         level_downsamples: list[float] | None = None) -> float:
    """Default mask downsample: about :data:`MASK_MPP` um per pixel, at most 4096 mask
    pixels on the longer side; snapped up to a stored pyramid level within 2x of that,
    so the low-resolution view is a plain read of one small level (or one within 2 %
    finer, :data:`SNAP_BELOW`)."""
    wanted = float(max(1.0, MASK_MPP / (mpp or _FALLBACK_MPP), max(dimensions) / 4096.0))
    for ds in sorted(level_downsamples or []):
        # A level a hair finer than wanted (scanners round level sizes) is taken as it
        # is: resizing it by a percent would blur the view's thin lines (bubble rims,
        # coverslip edges) for nothing.
        if SNAP_BELOW * wanted <= ds <= 2 * wanted:
            return float(ds)
    return wanted


def mask_from_rgb(rgb: np.ndarray, downsample: float, *, mpp: float | None,
                  threshold: float | None = None,
                  min_area_um2: float = 5_000.0) -> tuple[np.ndarray, float]:
    """Tissue mask of a low-resolution RGB view (``downsample`` level-0 px per pixel,
    level-0 ``mpp`` microns per pixel or None): pixel test, opening (drops thin lines such
    as a coverslip edge, and specks), closing (bridges small gaps), holes filled,
    components under ``min_area_um2`` dropped. Returns (mask, threshold used)."""
    used = adaptive_threshold(rgb) if threshold is None else float(threshold)
    mask = tissue_pixels(rgb, used).view(np.uint8)
    um_per_px = (mpp or _FALLBACK_MPP) * downsample

    def kernel(um: float) -> np.ndarray:
        side = max(3, 2 * round(um / um_per_px / 2) + 1)
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))

    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel(8.0))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel(48.0))
    mask = _fill_holes(mask)
    min_pixels = min_area_um2 / um_per_px**2
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count > 1:
        keep = np.zeros(count, dtype=bool)
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_pixels
        mask = keep[labels]
    return mask.astype(bool), used


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions not connected to the image border (uint8 0/1 in and out)."""
    h, w = mask.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = mask
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    out = mask.copy()
    out[holes] = 1
    return out


def slide_view(slide, downsample: float | None = None) -> tuple[np.ndarray, float]:
    """The low-resolution RGB view of ``slide`` the tissue mask and the artefact map are
    made from: ``(view, downsample)``, level-0 pixels per view pixel (None = automatic:
    about :data:`MASK_MPP` um per pixel, at most 4096 px on the longer side, snapped to
    a pyramid level). Read from the nearest pyramid level and streamed, so memory is
    bounded by the view's size; a slide with no level small enough to stream quickly (a
    giant single-level image) is sampled in a bounded number of windows instead
    (:func:`histotile.wsi.decimate.overview`), with a warning."""
    width0, height0 = slide.dimensions
    if downsample is None:
        downsample = auto_mask_downsample((width0, height0), slide.mpp,
                                          slide.level_downsamples)
    level = next((i for i, ds in enumerate(slide.level_downsamples)
                  if abs(ds - downsample) <= 1e-6 * ds), None)
    if level is not None:
        # A stored level: its own size (rounded per axis by the scanner), read from it.
        out_w, out_h = slide.level_dimensions[level]
        request = (out_w, out_h)
    else:
        out_w = max(1, round(width0 / downsample))
        out_h = max(1, round(height0 / downsample))
        request = (math.ceil(width0 / downsample), math.ceil(height0 / downsample))
    # Ask for a size whose largest axis ratio is the level's exact downsample, so that
    # the view is read from that level and not from the next larger one.
    factor = max(width0 / request[0], height0 / request[1])
    # Bounded even without a low level: a giant single-level image is sampled.
    view = overview(slide, (max(1, math.ceil(width0 / factor - 1e-9)),
                            max(1, math.ceil(height0 / factor - 1e-9))))
    if view.shape[:2] != (out_h, out_w):
        view = cv2.resize(view, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return view, float(downsample)


def detect_tissue(slide, *, downsample: float | None = None,
                  threshold: float | None = None,
                  min_area_um2: float = 5_000.0,
                  view: tuple[np.ndarray, float] | None = None) -> TissueMask:
    """Detect tissue on a low-resolution view of ``slide`` (a :class:`~histotile.wsi.Slide`).

    Args:
        slide: the open slide.
        downsample: level-0 pixels per mask pixel (None = automatic, see
            :func:`slide_view`).
        threshold: chroma threshold (0-255); None = adaptive (Otsu, clamped).
        min_area_um2: smallest tissue piece kept, in square microns.
        view: ``(view, downsample)`` of :func:`slide_view` when already read (then
            ``downsample`` is ignored).
    """
    pixels, downsample = slide_view(slide, downsample) if view is None else view
    # Mask pixel i covers level-0 [i * downsample, (i + 1) * downsample) on both axes, to
    # within half a mask pixel where the slide size is not a multiple of it.
    mask, used = mask_from_rgb(pixels, downsample, mpp=slide.mpp, threshold=threshold,
                               min_area_um2=min_area_um2)
    return TissueMask(mask, float(downsample), used, tuple(slide.dimensions))
