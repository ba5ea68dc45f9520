"""Heatmap slides: the slide with its predictions alpha-blended over it.

:func:`write_heatmap` writes a pyramidal, tiled, JPEG-compressed TIFF (OpenSlide and
QuPath open it, with the slide's resolution scaled to the output) streamed band by band
through :func:`histotile.wsi.tiff_writer.write_pyramid_tiff`: every pyramid level is
rendered from the slide at that level's resolution plus the probability grid, so memory
is about a few bands whatever the slide size. Reading and blending the next band runs
in a helper thread while the writer compresses the current one. Optionally a PNG
preview with a legend, and the bare probability map as a float32 TIFF.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from histotile._atomic import atomic_path, check_writable
from histotile._deprecation import RenamedAttribute, renamed_keywords
from histotile._threads import thread_budget
from histotile.errors import ConfigError, LevelError
from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
from histotile.postprocess.legend import with_legend, write_png
from histotile.postprocess.maps import ProbabilityGrid
from histotile.postprocess.predictions import SlidePredictions
from histotile.postprocess.render import DEFAULT_FLOOR, BlendStyle, Colouriser, HeatmapMode
from histotile.wsi import Slide, open_slide
from histotile.wsi.tiff_writer import pyramid_dimensions, write_pyramid_tiff

Progress = Callable[[int, int], None]
"""``progress(done, total)``: cumulative units done out of ``total`` (rows here)."""

_READ_CHUNK = 8192  # widest read of one call, pixels (bounds the reader's buffers)


@dataclass(frozen=True)
class HeatmapResult:
    """What :func:`write_heatmap` wrote.

    Attributes:
        path: the heatmap TIFF.
        level_dimensions: (width, height) of each of its levels, level 0 first.
        downsample: its level 0 relative to the slide's level 0 (1.0 = full resolution).
        mpp: microns per pixel of its level 0 (None when the slide records none).
        positive_class, style: what was drawn (the class whose probability is shown)
            and how. ``class_name``, its old name, still reads it (deprecated).
        tiles_coloured: tiles whose probability reaches the threshold (threshold mode)
            or predicted tiles at or above the floor (continuous mode).
        preview_path, preview_size: the PNG preview and its (width, height), or None.
        probability_path: the probability-map TIFF, or None.
        seconds: wall time of the whole call.
    """

    path: Path
    level_dimensions: list[tuple[int, int]]
    downsample: float
    mpp: float | None
    positive_class: str
    style: BlendStyle
    tiles_coloured: int
    preview_path: Path | None
    preview_size: tuple[int, int] | None
    probability_path: Path | None
    seconds: float

    class_name = RenamedAttribute("positive_class")


def output_dimensions(slide: Slide, level: int | None, downsample: float | None
                      ) -> tuple[tuple[int, int], float]:
    """Level-0 size of a heatmap and its downsample of the slide: a stored ``level``,
    an arbitrary ``downsample`` (>= 1), or full resolution."""
    if level is not None and downsample is not None:
        raise ConfigError("give level= or downsample= for the heatmap, not both")
    if level is not None:
        if not isinstance(level, (int, np.integer)) or not 0 <= level < slide.level_count:
            raise LevelError(slide.path, f"level {level} does not exist",
                             f"the slide has levels 0 to {slide.level_count - 1}")
        return slide.level_dimensions[level], float(slide.level_downsamples[level])
    if downsample is None:
        return slide.dimensions, 1.0
    downsample = float(downsample)
    if not downsample >= 1.0 or not math.isfinite(downsample):
        raise ConfigError(f"downsample={downsample}: the heatmap downsample must be 1 (full "
                          "resolution) or more")
    width, height = slide.dimensions
    return (max(1, round(width / downsample)), max(1, round(height / downsample))), downsample


class HeatmapRenderer:
    """Bands of the heatmap's pyramid levels: slide pixels at each level's resolution
    with the overlay blended in (exactly the pixels :func:`write_heatmap` compresses).

    Args:
        slide: the open slide.
        colouriser: the probability grid and blend style.
        sizes: (width, height) of each output level; the first is the heatmap's level 0.
    """

    def __init__(self, slide: Slide, colouriser: Colouriser,
                 sizes: list[tuple[int, int]]) -> None:
        self.slide = slide
        self.colouriser = colouriser
        self.sizes = sizes
        stored = {tuple(d): i for i, d in enumerate(slide.level_dimensions)}
        self.exact = [stored.get(tuple(size)) for size in sizes]

    def downsamples(self, level: int) -> tuple[float, float]:
        """Level-0 pixels per output pixel of ``level``, (x, y)."""
        width0, height0 = self.slide.dimensions
        width, height = self.sizes[level]
        return width0 / width, height0 / height

    def render(self, level: int, top: int, rows: int) -> np.ndarray:
        """Rows ``top .. top+rows`` of output ``level``, RGB uint8 (rows, width, 3)."""
        band = self.read(level, top, rows)
        ds_x, ds_y = self.downsamples(level)
        return self.colouriser.blend_band(band, top, ds_x, ds_y)

    def read(self, level: int, top: int, rows: int) -> np.ndarray:
        """The slide's pixels for those rows, before blending (a private copy)."""
        width = self.sizes[level][0]
        stored = self.exact[level]
        if stored is None:
            return self._resampled(level, top, rows, width)
        if width <= _READ_CHUNK:
            band = self.slide.read_level_rows(stored, top, rows)
            if band.base is not None or not band.flags.writeable:
                band = band.copy()  # never blend into a reader's cached pixels
            return band
        # Wide levels are read in column chunks into one array: the reader's transient
        # buffers (RGBA, then RGB) stay at a chunk's size, not the band's.
        downsample = self.slide.level_downsamples[stored]
        band = np.empty((rows, width, 3), np.uint8)
        y0 = round(top * downsample)
        for left in range(0, width, _READ_CHUNK):
            chunk = min(_READ_CHUNK, width - left)
            band[:, left:left + chunk] = self.slide.read_region(
                (round(left * downsample), y0), stored, (chunk, rows))
        return band

    def _resampled(self, level: int, top: int, rows: int, width: int) -> np.ndarray:
        ds_x, ds_y = self.downsamples(level)
        source = self.slide.best_level_for_downsample(min(ds_x, ds_y))
        source_ds = self.slide.level_downsamples[source]
        source_height = self.slide.level_dimensions[source][1]
        first = min(source_height - 1, math.floor(top * ds_y / source_ds))
        last = min(source_height, max(first + 1, math.ceil((top + rows) * ds_y / source_ds)))
        block = self.slide.read_level_rows(source, first, last - first)
        return cv2.resize(block, (width, rows), interpolation=cv2.INTER_AREA)


