"""The slide's artefact map (pen ink and folds judged on its low-resolution view) and how
tiling and slide prediction read it per tile: shares by area, the pen over each tile's
pixels, a worker's crop giving the same figures as the whole map, ink out of the tissue
fraction, and folded tiles dropped by tiling."""

from __future__ import annotations

import numpy as np
import pytest
from tiling_fixtures import RED_PEN, SAMPLE, copy_with

from histotile.tiling import TilingSettings, extract_tiles, plan_tiles
from histotile.tiling.artefact_map import ArtefactMap
from histotile.tiling.reader import read_tile
from histotile.wsi import open_slide

GLASS = (243, 242, 240)


def a_map() -> ArtefactMap:
    pen = np.zeros((40, 60), bool)
    pen[10:20, 30:45] = True
    fold = np.zeros((40, 60), bool)
    fold[25:35, 5:15] = True
    bubble = np.zeros((40, 60), bool)
    bubble[25:35, 10:20] = True  # overlapping the fold by half
    return ArtefactMap({"pen": pen, "fold": fold, "bubble": bubble,
                        "edge": np.zeros((40, 60), bool)}, downsample=8.0)


def test_shares_are_the_covered_area_of_each_box():
    amap = a_map()
    # Level-0 boxes of 80 px (10 view px): inside the pen, half over it, clear of it.
    xs = np.array([30 * 8, 25 * 8, 0.0, 5 * 8])
    ys = np.array([10 * 8, 10 * 8, 0.0, 25 * 8])
    np.testing.assert_allclose(amap.fractions("pen", xs, ys, 80), [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(amap.fractions("fold", xs, ys, 80), [0.0, 0.0, 0.0, 1.0])
    # Any artefact: the union, not the sum (fold and bubble overlap).
    np.testing.assert_allclose(amap.fractions("artefact", np.array([10 * 8.0, 30 * 8.0]),
                                              np.array([25 * 8.0, 8 * 8.0]), 80), [1.0, 0.8])


def test_pen_pixels_follow_the_view_pixel_under_each_tile_pixel():
    amap = a_map()
    xs, ys = np.array([0.0, 28 * 8]), np.array([0.0, 8 * 8])
    inked, masks = amap.pen_pixels(xs, ys, extent=64, size=32)
    assert inked.tolist() == [1]  # the first tile touches no ink
    # The second covers view columns 28-35 and rows 8-15: ink from column 30, row 10.
    expected = np.zeros((8, 8), bool)
    expected[2:, 2:] = True
    np.testing.assert_array_equal(masks[0], np.kron(expected, np.ones((4, 4), bool)))


def test_a_crop_gives_the_whole_maps_figures():
    amap = a_map()
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(150, 400, 30), rng.uniform(40, 250, 30)
    crop = amap.crop(xs, ys, 64)
    assert crop.pen.size < amap.pen.size
    for kind in ("pen", "fold", "bubble", "artefact"):
        np.testing.assert_allclose(crop.fractions(kind, xs, ys, 64),
                                   amap.fractions(kind, xs, ys, 64), atol=1e-12)
    for whole, part in zip(amap.pen_pixels(xs, ys, 64, 16), crop.pen_pixels(xs, ys, 64, 16)):
        np.testing.assert_array_equal(whole, part)


def _painted(tmp_path, name, box, paint_pixels):
    x0, y0, x1, y1 = box

    def paint(band, top, ds):
        r0, r1 = int(max(0, (y0 - top) / ds)), int(max(0, (y1 - top) / ds))
        if r1 > r0:
            region = band[r0:r1, int(x0 / ds):int(x1 / ds)]
            band[r0:r1, int(x0 / ds):int(x1 / ds)] = paint_pixels(region)
        return band

    return copy_with(SAMPLE, tmp_path / f"{name}.tif", paint)


def _inside(df, box, size=128):
    x0, y0, x1, y1 = box
    return (df.x >= x0) & (df.x + size <= x1) & (df.y >= y0) & (df.y + size <= y1)


def test_ink_is_not_tissue_for_tiling_and_prediction_alike(tmp_path):
    box = (500, 1200, 1700, 1700)
    path = _painted(tmp_path, "inked", box, lambda region: (
        region * (np.asarray(RED_PEN) / np.asarray(GLASS))).astype(np.uint8))
    settings = TilingSettings(tile_size=128, keep_background=0.0, keep_artefacts=True,
                              min_tissue=0.0)
    df = extract_tiles(path, settings)
    under = _inside(df, box)
    assert under.sum() >= 10
    assert (df.tissue_fraction[under] < 0.05).all()  # the red ink over tissue
    assert (df.artefact[under] > 0.9).all()
    with open_slide(path) as slide:
        plan = plan_tiles(slide, settings)
        grid = plan.grid
        at = {(int(x), int(y)): i for i, (x, y) in enumerate(zip(grid.xs, grid.ys))}
        rows = df[under | (df.index % 7 == 0)]
        tiles = np.stack([read_tile(slide, int(r.x), int(r.y), grid.level, grid.read_size,
                                    grid.size) for r in rows.itertuples(index=False)])
        indices = np.array([at[(int(x), int(y))] for x, y in zip(rows.x, rows.y)])
    # Slide prediction judges its tiles by the same rule, ink included.
    np.testing.assert_allclose(plan.tissue_fractions(tiles, indices), rows.tissue_fraction,
                               atol=1e-12)


@pytest.mark.parametrize("keep", [False, True])
def test_tiling_drops_folded_tiles_unless_asked_to_keep_them(tmp_path, keep):
    box = (800, 1300, 1500, 2200)  # 350 x 450 um of dense tissue, seen twice over
    path = _painted(tmp_path, "folded", box, lambda region: (
        region.astype(np.float64) ** 2 / 255.0).astype(np.uint8))
    settings = TilingSettings(tile_size=128, keep_background=0.0, keep_artefacts=keep)
    df = extract_tiles(path, settings)
    under = _inside(df, (box[0] + 64, box[1] + 64, box[2] - 64, box[3] - 64))
    if keep:
        assert under.sum() >= 8
        assert (df.artefact[under] >= 0.5).mean() > 0.8
        assert (df.artefact[~_inside(df, box)] < 0.5).mean() > 0.9
    else:
        assert under.sum() <= 2
        assert (df.artefact < 0.5).all()


def test_tiling_drops_the_tiles_under_an_air_bubble(tmp_path):
    from test_tiling_mount_artefacts import MPP, bubble_slide

    path = bubble_slide(tmp_path / "bubble.tif")  # rim centred (900, 2500), 0.5 x 0.36 mm
    kept = extract_tiles(path, TilingSettings(tile_size=128, keep_background=0.0,
                                              keep_artefacts=True))
    dropped = extract_tiles(path, TilingSettings(tile_size=128, keep_background=0.0))
    cx, cy = kept.x + 64 - 900, kept.y + 64 - 2500
    inner = (cx / (200 / MPP)) ** 2 + (cy / (130 / MPP)) ** 2 < 1  # well inside the rim
    assert inner.sum() >= 4
    assert (kept.artefact[inner] >= 0.5).all()
    # Tiles clear of the (tilted) ellipse, rim and all, are judged as before.
    clear = np.hypot(cx, cy) > 250 / MPP + 128
    assert clear.sum() > 50 and (kept.artefact[clear] < 0.5).mean() > 0.95
    assert len(dropped) == int((kept.artefact < 0.5).sum())
