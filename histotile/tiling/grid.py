"""Tile grids: where the tiles of a slide are, in level-0 pixels, at a target resolution."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from histotile.errors import ConfigError
from histotile.tiling.settings import TilingSettings
from histotile.tiling.tissue import TissueMask


@dataclass
class TileGrid:
    """Tiles of one slide on a regular grid.

    Attributes:
        xs, ys: int64 top-left corners in level-0 pixels.
        level: the pyramid level read.
        read_size: side of the square read at ``level``, in that level's pixels.
        size: side of the output tiles (pixels at the target resolution).
        extent: side of a tile in level-0 pixels.
        stride: step between neighbouring tiles in level-0 pixels.
        columns, rows: shape of the full grid.
        col, row: int64 grid index of every tile (``xs == col * stride`` on a full grid),
            so later stages can place per-tile values on a ``(rows, columns)`` map.
        slide_dimensions: level-0 (width, height) of the slide.
        settings: the settings that made the grid.
        level_downsample: downsample of ``level``.
    """

    xs: np.ndarray
    ys: np.ndarray
    level: int
    read_size: int
    size: int
    extent: int
    stride: int
    columns: int
    rows: int
    col: np.ndarray
    row: np.ndarray
    slide_dimensions: tuple[int, int]
    settings: TilingSettings = field(default_factory=TilingSettings)
    level_downsample: float = 1.0

    def __len__(self) -> int:
        return len(self.xs)

    @property
    def read_stride(self) -> int:
        """The stride in pixels of the level read."""
        return max(1, round(self.stride / self.level_downsample))

    def subset(self, indices: np.ndarray) -> TileGrid:
        """The grid restricted to ``indices`` (positions into this grid)."""
        indices = np.asarray(indices, dtype=np.int64)
        return TileGrid(self.xs[indices], self.ys[indices], self.level, self.read_size,
                        self.size, self.extent, self.stride, self.columns, self.rows,
                        self.col[indices], self.row[indices], self.slide_dimensions,
                        self.settings, self.level_downsample)

    def to_map(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Per-tile ``values`` placed on a float (rows, columns) map (``fill`` elsewhere)."""
        out = np.full((self.rows, self.columns), fill, dtype=np.float64)
        out[self.row, self.col] = values
        return out


def make_grid(slide, settings: TilingSettings | None = None,
              tissue: TissueMask | None = None, *, all_tiles: bool = False) -> TileGrid:
    """The tile grid of ``slide`` for ``settings``.

    The target resolution (magnification, mpp or level; level 0 by default) is read from
    the nearest stored level at or above it and shrunk when needed. Only whole tiles
    inside the slide are made. Unless ``all_tiles``, tiles touching no tissue are left
    out (``tissue`` is detected when not given).

    Raises:
        LevelError / MetadataMissingError: a resolution the slide cannot give.
        ConfigError: a tile (or stride) larger than the slide.
    """
    settings = settings or TilingSettings()
    choice = slide.choose_level(**settings.target())
    level, level_ds = choice.level, choice.level_downsample
    # Pixels to read at the level for one tile (scale <= 1 shrinks the read to the tile).
    read_size = max(1, round(settings.tile_size / choice.scale))
    read_stride = max(1, round(settings.step / choice.scale))
    extent = round(read_size * level_ds)
    stride = round(read_stride * level_ds)
    width0, height0 = slide.dimensions
    if extent > width0 or extent > height0:
        raise ConfigError(
            f"{slide.path}: a {settings.tile_size}-px tile at the target resolution covers "
            f"{extent} x {extent} level-0 px, more than the slide ({width0} x {height0}); "
            "use a smaller tile_size or a lower magnification")
    level_w, level_h = slide.level_dimensions[level]
    columns = (level_w - read_size) // read_stride + 1
    rows = (level_h - read_size) // read_stride + 1
    # Positions on the level's pixel grid, mapped to level 0 so that each tile's level
    # coordinate is exactly floor(x / level_ds).
    lx = np.arange(columns, dtype=np.int64) * read_stride
    ly = np.arange(rows, dtype=np.int64) * read_stride
    x0 = np.ceil(lx * level_ds - 1e-6).astype(np.int64)
    y0 = np.ceil(ly * level_ds - 1e-6).astype(np.int64)
    row, col = np.divmod(np.arange(rows * columns, dtype=np.int64), columns)
    xs, ys = x0[col], y0[row]
    if not all_tiles:
        if tissue is None:
            from histotile.tiling.tissue import detect_tissue

            tissue = detect_tissue(slide, downsample=settings.tissue_downsample,
                                   threshold=settings.tissue_threshold,
                                   min_area_um2=settings.mask_min_area_um2)
        touching = tissue.touches(xs, ys, extent)
        xs, ys, col, row = xs[touching], ys[touching], col[touching], row[touching]
    return TileGrid(xs, ys, level, read_size, settings.tile_size, extent, stride, columns,
                    rows, col, row, (width0, height0), settings, float(level_ds))


def grid_from_boxes(xs: np.ndarray, ys: np.ndarray, *, level: int, read_size: int, size: int,
                    extent: int, slide_dimensions: tuple[int, int],
                    level_downsample: float = 1.0,
                    settings: TilingSettings | None = None) -> TileGrid:
    """A :class:`TileGrid` of arbitrary tile positions (for example a manifest's rows),
    so that :func:`~histotile.tiling.reader.iter_tile_batches` can stream them."""
    xs = np.asarray(xs, dtype=np.int64)
    ys = np.asarray(ys, dtype=np.int64)
    stride = max(1, int(extent))
    col = xs // stride
    row = ys // stride
    columns = int(col.max()) + 1 if len(xs) else 0
    rows = int(row.max()) + 1 if len(ys) else 0
    return TileGrid(xs, ys, int(level), int(read_size), int(size), int(extent), stride,
                    columns, rows, col, row,
                    (int(slide_dimensions[0]), int(slide_dimensions[1])),
                    settings or TilingSettings(tile_size=max(8, int(size))),
                    float(level_downsample))


def level_coordinates(values: np.ndarray, level_downsample: float) -> np.ndarray:
    """Level-0 coordinates to pixel coordinates of a level (floor, as OpenSlide reads)."""
    if level_downsample == 1.0:
        return np.asarray(values, dtype=np.int64)
    return np.floor(np.asarray(values, dtype=np.float64) / level_downsample
                    + 1e-9).astype(np.int64)



__all__ = ["TileGrid", "grid_from_boxes", "level_coordinates", "make_grid"]