class _Prefetcher:
    """Runs ``render`` for the bands the TIFF writer will ask for next in helper
    threads, ``ahead`` bands ahead, so reading and blending overlap compression and
    each other (slide reads are thread-safe; decoding releases the GIL). Memory: about
    ``ahead + 2`` bands."""

    def __init__(self, render: Callable[[int, int, int], np.ndarray],
                 calls: list[tuple[int, int, int]], ahead: int = 2,
                 workers: int = 2) -> None:
        self.render = render
        self.calls = deque(calls)
        self.ahead = ahead
        self.pending: deque[tuple[tuple[int, int, int], Future]] = deque()
        self.pool = (ThreadPoolExecutor(workers, thread_name_prefix="histotile-heatmap")
                     if workers > 0 else None)

    def __call__(self, level: int, top: int, rows: int) -> np.ndarray:
        if self.pool is None:
            return self.render(level, top, rows)
        while len(self.pending) <= self.ahead and self.calls:
            call = self.calls.popleft()
            self.pending.append((call, self.pool.submit(self.render, *call)))
        if self.pending and self.pending[0][0] == (level, top, rows):
            return self.pending.popleft()[1].result()
        return self.render(level, top, rows)  # an unexpected order: render directly

    def close(self) -> None:
        for _, future in self.pending:
            future.cancel()
        if self.pool is not None:
            self.pool.shutdown(wait=True)


