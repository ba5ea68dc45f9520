"""Artefact detection: pen ink of each colour over tissue and glass, blur, folds, and the
decisions folded into the tissue fraction and into tiling."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
from tiling_fixtures import BLACK_INK, BLUE_PEN, GREEN_PEN, RED_PEN, SAMPLE, copy_with, read_all

from histotile.tiling import TilingSettings, extract_tiles, tissue_fraction, tissue_pixels
from histotile.tiling.artefact_batches import blurry_tiles
from histotile.tiling.artefacts import artefact_masks, focus_measure, fold_mask, pen_mask

GLASS = (243, 242, 240)
PENS = {"green": GREEN_PEN, "blue": BLUE_PEN, "red": RED_PEN, "black": BLACK_INK}
MPP = 0.499  # the sample slide's level 0


@functools.lru_cache(maxsize=1)
def sample_pixels() -> np.ndarray:
    return read_all(SAMPLE)


def tissue_region() -> np.ndarray:
    """A 512-px region of the sample slide that is almost all tissue."""
    region = sample_pixels()[900:1412, 900:1412].copy()
    assert tissue_pixels(region).mean() > 0.9
    return region


def ink(pixels: np.ndarray, colour, box, density: float = 1.0) -> np.ndarray:
    """Pixels with a stroke of marker in ``box`` (x0, y0, x1, y1): ink filters light, so
    the stroke multiplies the transmission by the pen's colour on glass (at
    ``density`` 1), through a JPEG round trip like a scanner's."""
    out = pixels.astype(np.float64)
    x0, y0, x1, y1 = box
    transmission = (np.asarray(colour, np.float64) / np.asarray(GLASS)) ** density
    out[y0:y1, x0:x1] *= transmission
    out = np.clip(out, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


BOX = (128, 160, 384, 288)  # a 256 x 128 px stroke (128 x 64 um)


def inside(mask: np.ndarray) -> float:
    x0, y0, x1, y1 = BOX
    # The inner part: within half the 16-um averaging window of the edge, glass blends in.
    return float(mask[y0 + 17:y1 - 17, x0 + 17:x1 - 17].mean())


def outside(mask: np.ndarray) -> float:
    x0, y0, x1, y1 = BOX
    out = mask.copy()
    out[y0 - 16:y1 + 16, x0 - 16:x1 + 16] = False
    return float(out.mean())


@pytest.mark.parametrize("name", list(PENS))
def test_pen_stroke_on_glass_is_ink(name):
    glass = np.full((448, 512, 3), GLASS, np.uint8)
    mask = pen_mask(ink(glass, PENS[name], BOX), MPP)
    assert inside(mask) > 0.99
    assert outside(mask) == 0.0


@pytest.mark.parametrize("name", list(PENS))
def test_pen_stroke_over_tissue_is_ink(name):
    tissue = tissue_region()
    clean = pen_mask(tissue, MPP)
    assert clean.mean() < 0.005  # real H&E is not ink
    mask = pen_mask(ink(tissue, PENS[name], BOX), MPP)
    # Blue ink over pink tissue is a purple mixture, the closest ink to haematoxylin.
    assert inside(mask) > (0.8 if name == "blue" else 0.95)
    assert outside(mask) < 0.005


def test_whole_real_slide_has_no_ink_and_no_fold():
    masks = artefact_masks(sample_pixels(), MPP)
    assert masks["pen"].mean() < 0.001
    # The densest bands of this slide (crushed dark keratin along the epidermis, 2 %)
    # are as dark as a doubled section.
    assert masks["fold"].mean() < 0.03
    assert masks["blur"].mean() < 0.01


def test_red_pen_on_glass_is_not_tissue():
    # A half-density red stroke (209, 75, 95): less saturated than the old red-ink band
    # (S >= 0.7), so the colour test alone calls it tissue.
    glass = np.full((448, 512, 3), GLASS, np.uint8)
    inked = ink(glass, RED_PEN, BOX, density=0.5)
    x0, y0, x1, y1 = BOX
    stroke = inked[y0:y1, x0:x1]
    assert tissue_pixels(stroke).mean() > 0.5
    assert tissue_fraction(stroke, mpp=MPP) < 0.01
    assert tissue_fraction(tissue_region(), mpp=MPP) > 0.9


def test_focus_measure_falls_with_gaussian_blur():
    pixels = sample_pixels()
    tiles = [pixels[y:y + 512, x:x + 512] for y in (600, 1400, 2000) for x in (400, 1200)]
    tiles = [t for t in tiles if tissue_pixels(t).mean() > 0.5]
    assert len(tiles) >= 3
    for tile in tiles:
        scores = [focus_measure(tile if s == 0 else cv2.GaussianBlur(tile, (0, 0), s / MPP),
                                MPP) for s in (0, 0.5, 1.0, 2.0, 4.0)]  # sigma in um
        assert all(a > b for a, b in zip(scores, scores[1:])), scores
        assert blurry_tiles(tile[None], MPP, np.ones(1, bool))[0] == 0.0
        blurred = cv2.GaussianBlur(tile, (0, 0), 2.0 / MPP)
        assert blurry_tiles(blurred[None], MPP, np.ones(1, bool))[0] == 1.0


def test_focus_measure_does_not_depend_on_magnification():
    tile = tissue_region()
    half = cv2.resize(tile, (256, 256), interpolation=cv2.INTER_AREA)
    a, b = focus_measure(tile, MPP), focus_measure(half, 2 * MPP)
    assert abs(a - b) / a < 0.05
    assert np.isnan(focus_measure(half, 8.0))


def test_blur_mask_marks_the_blurred_half():
    pixels = sample_pixels()[400:2448, 300:1836].copy()
    pixels[:, 768:] = cv2.GaussianBlur(pixels[:, 768:], (0, 0), 2.0 / MPP)
    blur = artefact_masks(pixels, MPP)["blur"]
    assert blur[:, :768].mean() < 0.05
    tissue = tissue_pixels(pixels[:, 768:]).mean()
    assert blur[:, 768:].mean() > 0.8 * tissue


def test_fold_on_a_doubled_region():
    tissue = tissue_region()
    folded = tissue.astype(np.float64)
    x0, y0, x1, y1 = BOX
    # Doubled thickness: the light passes the section twice, transmission squared.
    folded[y0:y1, x0:x1] = folded[y0:y1, x0:x1] ** 2 / 255.0
    folded = folded.astype(np.uint8)
    clean = fold_mask(tissue, MPP).mean()
    mask = fold_mask(folded, MPP)
    # Density alone: naturally dense tissue near the fold is caught too, a little.
    assert clean < 0.05
    assert inside(mask) > 0.6
    assert inside(mask) > 10 * clean
    assert outside(mask) < 0.05
    assert pen_mask(folded, MPP)[y0 + 8:y1 - 8, x0 + 8:x1 - 8].mean() < 0.05  # not ink


def test_tiling_drops_inked_tiles_and_keeps_them_on_request(tmp_path):
    def paint(band, y0, ds):
        # A red stroke over the tissue, level-0 rows 1200-1700, columns 500-1700.
        top, bottom = int(max(0, (1200 - y0) / ds)), int(max(0, (1700 - y0) / ds))
        if bottom > top:
            region = band[top:bottom, int(500 / ds):int(1700 / ds)].astype(np.float64)
            region *= np.asarray(RED_PEN) / np.asarray(GLASS)
            band[top:bottom, int(500 / ds):int(1700 / ds)] = region.astype(np.uint8)
        return band

    path = copy_with(SAMPLE, tmp_path / "inked.tif", paint)
    settings = TilingSettings(tile_size=128, keep_background=0.0)
    df = extract_tiles(path, settings)
    kept = extract_tiles(path, TilingSettings(tile_size=128, keep_background=0.0,
                                              keep_artefacts=True))
    in_stroke = ((kept.x >= 500) & (kept.x + 128 <= 1700) & (kept.y >= 1200)
                 & (kept.y + 128 <= 1700))
    assert in_stroke.sum() >= 10
    assert (kept.artefact[in_stroke] > 0.9).all()
    assert (kept.artefact[~in_stroke] < 0.5).mean() > 0.9
    assert len(df) == int((kept.artefact < 0.5).sum())
    assert not ((df.x >= 500) & (df.x + 128 <= 1700) & (df.y >= 1200)
                & (df.y + 128 <= 1700)).any()
