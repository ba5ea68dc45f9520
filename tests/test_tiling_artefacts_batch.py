"""The batched artefact checks (``pen_masks``, ``blurry_tiles``) give the same pixels and
figures as the single-image checks (``pen_mask``, ``focus_measure``) tile by tile, on
real tiles of the sample slide and on synthetic ink, fold and blurred tiles, at the
resolutions and tile sizes that take each path (whole shrink factors on the stacked
batch, others tile by tile)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_tiling_artefacts import BOX, PENS, ink, sample_pixels, tissue_region

from histotile.tiling.artefact_batches import _focus_measures, blurry_tiles, pen_masks
from histotile.tiling.artefacts import BLUR_THRESHOLD, focus_measure, pen_mask
from histotile.tiling.tissue import tissue_fractions

MPP = 0.499


def folded(tile: np.ndarray) -> np.ndarray:
    """``tile`` with a doubled section in BOX (transmission squared)."""
    out = tile.astype(np.float64)
    x0, y0, x1, y1 = BOX
    out[y0:y1, x0:x1] = out[y0:y1, x0:x1] ** 2 / 255.0
    return out.astype(np.uint8)


def batch(side: int) -> np.ndarray:
    """Real tiles of the sample slide (tissue, glass, edges) plus synthetic ink, fold and
    blurred tiles, all ``side`` px."""
    pixels = sample_pixels()
    tiles = [pixels[y:y + side, x:x + side] for y in range(0, 2900 - side, 3 * side // 2)
             for x in range(0, 2200 - side, 3 * side // 2)]
    region = tissue_region()
    specials = [folded(region)] + [ink(region, colour, BOX) for colour in PENS.values()]
    specials += [cv2.GaussianBlur(region, (0, 0), 2.0 / MPP), folded(folded(region))]
    # Cropped around the stroke or fold (a resize would change their scale and focus).
    y0, x0 = min(max(0, 224 - side // 2), 512 - side), min(max(0, 256 - side // 2), 512 - side)
    tiles += [t[y0:y0 + side, x0:x0 + side] for t in specials]
    return np.ascontiguousarray(np.stack(tiles))


def reference(tiles: np.ndarray, mpp: float, tissue: np.ndarray, min_tissue: float):
    """The per-tile figures, one image at a time."""
    pen = np.stack([pen_mask(t, mpp) for t in tiles])
    blurry = np.zeros(len(tiles))
    for i in np.flatnonzero(tissue >= min_tissue):
        blurry[i] = float(focus_measure(tiles[i], mpp) < BLUR_THRESHOLD)
    return pen, blurry


@pytest.mark.parametrize(("side", "mpp"), [
    (256, MPP),    # tiling's usual case: shrinks by 4 (ink) and 2 (focus) batched
    (128, MPP),
    (250, MPP),    # sides no shrink factor divides: tile by tile
    (256, 0.25),   # 40x: shrinks by 8 and 4
    (256, 1.0),    # 10x: ink shrunk by 2, focus measured as is
    (128, 3.0),    # too coarse for focus
])
def test_batched_checks_match_the_single_image_checks(side, mpp):
    tiles = batch(side)
    pen = pen_masks(tiles, mpp)
    tissue = tissue_fractions(tiles, None, mpp, pen)
    want_pen, want_blurry = reference(tiles, mpp, tissue, 0.25)
    np.testing.assert_array_equal(pen, want_pen)
    blurry = blurry_tiles(tiles, mpp, tissue >= 0.25)
    np.testing.assert_array_equal(blurry, want_blurry)
    measures = _focus_measures(tiles, mpp)
    np.testing.assert_array_equal(measures, [focus_measure(t, mpp) for t in tiles])
    if mpp == MPP and side != 128:
        # The batch holds every kind of tile, or the comparison above proves little.
        assert blurry.any() and not blurry.all()
        shares = pen.reshape(len(tiles), -1).mean(axis=1)
        assert (shares > 0.2).sum() >= 4 and (shares == 0).any()
        assert (tissue < 0.25).any()


def test_batched_checks_on_empty_and_glass_batches():
    empty = np.zeros((0, 64, 64, 3), np.uint8)
    assert pen_masks(empty, MPP).shape == (0, 64, 64)
    assert len(blurry_tiles(empty, MPP, np.zeros(0, bool))) == 0
    glass = np.full((3, 64, 64, 3), 242, np.uint8)
    assert (blurry_tiles(glass, MPP, np.zeros(3, bool)) == 0).all()  # not judged
    # Judged as tissue anyway (a caller's choice): flat glass has no focus, like the
    # single-image check says, and no ink.
    blurry = blurry_tiles(glass, MPP, np.ones(3, bool))
    assert (blurry == [focus_measure(t, MPP) < BLUR_THRESHOLD for t in glass]).all()
    assert blurry.all() and not pen_masks(glass, MPP).any()


def angle_rule(rgb: np.ndarray) -> np.ndarray:
    """The ink test with its angles computed (arctan2, arcsin in float64), as the module
    docstring states it: the reference for the table's faster rule."""
    from histotile.tiling.artefacts import INK_LIMITS, _frame, optical_density

    od = optical_density(rgb).astype(np.float64)
    h, e, n = _frame()
    norm = np.linalg.norm(od, axis=-1)
    phi = np.degrees(np.arctan2(od @ e, od @ h))
    psi = np.degrees(np.arcsin(np.clip(od @ n / np.maximum(norm, 1e-9), -1, 1)))
    ink = np.zeros(norm.shape, dtype=bool)
    for low, (phi_min, phi_max), (psi_min, psi_max) in INK_LIMITS:
        ink |= (norm >= low) & ((phi < phi_min) | (phi > phi_max) | (psi < psi_min)
                                | (psi > psi_max))
    return ink


def test_ink_table_is_the_angle_rule_over_all_colours():
    from histotile.tiling.artefacts import ink_lut

    table = ink_lut()
    chunk = 1 << 21
    for start in range(0, 1 << 24, chunk):
        code = np.arange(start, start + chunk, dtype=np.uint32)
        rgb = np.stack([code & 255, (code >> 8) & 255, code >> 16], axis=-1).astype(np.uint8)
        np.testing.assert_array_equal(table[start:start + chunk], angle_rule(rgb))
    assert 0.5 < table.mean() < 0.95  # both inks and H&E colours exist


@pytest.mark.parametrize("side", [256, 250])
def test_batched_steps_match_their_per_tile_opencv_calls(side):
    """The batched steps, to the bit: the shrink to 2 um/px and the 16-um box filter on the
    stacked tiles (float OD norms and uint8 colours), against the per-tile OpenCV
    calls."""
    from histotile.tiling._pixels import shrink
    from histotile.tiling.artefact_batches import _blur_tiles, _shrink_tiles
    from histotile.tiling.artefacts import optical_density

    tiles = batch(side)
    od = optical_density(tiles)
    norm = np.sqrt((od * od).sum(axis=-1))
    small = _shrink_tiles(norm, 4)
    np.testing.assert_array_equal(small, np.stack([shrink(x, 4) for x in norm]))
    for k in (9, 5):
        want = np.stack([cv2.blur(x, (k, k), borderType=cv2.BORDER_REFLECT) for x in small])
        np.testing.assert_array_equal(_blur_tiles(small, k), want)
        rgb = _shrink_tiles(tiles, 4)
        want = np.stack([cv2.blur(x, (k, k), borderType=cv2.BORDER_REFLECT) for x in rgb])
        np.testing.assert_array_equal(_blur_tiles(rgb, k), want)