@renamed_keywords(class_name="positive_class")
def write_heatmap(
    slide_path: str | Path,
    predictions: SlidePredictions,
    out_path: str | Path,
    *,
    positive_class: str,
    mode: HeatmapMode = BlendStyle.mode,
    threshold: float = DEFAULT_TILE_THRESHOLD,
    color: tuple[int, int, int] = BlendStyle.color,
    alpha: float = BlendStyle.alpha,
    colormap: str = BlendStyle.colormap,
    floor: float = DEFAULT_FLOOR,
    level: int | None = None,
    downsample: float | None = None,
    tile_size: int = 512,
    quality: int = 90,
    preview_path: str | Path | None = None,
    preview_size: int = 2048,
    probability_path: str | Path | None = None,
    match_name: bool = True,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> HeatmapResult:
    """Write the slide with ``positive_class``'s predictions alpha-blended over it.

    Args:
        slide_path: the slide the predictions were made on (checked: dimensions, name).
        predictions: the tile predictions (:func:`predict_slide`, :func:`load_predictions`).
        out_path: the heatmap TIFF (pyramidal, tiled JPEG; OpenSlide/QuPath open it).
        positive_class: the class whose probability is drawn (``class_name=``, its old
            name, is still taken, with a :class:`DeprecationWarning`).
        mode: ``"threshold"``: ``color`` over tiles whose probability is at least
            ``threshold``; ``"continuous"``: ``colormap`` colour of the probability over
            every predicted tile whose probability reaches ``floor``. Pixels of
            uncoloured tiles and background equal the slide's (up to JPEG compression).
        alpha: colour opacity: ``out = round((1 - alpha) * pixel + alpha * colour)``.
        level, downsample: resolution of the heatmap's level 0: a stored slide level,
            or a downsample of slide level 0 (>= 1); default full resolution.
        tile_size, quality: TIFF tile side (multiple of 16) and JPEG quality.
        preview_path: a PNG preview (longest side ``preview_size`` px, legend under it).
        probability_path: the bare probability map as a float32 TIFF (NaN where no tile
            was predicted), one pixel per grid cell.
        match_name: refuse predictions made on a slide of another name.
        overwrite: replace existing outputs (otherwise refused before anything is read).
        progress: ``progress(rows_done, rows_total)`` over all pyramid levels.
    """
    started = time.perf_counter()
    style = BlendStyle(mode, threshold, color, alpha, colormap, floor)
    predictions.check_class(positive_class)
    outputs = [Path(out_path)] + [Path(p) for p in (preview_path, probability_path)
                                  if p is not None]
    _check_outputs(Path(slide_path), outputs, overwrite)
    grid = predictions.grid(positive_class)
    colouriser = Colouriser(grid, style)
    probabilities = predictions.probabilities(positive_class)
    coloured = int(np.sum(probabilities >= style.threshold) if mode == "threshold"
                   else np.sum(np.nan_to_num(probabilities, nan=-1.0) >= style.floor))
    with open_slide(slide_path) as slide:
        predictions.check_slide(slide, match_name=match_name)
        (width, height), out_downsample = output_dimensions(slide, level, downsample)
        sizes = pyramid_dimensions(width, height, tile_size)
        description = (f"histotile heatmap of {predictions.slide_name}: {positive_class} "
                       f"({style.mode}, threshold {style.threshold:g}, alpha {style.alpha:g})")
        mpp = _write_levels(slide, colouriser, sizes, out_path, description, tile_size,
                            quality, overwrite, progress)
        preview_dims = None
        if preview_path is not None:
            caption = (f"{predictions.slide_name}  |  {len(predictions)} tiles, "
                       f"{coloured} coloured  |  model {predictions.model.get('name', '?')}")
            preview_dims = _write_preview(slide, colouriser, style, positive_class, caption,
                                          preview_path, preview_size, overwrite)
        if probability_path is not None:
            write_probability_tiff(probability_path, grid, slide.dimensions, slide.mpp,
                                   overwrite=overwrite)
    return HeatmapResult(Path(out_path), sizes, out_downsample, mpp, positive_class, style,
                         coloured, None if preview_path is None else Path(preview_path),
                         preview_dims,
                         None if probability_path is None else Path(probability_path),
                         time.perf_counter() - started)


def _write_levels(slide: Slide, colouriser: Colouriser, sizes: list[tuple[int, int]],
                  out_path: str | Path, description: str, tile_size: int, quality: int,
                  overwrite: bool, progress: Progress | None) -> float | None:
    """Render and write every pyramid level of the heatmap TIFF; returns its level-0
    microns per pixel (None when the slide has none)."""
    width = sizes[0][0]
    renderer = HeatmapRenderer(slide, colouriser, sizes)
    total_rows = sum(h for _, h in sizes)
    done = [0]

    def render(out_level: int, top: int, rows: int) -> np.ndarray:
        # Counted as bands are handed to the writer (the writer's own on_band misses
        # the last band of each level, which it never asks the generator past).
        band = prefetch(out_level, top, rows)
        done[0] += rows
        if progress is not None:
            progress(done[0], total_rows)
        return band

    calls = [(lv, top, min(tile_size, h - top)) for lv, (_, h) in enumerate(sizes)
             for top in range(0, h, tile_size)]
    # Reading ahead in helper threads overlaps compression, unless this process may
    # use only one core (a one-thread Dask worker): then bands render in turn.
    prefetch = _Prefetcher(renderer.render, calls, workers=2 if thread_budget() >= 2 else 0)
    mpp = None if slide.mpp is None else slide.mpp * slide.dimensions[0] / width
    try:
        write_pyramid_tiff(out_path, sizes, render, mpp=mpp, tile_size=tile_size,
                           quality=quality, overwrite=overwrite, description=description)
    finally:
        prefetch.close()
    return mpp


def _write_preview(slide: Slide, colouriser: Colouriser, style: BlendStyle,
                   positive_class: str, caption: str, preview_path: str | Path,
                   preview_size: int, overwrite: bool) -> tuple[int, int]:
    """The PNG preview with its legend; returns its width and height in pixels."""
    preview = render_preview(slide, colouriser, preview_size)
    preview_mpp = None if slide.mpp is None else \
        slide.mpp * slide.dimensions[0] / preview.shape[1]
    image = with_legend(preview, style, positive_class, caption, mpp=preview_mpp)
    with atomic_path(preview_path, overwrite=overwrite) as tmp:
        write_png(tmp, image)
    return (image.shape[1], image.shape[0])


def render_preview(slide: Slide, colouriser: Colouriser, max_size: int) -> np.ndarray:
    """The slide's thumbnail (longest side at most ``max_size``) with the overlay."""
    if max_size < 16:
        raise ConfigError(f"preview_size={max_size}: give at least 16 pixels")
    thumb = np.array(slide.thumbnail(max_size))
    width0, height0 = slide.dimensions
    return colouriser.blend_image(thumb, width0 / thumb.shape[1], height0 / thumb.shape[0])


def write_probability_tiff(path: str | Path, grid: ProbabilityGrid,
                           dimensions: tuple[int, int], mpp: float | None, *,
                           max_side: int = 16384, overwrite: bool = False) -> Path:
    """The averaged probability as a float32 single-channel TIFF (NaN: never predicted),
    one pixel per smallest grid cell (at most ``max_side`` px on the longest side)."""
    import tifffile

    width0, height0 = dimensions
    steps = np.concatenate([np.diff(grid.x_edges), np.diff(grid.y_edges)])
    step = float(steps[steps > 0].min()) if np.any(steps > 0) else float(max(dimensions))
    step = max(step, max(width0, height0) / max_side, 1.0)
    width = max(1, round(width0 / step))
    height = max(1, round(height0 / step))
    image = grid.render(width, height, width0 / width, height0 / height)
    resolution: dict[str, Any] = {}  # TIFF tags, when the slide has a resolution
    if mpp is not None:
        pixels_per_cm = 1e4 / (mpp * width0 / width)
        resolution = {"resolution": (pixels_per_cm, pixels_per_cm),
                      "resolutionunit": "CENTIMETER"}
    with atomic_path(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, image.astype(np.float32), photometric="minisblack",
                         compression="zlib", metadata=None, **resolution)
    return Path(path)


def _check_outputs(slide_path: Path, outputs: list[Path], overwrite: bool) -> None:
    """Refuse existing outputs (unless ``overwrite``), outputs that are the slide, and
    one path given for two outputs, before any work starts."""
    resolved = [p.resolve() for p in outputs]
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"{outputs[0]}: the heatmap, preview and probability outputs "
                          "must be different files")
    if slide_path.resolve() in resolved:
        raise ConfigError(f"{slide_path}: an output path is the slide itself; choose "
                          "another output path (the slide is never overwritten)")
    for path in outputs:
        check_writable(path, overwrite)
