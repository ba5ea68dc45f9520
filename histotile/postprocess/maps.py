"""Probability maps from a table of tile predictions.

Tiles are axis-aligned squares in level-0 pixels, possibly overlapping (stride below the
tile side), possibly missing (background never predicted). The edges of all tiles cut
the slide into a rectilinear grid of *cells*; inside a cell the set of covering tiles is
constant, so the averaged probability is one number per cell. :class:`ProbabilityGrid`
holds these cells (a few times the number of tile columns by rows, whatever the slide
size) and samples them at any resolution: a pixel takes the value of the cell under its
centre, NaN where no tile covers it. Images of any size are rendered from it row band by
row band without a full-resolution map ever existing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ProbabilityGrid:
    """Averaged tile probabilities on the cells cut by tile edges.

    Attributes:
        x_edges, y_edges: sorted cell boundaries, level-0 pixels (float64).
        values: (len(y_edges) - 1, len(x_edges) - 1) float32 mean probability of the
            tiles covering each cell; NaN where none does.
        counts: same shape, int32 number of tiles covering each cell.
    """

    x_edges: np.ndarray
    y_edges: np.ndarray
    values: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_tiles(cls, x: np.ndarray, y: np.ndarray, extent: np.ndarray,
                   probability: np.ndarray) -> ProbabilityGrid:
        """Average ``probability`` over overlapping square tiles.

        Args:
            x, y: top-left corners, level-0 pixels.
            extent: tile sides, level-0 pixels (scalar or per tile).
            probability: one value per tile; NaN entries are ignored.
        """
        x = np.asarray(x, np.float64).ravel()
        y = np.asarray(y, np.float64).ravel()
        extent = np.broadcast_to(np.asarray(extent, np.float64), x.shape)
        probability = np.asarray(probability, np.float64).ravel()
        keep = np.isfinite(probability) & (extent > 0)
        x, y, extent, probability = x[keep], y[keep], extent[keep], probability[keep]
        x_edges = np.unique(np.concatenate([x, x + extent]))
        y_edges = np.unique(np.concatenate([y, y + extent]))
        if x.size == 0:
            empty = np.zeros((0, 0))
            return cls(x_edges, y_edges, empty.astype(np.float32), empty.astype(np.int32))
        x0 = np.searchsorted(x_edges, x)
        x1 = np.searchsorted(x_edges, x + extent)
        y0 = np.searchsorted(y_edges, y)
        y1 = np.searchsorted(y_edges, y + extent)
        shape = (len(y_edges), len(x_edges))
        sums = np.zeros(shape, np.float64)
        counts = np.zeros(shape, np.int64)
        # 2-D difference arrays: +at the top-left corner, - at the right and bottom edges.
        for rows, cols, sign in ((y0, x0, 1), (y0, x1, -1), (y1, x0, -1), (y1, x1, 1)):
            np.add.at(sums, (rows, cols), sign * probability)
            np.add.at(counts, (rows, cols), sign)
        sums = sums.cumsum(0).cumsum(1)[:-1, :-1]
        counts = counts.cumsum(0).cumsum(1)[:-1, :-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return cls(x_edges, y_edges, values.astype(np.float32), counts.astype(np.int32))

    @property
    def empty(self) -> bool:
        return self.values.size == 0

    def column_cells(self, width: int, downsample: float) -> np.ndarray:
        """Cell column (into :meth:`padded`) under each of ``width`` pixel columns of an
        image at ``downsample`` of level 0: pixel ``i`` has its centre at level-0
        ``(i + 0.5) * downsample``. Index 0 and the last index are the NaN border."""
        return _cells(self.x_edges, (np.arange(width) + 0.5) * downsample)

    def row_cells(self, top: int, rows: int, downsample: float) -> np.ndarray:
        """Cell row (into :meth:`padded`) under pixel rows ``top .. top+rows``."""
        return _cells(self.y_edges, (np.arange(top, top + rows) + 0.5) * downsample)

    def padded(self) -> np.ndarray:
        """``values`` with a NaN border, the array the ``*_cells`` indices point into."""
        return np.pad(self.values, 1, constant_values=np.nan) if not self.empty else \
            np.full((1, 1), np.nan, np.float32)

    def render(self, width: int, height: int, downsample_x: float,
               downsample_y: float | None = None) -> np.ndarray:
        """The map as float32 (height, width) for an image at ``downsample`` of level 0."""
        downsample_y = downsample_x if downsample_y is None else downsample_y
        padded = self.padded()
        if self.empty:
            return np.full((height, width), np.nan, np.float32)
        cols = self.column_cells(width, downsample_x)
        rows = self.row_cells(0, height, downsample_y)
        return padded[rows[:, None], cols[None, :]]


def _cells(edges: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the cell containing each centre, shifted by one for the NaN border:
    0 before the first edge, ``len(edges)`` at or after the last."""
    if len(edges) < 2:
        return np.zeros(len(centres), np.intp)
    index = np.searchsorted(edges, centres, side="right")  # 1..n-1 inside, 0 / n outside
    index[index >= len(edges)] = len(edges)  # after the last edge: the far NaN border
    return index.astype(np.intp)


def runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop indices of the runs of equal consecutive entries of a 1-D array."""
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [values.size]])
    return starts, stops


def probability_map(predictions, class_name: str, downsample: float,
                    fill: float = float("nan")) -> np.ndarray:
    """The probability of ``class_name`` as a float32 image of the slide at
    ``downsample`` (level-0 pixels per map pixel; size ``round(width / downsample)`` by
    ``round(height / downsample)``): overlapping tiles averaged, ``fill`` (NaN by
    default; 0 for a plain image) where no tile was predicted.

    Args:
        predictions: a :class:`~histotile.postprocess.SlidePredictions`.
        class_name: one of its classes.
        downsample: level-0 pixels per map pixel (e.g. the tile extent for one pixel per
            tile).
    """
    from histotile.errors import ConfigError

    downsample = float(downsample)
    if not downsample > 0 or not np.isfinite(downsample):
        raise ConfigError(f"downsample={downsample}: must be a positive number of level-0 "
                          "pixels per map pixel")
    width0, height0 = predictions.dimensions
    width = max(1, round(width0 / downsample))
    height = max(1, round(height0 / downsample))
    image = predictions.grid(class_name).render(width, height, width0 / width,
                                                height0 / height)
    if not np.isnan(fill):
        image = np.where(np.isnan(image), np.float32(fill), image)
    return image.astype(np.float32, copy=False)
