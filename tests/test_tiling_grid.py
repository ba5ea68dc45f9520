"""Tile grids, resolution choice and the block reader (histotile.tiling.grid/reader)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiling_fixtures import SAMPLE

from histotile.errors import ConfigError, LevelError
from histotile.tiling import (
    TilingSettings,
    grid_from_boxes,
    iter_tile_batches,
    make_grid,
    read_tile,
)
from histotile.wsi import open_slide
from histotile.wsi.synthetic import write_synthetic_slide


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    path = tmp_path_factory.mktemp("grid") / "pyr.tif"
    write_synthetic_slide(path, 3000, 2000, seed=2, tissue_fraction=0.4, tile_size=256)
    return path


def test_full_grid_geometry_level0(pyramid):
    with open_slide(pyramid) as slide:
        grid = make_grid(slide, TilingSettings(tile_size=128), all_tiles=True)
    assert (grid.level, grid.read_size, grid.size, grid.extent, grid.stride) == (0, 128, 128,
                                                                                   128, 128)
    assert (grid.columns, grid.rows) == (3000 // 128, 2000 // 128)
    assert len(grid) == grid.columns * grid.rows
    assert grid.xs.dtype == np.int64 and grid.ys.dtype == np.int64
    assert np.array_equal(grid.xs, grid.col * 128) and np.array_equal(grid.ys, grid.row * 128)
    # Only whole tiles inside the slide.
    assert (grid.xs + grid.extent).max() <= 3000 and (grid.ys + grid.extent).max() <= 2000
    values = grid.to_map(np.arange(len(grid), dtype=float))
    assert values.shape == (grid.rows, grid.columns) and values[1, 0] == grid.columns


def test_overlapping_stride_and_225_px_tiles(pyramid):
    with open_slide(pyramid) as slide:
        grid = make_grid(slide, TilingSettings(tile_size=225, stride=112), all_tiles=True)
    assert grid.stride == 112 and grid.extent == 225
    assert grid.columns == (3000 - 225) // 112 + 1
    assert grid.rows == (2000 - 225) // 112 + 1


def test_target_resolution_picks_level_and_shrinks(pyramid):
    with open_slide(pyramid) as slide:  # 0.5 um/px, levels 1, 2, 4, 8, ...
        at_10x = make_grid(slide, TilingSettings(tile_size=128, magnification=10),
                           all_tiles=True)
        assert (at_10x.level, at_10x.read_size, at_10x.extent) == (1, 128, 256)
        # 1.5 um/px lies between level 1 (1.0) and level 2 (2.0): read level 1, shrink.
        between = make_grid(slide, TilingSettings(tile_size=100, mpp=1.5), all_tiles=True)
        assert (between.level, between.read_size, between.size, between.extent) == (1, 150,
                                                                                    100, 300)
        explicit = make_grid(slide, TilingSettings(tile_size=64, level=2), all_tiles=True)
        assert (explicit.level, explicit.extent) == (2, 256)


def test_impossible_requests_are_clear_errors(pyramid):
    with open_slide(pyramid) as slide:
        with pytest.raises(LevelError, match="40"):
            make_grid(slide, TilingSettings(magnification=40))
        with pytest.raises(ConfigError, match="larger|more than the slide"):
            make_grid(slide, TilingSettings(tile_size=2048))
    with pytest.raises(ConfigError, match="at most one"):
        TilingSettings(magnification=20, mpp=0.5)


def test_grid_keeps_only_tiles_touching_tissue(pyramid):
    with open_slide(pyramid) as slide:
        full = make_grid(slide, TilingSettings(tile_size=128), all_tiles=True)
        tissue = make_grid(slide, TilingSettings(tile_size=128))
    assert 0 < len(tissue) < len(full)
    # Every tile with tissue pixels in it is among the grid's tiles.
    with open_slide(pyramid) as slide:
        from histotile.tiling import tissue_fractions

        fractions = np.zeros(len(full))
        for idx, tiles in iter_tile_batches(slide, full):
            fractions[idx] = tissue_fractions(tiles)
    kept = set(zip(tissue.xs.tolist(), tissue.ys.tolist()))
    missed = [i for i in np.flatnonzero(fractions > 0.25)
              if (full.xs[i], full.ys[i]) not in kept]
    assert not missed


@pytest.mark.parametrize("settings", [
    TilingSettings(tile_size=128),
    TilingSettings(tile_size=128, stride=96),
    TilingSettings(tile_size=100, mpp=1.5),
    TilingSettings(tile_size=64, level=1, stride=40),
])
def test_batches_equal_single_tile_reads(pyramid, settings):
    with open_slide(pyramid) as slide:
        grid = make_grid(slide, settings, all_tiles=True)
        seen = np.zeros(len(grid), dtype=int)
        for idx, tiles in iter_tile_batches(slide, grid, batch_size=50, block_size=512):
            assert len(idx) <= 50 and tiles.shape == (len(idx), grid.size, grid.size, 3)
            assert tiles.dtype == np.uint8
            seen[idx] += 1
            for k in range(0, len(idx), 9):
                i = idx[k]
                expected = read_tile(slide, grid.xs[i], grid.ys[i], grid.level,
                                     grid.read_size, grid.size)
                assert np.array_equal(tiles[k], expected)
    assert (seen == 1).all()  # every tile exactly once


def test_batches_of_selected_indices_on_real_slide():
    with open_slide(SAMPLE) as slide:
        grid = make_grid(slide, TilingSettings(tile_size=128), all_tiles=True)
        chosen = np.array([0, 5, len(grid) - 1, 40])
        out = {}
        for idx, tiles in iter_tile_batches(slide, grid, indices=chosen):
            out.update({int(i): t for i, t in zip(idx, tiles)})
        assert sorted(out) == sorted(chosen.tolist())
        for i, tile in out.items():
            assert np.array_equal(tile, read_tile(slide, grid.xs[i], grid.ys[i], 0, 128, 128))


def test_grid_from_arbitrary_boxes(pyramid):
    with open_slide(pyramid) as slide:
        grid = grid_from_boxes([7, 1500, 2800], [3, 900, 1800], level=0, read_size=96,
                               size=96, extent=96, slide_dimensions=slide.dimensions)
        (idx, tiles), = list(iter_tile_batches(slide, grid))
        for k, i in enumerate(idx):
            assert np.array_equal(tiles[k], read_tile(slide, grid.xs[i], grid.ys[i], 0, 96, 96))


def test_settings_round_trip_through_dict():
    settings = TilingSettings(tile_size=225, stride=112, mpp=0.5, classes=("a", "b", "c"),
                              palette={"b": (0, 255, 0), "c": (0, 0, 255)}, seed=3)
    data = settings.to_dict()
    assert TilingSettings.from_dict(json.loads(json.dumps(data))) == settings
    with pytest.raises(ConfigError, match="unknown tiling setting"):
        TilingSettings.from_dict({"tile_sise": 128})
    with pytest.raises(ConfigError, match="palette"):
        TilingSettings(palette={"tumor": (0, 255, 0)})
    with pytest.raises(ConfigError, match="min_tissue"):
        TilingSettings(min_tissue=1.5)
    with pytest.raises(ConfigError, match="list of class names"):
        TilingSettings(classes="tumour")
    numpy_ints = TilingSettings(tile_size=np.int64(64), stride=np.int32(32))
    assert type(numpy_ints.tile_size) is int and json.dumps(numpy_ints.to_dict())


def test_streaming_memory_is_bounded_by_blocks_not_by_tiles(pyramid):
    import tracemalloc

    with open_slide(pyramid) as slide:
        grid = make_grid(slide, TilingSettings(tile_size=128, stride=32), all_tiles=True)
        total = len(grid) * 128 * 128 * 3
        tracemalloc.start()
        seen = 0
        for _idx, tiles in iter_tile_batches(slide, grid, batch_size=64, block_size=1024):
            seen += tiles.nbytes
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seen == total and total > 200 * 2**20  # 5,000+ overlapping tiles, 240+ MiB
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"
