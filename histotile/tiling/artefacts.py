"""Artefact detection on RGB images: pen ink, out-of-focus regions and tissue folds (air
bubbles and coverslip edges: :mod:`histotile.tiling.mount_artefacts`).

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

import cv2
import numpy as np

from histotile.tiling._pixels import grow, rgb_uint8, shrink
from histotile.tiling._rgb_table import rgb_lookup

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
FALLBACK_MPP = 0.5
"""Microns per pixel taken for a slide without resolution metadata (20x)."""
ANALYSIS_MPP = 2.0
"""Ink and folds are judged at about this resolution (um/px): both are averaged over
16 um or more, so finer pixels add cost, not information (a 0.5-um tile is shrunk 4x
before the test and the mask brought back to its pixels)."""

ARTEFACTS = ("pen", "blur", "fold", "bubble", "edge")
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


def window_px(mpp: float | None, um: float) -> int:
    """An odd window side in pixels (1 to 255) spanning ``um`` microns at ``mpp`` microns per
    pixel."""
    return int(min(max(1, 2 * round(um / (mpp or FALLBACK_MPP) / 2) + 1), 255))


def shrink_factor(mpp: float | None) -> int:
    """The whole factor (at least 1) by which a level of ``mpp`` microns per pixel is shrunk
    towards ``ANALYSIS_MPP`` for the artefact checks."""
    return max(1, int(ANALYSIS_MPP // (mpp or FALLBACK_MPP)))


def pen_mask(image: np.ndarray, mpp: float | None = None) -> np.ndarray:
    """Bool (h, w) mask of marker ink of any colour on an RGB uint8 image whose pixels are
    ``mpp`` microns (None: 0.5). The colour is averaged over :data:`WINDOW_UM` first
    (box filter, in transmission: cheap on uint8 and close to the OD mean for
    classification), then tested against the ink table, at :data:`ANALYSIS_MPP`."""
    image = rgb_uint8(image)
    factor = shrink_factor(mpp)
    small = shrink(image, factor)
    k = window_px((mpp or FALLBACK_MPP) * factor, WINDOW_UM)
    smooth = cv2.blur(small, (k, k), borderType=cv2.BORDER_REFLECT) if k > 1 else small
    return grow(rgb_lookup(ink_lut(), smooth), image.shape)


def fold_mask(image: np.ndarray, mpp: float | None = None,
              pen: np.ndarray | None = None) -> np.ndarray:
    """Bool (h, w) mask of tissue folds: regions at least :data:`FOLD_FACTOR` times as
    dense (OD norm, averaged over :data:`WINDOW_UM`) as typical tissue, at least
    :data:`FOLD_MIN_OD`, not ink, and wider than :data:`FOLD_MIN_UM`. Typical tissue is
    this image's median tissue density (on a slide's view: the whole slide's)."""
    image = rgb_uint8(image)
    if pen is None:
        pen = pen_mask(image, mpp)
    od = optical_density(image)
    norm = np.sqrt((od * od).sum(axis=-1))
    # Judged at ANALYSIS_MPP: the OD (not the colour, whose average would be paler) is
    # averaged down, and the mask brought back to the image's pixels at the end.
    factor = shrink_factor(mpp)
    norm = shrink(norm, factor)
    pen = shrink(pen.view(np.uint8), factor) > 0 if factor > 1 else pen
    mpp = (mpp or FALLBACK_MPP) * factor
    tissue = cv2.blur(norm, (window_px(mpp, WINDOW_UM),) * 2,
                      borderType=cv2.BORDER_REFLECT) >= GLASS_OD
    # Density averaged like the pen test's colour: single dark nuclei average out with
    # the paler tissue around them; the opening below drops clusters of them.
    k = window_px(mpp, WINDOW_UM)
    norm = cv2.blur(norm, (k, k), borderType=cv2.BORDER_REFLECT)
    tissue &= ~pen
    if not tissue.any():
        return np.zeros(image.shape[:2], dtype=bool)
    typical = float(np.median(norm[tissue]))
    level = max(FOLD_FACTOR * typical, FOLD_MIN_OD)
    dense = ((norm >= level) & tissue).view(np.uint8)
    if not dense.any():
        return np.zeros(image.shape[:2], dtype=bool)
    side = window_px(mpp, FOLD_MIN_UM)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    return grow(cv2.morphologyEx(dense, cv2.MORPH_OPEN, kernel).view(bool), image.shape)


def focus_measure(image: np.ndarray, mpp: float | None = None) -> float:
    """Sharpness of an RGB uint8 image: variance of the Laplacian of the grey image at
    :data:`FOCUS_MPP` um/px, divided by the grey variance (+25, for near-blank images),
    so that neither magnification nor stain intensity sets the score. Lower is
    blurrier; NaN when the image is coarser than :data:`FOCUS_MAX_MPP`."""
    image = rgb_uint8(image)
    mpp = mpp or FALLBACK_MPP
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
    image = rgb_uint8(image)
    out = np.zeros(image.shape[:2], dtype=bool)
    if (mpp or FALLBACK_MPP) > FOCUS_MAX_MPP:
        return out
    side = max(16, round(BLUR_BLOCK_UM / (mpp or FALLBACK_MPP)))
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
    (doubled tissue), ``bubble`` (air bubbles under the coverslip) and ``edge`` (bands
    along coverslip edges; see :mod:`histotile.tiling.mount_artefacts`)."""
    from histotile.tiling.mount_artefacts import mount_masks

    image = rgb_uint8(image)
    pen = pen_mask(image, mpp)
    return {"pen": pen, "blur": blur_mask(image, mpp), "fold": fold_mask(image, mpp, pen),
            **mount_masks(image, mpp)}
