"""Streaming tiles out of a slide: read large blocks, cut the tiles in numpy.

Memory is bounded by one block (``block_size`` squared pixels of the level read) plus
one batch of tiles, whatever the slide size.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from histotile.tiling._boxes import group_by_cells
from histotile.tiling.grid import TileGrid, level_coordinates
from histotile.tiling.tile_io import read_tile, resize_tile

DEFAULT_BLOCK = 2048
"""Side of a block read, in pixels of the level read."""
_CUT_BYTES = 16 * 1024 * 1024


def plan_blocks(grid: TileGrid, indices: np.ndarray | None = None,
                block_size: int = DEFAULT_BLOCK) -> list[np.ndarray]:
    """Positions into ``grid`` grouped by the block (``block_size`` px of the level read)
    holding each tile's top-left corner; blocks in raster order."""
    indices = (np.arange(len(grid), dtype=np.int64) if indices is None
               else np.asarray(indices, dtype=np.int64))
    if len(indices) == 0:
        return []
    cell = max(block_size, grid.read_size) * grid.level_downsample
    groups = group_by_cells(grid.xs[indices], grid.ys[indices], cell)
    return [indices[g] for g in groups]


def read_block_tiles(slide, grid: TileGrid, indices: np.ndarray) -> np.ndarray:
    """The tiles ``indices`` of ``grid`` (which should lie within one block) as uint8
    (n, size, size, 3), from a single read of their bounding box. Pixels equal those of
    :func:`~histotile.tiling.tile_io.read_tile` for each tile on levels whose downsample
    is a whole number (level 0 and the usual power-of-2 pyramids). On a level whose
    downsample is not (OpenSlide averages the two axes' ratios, e.g. 31.995), OpenSlide
    resamples a read at a sub-pixel offset, so a tile cut from a block can differ from
    the same tile read alone by a few grey levels (3 at most, measured)."""
    xs, ys = grid.xs[indices], grid.ys[indices]
    lx = level_coordinates(xs, grid.level_downsample)
    ly = level_coordinates(ys, grid.level_downsample)
    left, top = int(lx.min()), int(ly.min())
    width = int(lx.max()) - left + grid.read_size
    height = int(ly.max()) - top + grid.read_size
    # Read at the level-0 corner of the top-left-most tiles so that the level mapping of
    # the block equals that of each tile read alone.
    block = slide.read_region((int(xs.min()), int(ys.min())), grid.level, (width, height))
    size, read = grid.size, grid.read_size
    out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
    for k, (ox, oy) in enumerate(zip((lx - left).tolist(), (ly - top).tolist())):
        piece = block[oy:oy + read, ox:ox + read]
        out[k] = piece if read == size else resize_tile(piece, size)
    return out


def _dense(grid: TileGrid, indices: np.ndarray) -> bool:
    """Whether the tiles cover enough of their bounding box (a quarter) for one block
    read to beat reading them one by one (sparse samples such as background tiles)."""
    if len(indices) <= 1:
        return True
    lx = level_coordinates(grid.xs[indices], grid.level_downsample)
    ly = level_coordinates(grid.ys[indices], grid.level_downsample)
    box = float(lx.max() - lx.min() + grid.read_size) * float(ly.max() - ly.min()
                                                           + grid.read_size)
    return len(indices) * grid.read_size**2 >= 0.25 * box


def _read_one_by_one(slide, grid: TileGrid, indices: np.ndarray) -> np.ndarray:
    out = np.empty((len(indices), grid.size, grid.size, 3), dtype=np.uint8)
    for k, i in enumerate(indices.tolist()):
        out[k] = read_tile(slide, int(grid.xs[i]), int(grid.ys[i]), grid.level,
                           grid.read_size, grid.size)
    return out


def iter_tile_batches(slide, grid: TileGrid, batch_size: int = 256,
                      indices: np.ndarray | None = None,
                      block_size: int = DEFAULT_BLOCK,
                      ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream tiles of ``grid`` as ``(indices, tiles)`` batches.

    ``indices`` are positions into ``grid`` (int64, n); ``tiles`` are uint8 (n, size,
    size, 3), ``n <= batch_size``. Tiles come block by block (raster order of blocks), so
    a caller places results by ``indices``. Overlapping strides are read once per block.

    Args:
        slide: the open slide (:class:`~histotile.wsi.Slide`).
        grid: the tiles.
        batch_size: tiles per yielded batch.
        indices: only these tiles (positions into ``grid``); None = all.
        block_size: side of a block read, in pixels of the level read.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    size = grid.size
    pending_idx: list[np.ndarray] = []
    pending_tiles: list[np.ndarray] = []
    pending = 0
    # Tiles cut from one read at most: bounds memory when tiles overlap heavily.
    per_read = max(1, min(4096, _CUT_BYTES // (3 * size * size)))
    for block in plan_blocks(grid, indices, block_size):
        for start in range(0, len(block), per_read):
            part = block[start:start + per_read]
            tiles = (read_block_tiles(slide, grid, part) if _dense(grid, part)
                     else _read_one_by_one(slide, grid, part))
            offset = 0
            while offset < len(part):
                take = min(batch_size - pending, len(part) - offset)
                pending_idx.append(part[offset:offset + take])
                pending_tiles.append(tiles[offset:offset + take])
                pending += take
                offset += take
                if pending == batch_size:
                    yield _join(pending_idx, pending_tiles, size)
                    pending_idx, pending_tiles, pending = [], [], 0
    if pending:
        yield _join(pending_idx, pending_tiles, size)


def _join(idx: list[np.ndarray], tiles: list[np.ndarray],
          size: int) -> tuple[np.ndarray, np.ndarray]:
    if len(idx) == 1:
        return idx[0], np.ascontiguousarray(tiles[0])
    return np.concatenate(idx), np.concatenate(tiles).reshape(-1, size, size, 3)
