"""Streaming writer of pyramidal, tiled, JPEG-compressed TIFFs that OpenSlide opens.

Pixels come from a callback that renders one band of rows of one level at a time, so
memory stays at about one band (``tile_size`` rows x level width x 3 bytes) whatever the
image size. Each level is rendered from the source at its own resolution rather than
shrunk from the level above, which keeps the writer free of whole-level buffers.

Levels are written as successive full-resolution-first pages (``subfiletype`` 1 for the
reduced ones): the layout OpenSlide's generic-TIFF reader and QuPath expect. The file is
written under a temporary name and renamed when complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from histotile._atomic import atomic_path
from histotile._threads import thread_budget

BandRenderer = Callable[[int, int, int], np.ndarray]
"""``render(level, top, rows) -> (rows, level_width, 3) uint8``: rows in level pixels
((rows, level_width) for a single-channel pyramid)."""


def pyramid_dimensions(width: int, height: int, tile_size: int = 512,
                       factor: int = 2, min_size: int | None = None) -> list[tuple[int, int]]:
    """Level sizes for a pyramid: each level ``factor`` times smaller, down to the first
    level that fits in ``min_size`` (default: one tile)."""
    min_size = tile_size if min_size is None else min_size
    sizes = [(int(width), int(height))]
    while max(sizes[-1]) > min_size:
        w, h = sizes[-1]
        sizes.append((max(1, -(-w // factor)), max(1, -(-h // factor))))
    return sizes


def ascii_safe(text: str | None) -> str | None:
    """``text`` as 7-bit ASCII (TIFF strings must be): other characters become ``\\u``
    escapes, so ``ünïcødé 病理`` survives as readable escapes; keep full names in JSON."""
    return None if text is None else text.encode("ascii", "backslashreplace").decode("ascii")


def write_pyramid_tiff(
    path: str | Path,
    level_dimensions: list[tuple[int, int]],
    render: BandRenderer,
    *,
    mpp: float | None = None,
    tile_size: int = 512,
    quality: int = 90,
    overwrite: bool = False,
    description: str | None = None,
    on_band: Callable[[int, int], None] | None = None,
    channels: int = 3,
) -> Path:
    """Write a pyramidal tiled JPEG TIFF.

    Args:
        path: output file; refused if it exists unless ``overwrite``.
        level_dimensions: (width, height) of every level, level 0 first.
        render: callback giving RGB uint8 rows ``top .. top+rows`` of a level.
        mpp: level-0 microns per pixel, written to the resolution tags (OpenSlide reads
            it back as ``openslide.mpp-x``); None writes no resolution.
        tile_size: TIFF tile side in pixels (multiple of 16).
        quality: JPEG quality, 1-100.
        on_band: called with (level, rows written) after every band, for progress bars.
        description: the ImageDescription of level 0 (made ASCII-safe, see
            :func:`ascii_safe`).
        channels: 3 (RGB, JPEG) or 1 (grey values such as a probability map, written
            losslessly with deflate so values survive exactly).
    """
    import tifffile

    if tile_size % 16:
        raise ValueError(f"tile_size must be a multiple of 16, got {tile_size}")
    width0 = level_dimensions[0][0]
    grey = channels == 1
    shape_tail = () if grey else (3,)
    with atomic_path(path, overwrite=overwrite) as tmp:
        big = sum(w * h * 3 for w, h in level_dimensions) > 2**32 - 2**25
        with tifffile.TiffWriter(tmp, bigtiff=big) as writer:
            for level, (width, height) in enumerate(level_dimensions):
                downsample = width0 / width
                resolution: dict[str, Any] = {}  # TIFF tags, when mpp is known
                if mpp is not None:
                    pixels_per_cm = 1e4 / (mpp * downsample)
                    resolution = {"resolution": (pixels_per_cm, pixels_per_cm),
                                  "resolutionunit": "CENTIMETER"}
                writer.write(
                    _tiles(level, width, height, render, tile_size, on_band, shape_tail),
                    shape=(height, width, *shape_tail),
                    dtype=np.uint8,
                    tile=(tile_size, tile_size),
                    photometric="minisblack" if grey else "rgb",
                    compression="zlib" if grey else "jpeg",
                    compressionargs={"level": 6 if grey else quality},
                    subfiletype=0 if level == 0 else 1,
                    description=ascii_safe(description) if level == 0 else None,
                    metadata=None,
                    maxworkers=min(2, thread_budget()),
                    # tifffile buffers 256 MB of tiles for its compression threads by
                    # default; 32 MB keeps both cores busy at a fraction of the memory.
                    buffersize=32 * 2**20,
                    **resolution,
                )
    return Path(path)


def _tiles(level: int, width: int, height: int, render: BandRenderer, tile_size: int,
           on_band: Callable[[int, int], None] | None,
           shape_tail: tuple[int, ...] = (3,)) -> Iterator[np.ndarray]:
    columns = -(-width // tile_size)
    for top in range(0, height, tile_size):
        rows = min(tile_size, height - top)
        band = render(level, top, rows)
        if band.shape != (rows, width, *shape_tail) or band.dtype != np.uint8:
            raise ValueError(f"renderer returned {band.shape} {band.dtype} for level {level}, "
                             f"rows {top}..{top + rows}; expected "
                             f"{(rows, width, *shape_tail)} uint8")
        # Reported once the band is rendered: tifffile stops pulling tiles after the
        # last one, so a call placed after the loop would never fire for the last band.
        if on_band is not None:
            on_band(level, rows)
        if rows == tile_size and width == columns * tile_size:
            padded = band  # no copy needed: the band is a whole number of tiles
        else:
            padded = np.full((tile_size, columns * tile_size, *shape_tail), 255,
                             dtype=np.uint8)
            padded[:rows, :width] = band
        for column in range(columns):
            yield padded[:, column * tile_size:(column + 1) * tile_size]
