"""The probability map as a slide: a single-channel uint8 pyramidal TIFF.

Pixel value ``v`` means probability ``v / 255`` (``round(p * 255)``; 0 also where no
tile was predicted). Written tiled and deflate-compressed (lossless, so the values are
exact) through :func:`histotile.wsi.tiff_writer.write_pyramid_tiff`, band by band from
the :class:`~histotile.postprocess.maps.ProbabilityGrid`, with the resolution tags set
from the slide's mpp, so a viewer (QuPath, or OpenSlide-based ones) places it over the
slide at the right scale. Memory: one band, whatever the slide size.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from histotile._deprecation import renamed_keywords
from histotile.errors import ConfigError
from histotile.postprocess.blend import probability_levels
from histotile.postprocess.predictions import SlidePredictions
from histotile.wsi.tiff_writer import pyramid_dimensions, write_pyramid_tiff

PROBABILITY_FILE = "probability.tif"


def default_downsample(predictions: SlidePredictions) -> float:
    """Level-0 pixels per map pixel: a quarter of the smallest tile step or overlap (so
    every cell of the averaged map spans at least four pixels), at least 1."""
    tiles = predictions.tiles
    if len(tiles) == 0:
        return float(max(1, max(predictions.dimensions) // 1024))
    edges = [np.unique(np.concatenate([tiles[c], tiles[c] + tiles["extent"]]))
             for c in ("x", "y")]
    steps = np.concatenate([np.diff(e) for e in edges])
    step = float(steps[steps > 0].min()) if np.any(steps > 0) else float(tiles["extent"].max())
    return max(1.0, math.floor(step / 4))


@renamed_keywords(class_name="positive_class")
def write_probability_slide(path: str | Path, predictions: SlidePredictions,
                            positive_class: str, *, downsample: float | None = None,
                            tile_size: int = 256, overwrite: bool = False) -> Path:
    """Write the averaged probability of ``positive_class`` as a uint8 pyramidal TIFF.

    Args:
        path: the output ``.tif``.
        predictions: the slide's tile predictions.
        positive_class: the class whose probability is written (``class_name=``, its
            old name, is still taken, with a :class:`DeprecationWarning`).
        downsample: level-0 pixels per pixel of the file's level 0 (default
            :func:`default_downsample`); the resolution tags say the matching mpp.
        tile_size: TIFF tile side (multiple of 16).
        overwrite: replace an existing file.
    """
    grid = predictions.grid(predictions.check_class(positive_class))
    downsample = default_downsample(predictions) if downsample is None else float(downsample)
    if not downsample >= 1 or not math.isfinite(downsample):
        raise ConfigError(f"downsample={downsample}: give 1 (full resolution) or more "
                          "level-0 pixels per probability-map pixel")
    width0, height0 = predictions.dimensions
    width = max(1, round(width0 / downsample))
    height = max(1, round(height0 / downsample))
    sizes = pyramid_dimensions(width, height, tile_size)
    padded = grid.padded()
    columns: dict[int, np.ndarray] = {}

    def render(level: int, top: int, rows: int) -> np.ndarray:
        level_width, level_height = sizes[level]
        if level not in columns:
            columns[level] = grid.column_cells(level_width, width0 / level_width)
        if grid.empty:
            return np.zeros((rows, level_width), np.uint8)
        cells = grid.row_cells(top, rows, height0 / level_height)
        values = padded[cells[:, None], columns[level][None, :]]
        return probability_levels(values)  # NaN (never predicted) becomes 0

    mpp = None if predictions.mpp is None else predictions.mpp * width0 / width
    description = (f"histotile probability map of {predictions.slide_name}: {positive_class} "
                   "(uint8, value / 255 = probability; 0 where no tile was predicted)")
    return write_pyramid_tiff(path, sizes, render, mpp=mpp, tile_size=tile_size,
                              overwrite=overwrite, description=description, channels=1)
