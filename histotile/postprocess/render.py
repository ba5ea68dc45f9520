"""Blending a probability grid over rows of slide pixels.

:class:`Colouriser` turns a :class:`~histotile.postprocess.maps.ProbabilityGrid` into
colours (one class colour above a threshold, or a colour map of the probability) and
blends them over a band of pixels of an image at a given downsample of level 0. Bands
are processed as rectangles of constant colour (runs of equal cells), each blended with
a 256-entry lookup table; where cells are only a few pixels wide (coarse pyramid levels,
previews) a per-pixel path is used instead. Both give the blend formula exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from histotile.errors import ConfigError
from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
from histotile.postprocess.blend import (
    blend_constant,
    check_alpha,
    check_colour,
    colour_map_lut,
    constant_lut,
    probability_levels,
)
from histotile.postprocess.maps import ProbabilityGrid, runs

HeatmapMode = Literal["threshold", "continuous"]
"""How a heatmap colours tiles: those over the threshold, or a colour map of probability."""
MODES: tuple[str, ...] = get_args(HeatmapMode)
# Below this many pixels per constant-colour rectangle, blend pixel by pixel instead.
_MIN_RUN_PIXELS = 1024


# Continuous heatmaps leave tiles under this probability uncoloured, so the H&E of tissue
# the model calls negative stays readable (the one default, for the API and the CLI).
DEFAULT_FLOOR = 0.1


@dataclass(frozen=True)
class BlendStyle:
    """How probabilities become colour.

    Attributes:
        mode: ``"threshold"``: ``color`` over tiles whose probability is at least
            ``threshold`` (the original workflow's green overlay); ``"continuous"``: the
            colour map's colour of the probability over every predicted tile.
        threshold: probability from which a tile is coloured (threshold mode).
        color: RGB colour of the threshold mode.
        alpha: opacity of the colour, 0 (slide only) to 1 (colour only).
        colormap: colour map of the continuous mode (any matplotlib colour map;
            viridis: perceptually uniform and colour-blind safe).
        floor: continuous mode: tiles below this probability stay uncoloured, so the
            H&E shows through where nothing was found.
    """

    mode: HeatmapMode = "threshold"
    threshold: float = DEFAULT_TILE_THRESHOLD
    color: tuple[int, int, int] = (0, 255, 0)
    alpha: float = 0.4
    colormap: str = "viridis"
    floor: float = DEFAULT_FLOOR

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode={self.mode!r}: choose 'threshold' (a colour over tiles "
                              "above the threshold) or 'continuous' (a colour map)")
        threshold = float(self.threshold)
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold={self.threshold}: a probability threshold lies "
                              f"between 0 and 1 ({DEFAULT_TILE_THRESHOLD:g} is the usual "
                              "choice)")
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        object.__setattr__(self, "color", check_colour(self.color))
        colour_map_lut(self.colormap)  # validates the name
        floor = float(self.floor)
        if not 0.0 <= floor <= 1.0:
            raise ConfigError(f"floor={self.floor}: the probability below which tiles stay "
                              "uncoloured lies between 0 and 1 (e.g. 0.1)")
        object.__setattr__(self, "floor", floor)


class Colouriser:
    """Blend a probability grid over image bands in the style given."""

    def __init__(self, grid: ProbabilityGrid, style: BlendStyle) -> None:
        self.grid = grid
        self.style = style
        self._padded = grid.padded()
        self._keys = self._cell_keys(self._padded)
        self._luts: dict[int, np.ndarray] = {}
        self._colour_map = colour_map_lut(style.colormap) if style.mode == "continuous" else None
        self._columns: dict[tuple[int, float], tuple[np.ndarray, ...]] = {}

    def _cell_keys(self, values: np.ndarray) -> np.ndarray:
        """Colour key per cell: 0 = untouched; threshold mode 1 = coloured; continuous
        mode 1 + colour-map index."""
        finite = np.isfinite(values)
        if self.style.mode == "threshold":
            return (finite & (np.nan_to_num(values, nan=-1.0) >= self.style.threshold)
                    ).astype(np.int16)
        shown = finite & (np.nan_to_num(values, nan=-1.0) >= self.style.floor)
        return np.where(shown, probability_levels(values).astype(np.int16) + 1, 0
                        ).astype(np.int16)

    def _colour(self, key: int) -> Sequence[int]:
        """The RGB colour of a key (see :meth:`_cell_keys`)."""
        if self._colour_map is None:  # threshold mode: one colour
            return self.style.color
        return self._colour_map[key - 1]

    def _lut(self, key: int) -> np.ndarray:
        lut = self._luts.get(key)
        if lut is None:
            lut = self._luts[key] = constant_lut(self._colour(key), self.style.alpha)
        return lut

    def colours(self, keys: Sequence[int]) -> np.ndarray:
        """RGB colour (uint8) of each key (for legends)."""
        return np.array([self._colour(k) for k in keys], np.uint8)

    def _column_runs(self, width: int, downsample: float) -> tuple[np.ndarray, ...]:
        key = (width, downsample)
        if key not in self._columns:
            cells = self.grid.column_cells(width, downsample)
            starts, stops = runs(cells)
            self._columns[key] = (cells, starts, stops, cells[starts])
            if len(self._columns) > 16:  # one entry per pyramid level in practice
                self._columns.pop(next(iter(self._columns)))
        return self._columns[key]

    def blend_band(self, pixels: np.ndarray, top: int, downsample_x: float,
                   downsample_y: float | None = None) -> np.ndarray:
        """Blend over ``pixels`` (rows, width, 3) uint8, in place: rows ``top ..`` of an
        image whose pixel ``(i, j)`` has its centre at level-0
        ``((j + 0.5) * downsample_x, (i + 0.5) * downsample_y)``."""
        downsample_y = downsample_x if downsample_y is None else downsample_y
        rows, width = pixels.shape[:2]
        if self.grid.empty or rows == 0:
            return pixels
        col_cells, col_starts, col_stops, col_run_cells = self._column_runs(width,
                                                                            downsample_x)
        row_cells = self.grid.row_cells(top, rows, downsample_y)
        row_starts, row_stops = runs(row_cells)
        if rows * width < _MIN_RUN_PIXELS * len(row_starts) * len(col_starts):
            return self._blend_pixels(pixels, self._keys[row_cells[:, None],
                                                         col_cells[None, :]])
        for r0, r1 in zip(row_starts, row_stops):
            keys = self._keys[row_cells[r0], col_run_cells]
            merged_starts, merged_stops = runs(keys)
            for k0, k1 in zip(merged_starts, merged_stops):
                key = int(keys[k0])
                if key:
                    block = pixels[r0:r1, col_starts[k0]:col_stops[k1 - 1]]
                    blend_constant(block, self._lut(key))
        return pixels

    def _blend_pixels(self, pixels: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """Per-pixel path for fine cells: a masked lookup per colour when there are few
        colours, else one gather from the stacked lookup tables."""
        present = np.unique(keys)
        present = present[present > 0]
        if len(present) <= 4:
            for key in present:
                blend_constant(pixels, self._lut(int(key)), keys == key)
            return pixels
        tables = np.stack([self._lut(int(key))[0] for key in present])  # (K, 256, 3)
        compact = np.zeros(int(present.max()) + 1, np.int32)
        compact[present] = np.arange(len(present), dtype=np.int32)
        index = (compact[keys][..., None] * 768 + pixels.astype(np.int32) * 3
                 + np.arange(3, dtype=np.int32))
        blended = np.take(tables.reshape(-1), index)
        np.copyto(pixels, blended, where=(keys > 0)[..., None])
        return pixels

    def blend_image(self, pixels: np.ndarray, downsample_x: float,
                    downsample_y: float | None = None) -> np.ndarray:
        """Blend over a whole (small) image at ``downsample`` of level 0, in place."""
        return self.blend_band(pixels, 0, downsample_x, downsample_y)
