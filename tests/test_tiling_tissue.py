"""Tissue detection and the tissue fraction of tiles (histotile.tiling.tissue)."""

from __future__ import annotations

import numpy as np
import pytest
from tiling_fixtures import (
    BLACK_INK,
    BLUE_PEN,
    COVERSLIP,
    DUST,
    GREEN_PEN,
    RED_PEN,
    SAMPLE,
    slide_with_artefacts,
)

from histotile.tiling import (
    TilingSettings,
    detect_tissue,
    extract_tiles,
    tissue_fraction,
    tissue_fractions,
    tissue_pixels,
)
from histotile.wsi import open_slide
from histotile.wsi.synthetic import BACKGROUND_RGB, write_synthetic_slide

EOSIN = (236, 160, 196)
HAEMATOXYLIN = (92, 52, 140)
PALE_STROMA = (240, 205, 222)


def solid(color, size=16):
    return np.full((size, size, 3), color, dtype=np.uint8)


@pytest.mark.parametrize("color", [EOSIN, HAEMATOXYLIN, PALE_STROMA, (170, 140, 200),
                                   (200, 80, 100)])
def test_stained_colours_are_tissue(color):
    assert tissue_fraction(solid(color)) == 1.0


@pytest.mark.parametrize("color", [BACKGROUND_RGB, (255, 255, 255), GREEN_PEN, BLUE_PEN,
                                   RED_PEN, BLACK_INK, DUST, COVERSLIP, (0, 0, 0)])
def test_glass_ink_and_dust_are_background(color):
    assert tissue_fraction(solid(color)) == 0.0


def test_fraction_counts_pixels_exactly():
    tile = solid(BACKGROUND_RGB, 64)
    tile[:16] = EOSIN  # a quarter of the rows
    tile[16:32, :32] = HAEMATOXYLIN  # an eighth
    tile[32:40] = GREEN_PEN  # ink does not count
    assert tissue_fraction(tile) == pytest.approx(0.25 + 0.125)


def test_batch_matches_single_tiles_and_non_contiguous_input():
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    tiles[2] = solid(EOSIN, 32)
    batch = tissue_fractions(tiles)
    assert batch.shape == (7,)
    assert batch[2] == 1.0
    for tile, value in zip(tiles, batch):
        assert tissue_fraction(tile) == value
    # A strided view (every other column) gives the same as its contiguous copy.
    view = tiles[:, :, ::2]
    assert np.array_equal(tissue_fractions(view), tissue_fractions(view.copy()))
    # The last pixel of an array is tested too (it is read separately).
    one = solid(BACKGROUND_RGB, 4)
    one[-1, -1] = EOSIN
    assert tissue_pixels(one)[-1, -1] and tissue_pixels(one).sum() == 1


def test_threshold_controls_faint_pixels():
    faint = solid((240, 228, 234))  # chroma 12
    assert tissue_fraction(faint, threshold=10) == 1.0
    assert tissue_fraction(faint, threshold=20) == 0.0


def test_rejects_wrong_input():
    with pytest.raises(ValueError, match="RGB uint8"):
        tissue_pixels(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="one RGB tile"):
        tissue_fraction(np.zeros((2, 4, 4, 3), np.uint8))


def test_sample_slide_mask_background_corner_and_tissue_centre():
    with open_slide(SAMPLE) as slide:
        mask = detect_tissue(slide)
    assert mask.slide_dimensions == (2220, 2967)
    assert mask.mask.dtype == bool
    assert mask.mask.shape == (round(2967 / mask.downsample), round(2220 / mask.downsample))
    # Top-left and bottom-left corners are glass; the middle of the section is tissue.
    assert mask.fraction([0], [0], 300)[0] == 0.0
    assert mask.fraction([0], [2600], 300)[0] == 0.0
    assert mask.fraction([1000], [1600], 300)[0] == 1.0
    assert 0.2 < mask.tissue_area_fraction < 0.6


def test_synthetic_mask_matches_truth(tmp_path):
    syn = write_synthetic_slide(tmp_path / "s.tif", 4096, 3072, seed=11, tissue_fraction=0.3)
    with open_slide(syn.path) as slide:
        mask = detect_tissue(slide, downsample=16)
    truth = syn.tissue_mask(16)
    assert mask.mask.shape == truth.shape
    assert (mask.mask == truth).mean() > 0.97
    # Every true tissue pixel lies in the mask grown by one pixel (candidates are not lost).
    assert mask.dilated(2).mask[truth].mean() > 0.99


def test_pale_tissue_is_detected(tmp_path):
    syn = write_synthetic_slide(tmp_path / "pale.tif", 3072, 2048, seed=4, pale=True,
                                tissue_fraction=0.3)
    with open_slide(syn.path) as slide:
        mask = detect_tissue(slide, downsample=16)
    truth = syn.tissue_mask(16)
    assert mask.mask[truth].mean() > 0.9
    assert mask.mask[~truth].mean() < 0.03


def test_blank_glass_has_no_tissue(tmp_path):
    syn = write_synthetic_slide(tmp_path / "glass.tif", 2048, 1536, tissue_fraction=0.0)
    with open_slide(syn.path) as slide:
        mask = detect_tissue(slide)
    assert not mask.mask.any()


def test_pen_marks_dust_and_coverslip_edge_are_not_tissue(tmp_path):
    path, truth, marks = slide_with_artefacts(tmp_path)
    with open_slide(path) as slide:
        mask = detect_tissue(slide, downsample=8)
        margin = mask.mask[:, : 3072 // 5 // 8]
        assert not margin.any(), "artefacts in the glass margin were taken for tissue"
        assert mask.mask[truth].mean() > 0.9
        for colour, group in marks.items():
            x, y = group[0].vertices().mean(axis=0).astype(int)
            tile = slide.read_region((x - 32, y - 32), 0, (64, 64))
            assert tissue_fraction(tile) < 0.05, colour
    # Whole pipeline: no kept tile lies in the margin, except sampled background tiles.
    df = extract_tiles(path, TilingSettings(tile_size=128, keep_background=0.0))
    assert len(df) > 50
    assert (df["x"] + df["extent"] > 3072 // 5).all()
    assert (df["tissue_fraction"] >= 0.25).all()
