"""The tiling plan: the one place that says which tiles of a slide are read, how they are
grouped for reading and how each one is judged tissue (tiling, prediction, benchmark)."""

from __future__ import annotations

import numpy as np
import pytest

from histotile.tiling import TilingSettings, extract_tiles, make_grid, plan_tiles, read_tile
from histotile.tiling.plan import REGION_TILES
from histotile.tiling.reader import plan_blocks
from histotile.wsi import open_slide
from histotile.wsi.synthetic import write_synthetic_slide


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "plan-slide.tif"
    write_synthetic_slide(path, 3072, 2048, seed=8, tissue_fraction=0.3, tile_size=256)
    return path


def test_candidates_are_the_tiles_touching_tissue(slide_path):
    settings = TilingSettings(tile_size=64, mpp=1.0)
    with open_slide(slide_path) as slide:
        plan = plan_tiles(slide, settings)
        tissue_grid = make_grid(slide, settings, plan.mask)
    grid = plan.grid
    assert len(grid) == grid.rows * grid.columns  # the full grid
    assert 0 < len(plan.candidates) < len(grid)
    assert plan.touching.sum() == len(plan.candidates)
    assert np.array_equal(np.flatnonzero(plan.touching), plan.candidates)
    # The same tiles make_grid keeps when asked for tissue tiles only.
    assert np.array_equal(grid.xs[plan.candidates], tissue_grid.xs)
    assert np.array_equal(grid.ys[plan.candidates], tissue_grid.ys)
    # Tile resolution: the slide's 0.5 um/px, two level-0 px per tile px.
    assert grid.extent == 128 and plan.tile_mpp == pytest.approx(1.0)
    assert plan.threshold == plan.mask.threshold


def test_regions_cover_every_tile_once_in_whole_blocks(slide_path):
    with open_slide(slide_path) as slide:
        plan = plan_tiles(slide, TilingSettings(tile_size=32), block_size=256)
    regions = plan.regions()
    assert len(regions) > 1
    joined = np.concatenate(regions)
    assert np.array_equal(np.sort(joined), plan.candidates)  # each once
    blocks = plan_blocks(plan.grid, plan.candidates, 256)
    assert np.array_equal(joined, np.concatenate(blocks))  # block order kept
    largest_block = max(len(b) for b in blocks)
    assert all(len(r) < REGION_TILES + largest_block for r in regions)
    assert all(len(r) >= REGION_TILES for r in regions[:-1])
    # Any other set of tiles (the background sample) is grouped the same way.
    some = plan.candidates[::7]
    assert np.array_equal(np.sort(np.concatenate(plan.regions(some))), some)
    assert plan.regions(np.zeros(0, np.int64)) == []


def test_extraction_measures_tiles_by_the_plans_rule(slide_path):
    settings = TilingSettings(tile_size=64, keep_background=0.0, min_tissue=0.3)
    manifest = extract_tiles(slide_path, settings)
    with open_slide(slide_path) as slide:
        plan = plan_tiles(slide, settings)
        grid = plan.grid
        position = {(int(x), int(y)): i for i, (x, y) in enumerate(zip(grid.xs, grid.ys))}
        kept = np.array([position[(x, y)] for x, y in zip(manifest["x"], manifest["y"])])
        assert np.isin(kept, plan.candidates).all()
        sample = manifest.iloc[::11]
        at = np.array([position[(x, y)] for x, y in zip(sample["x"], sample["y"])])
        tiles = np.stack([read_tile(slide, int(r.x), int(r.y), grid.level, grid.read_size,
                                    grid.size) for r in sample.itertuples(index=False)])
    fractions = plan.tissue_fractions(tiles, at)
    np.testing.assert_allclose(fractions, sample["tissue_fraction"], atol=1e-9)
    assert plan.is_tissue(fractions).all()
    # Without a background sample, every kept tile is tissue by the plan's rule.
    assert plan.is_tissue(manifest["tissue_fraction"]).all()
    assert not plan.is_tissue(np.array([0.29])).any()
