"""A low-resolution view of a slide in bounded time, even without a low pyramid level.

:meth:`Slide.thumbnail` streams the best stored level; for a single-level giant image
(a 200,000 x 200,000 px tiled TIFF without a pyramid) that is every pixel of the slide:
minutes to hours of decoding for a view of a few megapixels. :func:`overview` reads
that way only while the level costs at most ``max_read_pixels``; beyond, it *samples*:
the view is cut into a grid of at most ``max_windows`` cells and each cell is filled by
one small window read at the cell's centre (stretched to the cell). The read calls are
then at most ``max_windows`` and the pixels read ``max_windows * window_side**2``,
whatever the slide size. The view is coarser (features smaller than a cell may be missed between
windows), which is what tissue detection can afford; convert such slides to a pyramidal
TIFF for an exact view.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import cv2
import numpy as np

log = logging.getLogger(__name__)

# Streaming more than this many level pixels for one overview is replaced by sampling:
# 2 gigapixels stream in well under a minute (a 100,000 x 50,000 slide whose smallest
# level is 1/4 still streams); a 40-gigapixel single level would take many minutes.
MAX_READ_PIXELS = 2**31
# A sampled view: at most 48 x 48 windows of 64 x 64 px. A window usually decodes one
# stored tile (512 px: 0.26 MP), so a sample costs about 0.6 gigapixels of decoding, a few
# seconds, against 40 gigapixels for a 200,000 px square read in full.
MAX_WINDOWS = 48 * 48
WINDOW_SIDE = 64


def overview(slide, size: tuple[int, int], *, max_read_pixels: int = MAX_READ_PIXELS,
             max_windows: int = MAX_WINDOWS, window_side: int = WINDOW_SIDE,
             progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The whole slide as RGB uint8 fitting ``size`` (width, height): exactly ``size``
    when sampled, else :meth:`Slide.thumbnail` of it (aspect ratio kept).

    Args:
        slide: an open :class:`~histotile.wsi.Slide`.
        size: the view's (width, height) in pixels.
        max_read_pixels: read the best stored level in full only when it has at most this
            many pixels; else sample windows (see the module docstring).
        max_windows: most windows (read calls) of a sampled view.
        window_side: side of a window in pixels of the level read (less when cells are
            smaller).
        progress: ``progress(done, total)`` after every row of windows of a sampled view.
    """
    out_w, out_h = max(1, int(size[0])), max(1, int(size[1]))
    width0, height0 = slide.dimensions
    factor = max(width0 / out_w, height0 / out_h, 1.0)
    level = slide.best_level_for_downsample(factor)
    level_w, level_h = slide.level_dimensions[level]
    if level_w * level_h <= max_read_pixels:
        return slide.thumbnail((out_w, out_h))
    return _sampled(slide, level, (out_w, out_h), max_windows, window_side, progress)


def _sampled(slide, level: int, size: tuple[int, int], max_windows: int, side: int,
             progress) -> np.ndarray:
    out_w, out_h = size
    width0, height0 = slide.dimensions
    downsample = slide.level_downsamples[level]
    level_w, level_h = slide.level_dimensions[level]
    # Cells: as square as the view allows, at most max_windows of them.
    cells = max(1, min(max_windows, out_w * out_h))
    cols = max(1, min(out_w, round(math.sqrt(cells * out_w / out_h))))
    rows = max(1, min(out_h, cells // cols))
    cell_w, cell_h = level_w / cols, level_h / rows  # level pixels per cell
    win_w, win_h = max(1, min(side, int(cell_w))), max(1, min(side, int(cell_h)))
    log.warning("%s: %d x %d px with no level below 1/%g; tissue detection reads %d "
                "windows of %d x %d px (one per cell of a %d x %d grid) instead of %.1f "
                "gigapixels (a pyramidal TIFF gives an exact view)", slide.path,
                width0, height0, downsample, cols * rows, win_w, win_h, cols, rows,
                level_w * level_h / 1e9)
    view = np.empty((out_h, out_w, 3), np.uint8)
    x_edges = np.linspace(0, out_w, cols + 1).round().astype(int)
    y_edges = np.linspace(0, out_h, rows + 1).round().astype(int)
    for r in range(rows):
        top = int((r + 0.5) * cell_h - win_h / 2)
        for c in range(cols):
            x0, x1, y0, y1 = x_edges[c], x_edges[c + 1], y_edges[r], y_edges[r + 1]
            if x1 <= x0 or y1 <= y0:
                continue
            left = int((c + 0.5) * cell_w - win_w / 2)
            window = slide.read_region((round(left * downsample), round(top * downsample)),
                                       level, (win_w, win_h))
            view[y0:y1, x0:x1] = cv2.resize(window, (x1 - x0, y1 - y0),
                                            interpolation=cv2.INTER_AREA)
        if progress is not None:
            progress(r + 1, rows)
    return view
