"""The synthetic slide writer and painted overlays that the other stages' tests rely on."""

from __future__ import annotations

import numpy as np
import pytest

from histotile.wsi import open_slide
from histotile.wsi.synthetic import Mark, write_overlay, write_synthetic_slide


def test_same_seed_same_pixels_other_seed_differs(tmp_path):
    a = write_synthetic_slide(tmp_path / "a.tif", 1200, 900, seed=5, tile_size=256)
    b = write_synthetic_slide(tmp_path / "b.tif", 1200, 900, seed=5, tile_size=256)
    c = write_synthetic_slide(tmp_path / "c.tif", 1200, 900, seed=6, tile_size=256)
    with open_slide(a.path) as sa, open_slide(b.path) as sb, open_slide(c.path) as sc:
        full = (0, 0), 0, (1200, 900)
        np.testing.assert_array_equal(sa.read_region(*full), sb.read_region(*full))
        assert not np.array_equal(sa.read_region(*full), sc.read_region(*full))


def test_tissue_fraction_and_mask_agree_with_pixels(tmp_path):
    info = write_synthetic_slide(tmp_path / "s.tif", 2048, 1536, seed=2, tissue_fraction=0.3,
                                 tile_size=256)
    mask = info.tissue_mask(8)
    assert mask.shape == (192, 256)
    assert mask.mean() == pytest.approx(0.3, abs=0.05)
    with open_slide(info.path) as slide:
        pixels = slide.read_region((0, 0), 0, (2048, 1536))[4::8, 4::8]
    saturated = pixels.max(axis=2).astype(int) - pixels.min(axis=2) > 40
    # Where the true mask says tissue the pixels are stained, elsewhere glass.
    assert saturated[mask].mean() > 0.95
    assert saturated[~mask].mean() < 0.05


def test_blank_glass(tmp_path):
    info = write_synthetic_slide(tmp_path / "glass.tif", 600, 400, tissue_fraction=0.0,
                                 tile_size=256)
    with open_slide(info.path) as slide:
        pixels = slide.read_region((0, 0), 0, (600, 400)).astype(int)
    assert np.abs(pixels - np.array([243, 242, 240])).max() <= 3


@pytest.mark.parametrize("downsample", [1.0, 4.0])
def test_overlay_marks_land_exactly(tmp_path, synthetic_pyramid, downsample):
    mark = Mark((0, 255, 0), rect=(800, 400, 640, 480))
    out = write_overlay(synthetic_pyramid, tmp_path / "overlay.tif", [mark],
                        downsample=downsample)
    with open_slide(out) as overlay, open_slide(synthetic_pyramid) as slide:
        assert overlay.dimensions == (round(3000 / downsample), round(2000 / downsample))
        pixels = overlay.read_region((0, 0), 0, overlay.dimensions).astype(int)
        x0, y0 = int(800 / downsample), int(400 / downsample)
        x1, y1 = int(1440 / downsample), int(880 / downsample)
        inside = pixels[y0 + 2:y1 - 2, x0 + 2:x1 - 2]
        assert np.abs(inside - [0, 255, 0]).max() < 30  # JPEG keeps the green
        green = (pixels[:, :, 1] > 200) & (pixels[:, :, 0] < 80) & (pixels[:, :, 2] < 80)
        assert abs(int(green.sum()) - (x1 - x0) * (y1 - y0)) < 0.05 * (x1 - x0) * (y1 - y0)
        if downsample == 1.0:  # away from the mark the overlay is the slide
            original = slide.read_region((0, 0), 0, (600, 300)).astype(int)
            assert np.abs(pixels[:300, :600] - original).mean() < 3


def test_pyramid_writer_reports_every_band(tmp_path):
    from histotile.wsi.tiff_writer import pyramid_dimensions, write_pyramid_tiff

    sizes = pyramid_dimensions(700, 300, tile_size=256)
    seen: dict[int, int] = {}

    def render(level, top, rows):
        return np.full((rows, sizes[level][0], 3), 200, np.uint8)

    write_pyramid_tiff(tmp_path / "p.tif", sizes, render, tile_size=256,
                       on_band=lambda level, rows: seen.__setitem__(level,
                                                                    seen.get(level, 0) + rows))
    assert seen == {level: h for level, (w, h) in enumerate(sizes)}


def test_rectangle_marks_paint_exactly_their_pixels():
    from histotile.wsi.synthetic import paint_marks

    canvas = np.zeros((40, 60, 3), np.uint8)
    paint_marks(canvas, [Mark((0, 255, 0), rect=(10, 5, 20, 8))], origin=(0, 0), downsample=1)
    painted = canvas[:, :, 1] == 255
    assert painted.sum() == 20 * 8
    assert painted[5:13, 10:30].all()
    # At 1/4 resolution, in a band that starts lower down the slide.
    band = np.zeros((10, 15, 3), np.uint8)
    paint_marks(band, [Mark((0, 255, 0), rect=(8, 40, 16, 12))], origin=(0, 36), downsample=4)
    assert np.argwhere(band[:, :, 1] == 255).tolist() == [[r, c] for r in (1, 2, 3)
                                                          for c in (2, 3, 4, 5)]
