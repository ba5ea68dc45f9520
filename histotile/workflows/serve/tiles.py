"""Deep Zoom tiles of slides, with a bounded cache of recently served tiles.

OpenSlide formats are tiled by OpenSlide's own ``DeepZoomGenerator``. Other images
(plain TIFF, JPEG, PNG read by histotile's readers) go through the same generator via
:class:`SlideAsOpenSlide`, a small adapter giving a histotile :class:`~histotile.wsi.Slide`
the OpenSlide interface it reads (levels, downsamples, ``read_region``), so both share
one tiling arithmetic (levels, overlaps, edge tiles) instead of a second hand-written one.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from histotile.wsi import Slide, open_slide

_OPEN_SLIDES = 16  # slides kept open at once (least recently used closed first)


class TileNotFound(LookupError):
    """The tile lies outside the slide's Deep Zoom pyramid."""


class TileCache:
    """Least-recently-used JPEG tiles, bounded by their total size in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return data

    def put(self, key: tuple, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


class SlideAsOpenSlide:
    """A histotile :class:`Slide` with the part of OpenSlide's interface that
    ``DeepZoomGenerator`` uses (regions come back as RGBA PIL images)."""

    def __init__(self, slide: Slide) -> None:
        self._slide = slide
        self.properties: dict[str, str] = {}
        self.dimensions = slide.dimensions
        self.level_count = slide.level_count
        self.level_dimensions = tuple(tuple(d) for d in slide.level_dimensions)
        self.level_downsamples = tuple(slide.level_downsamples)

    def get_best_level_for_downsample(self, downsample: float) -> int:
        return self._slide.best_level_for_downsample(downsample)

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]):
        from PIL import Image

        pixels = self._slide.read_region(location, level, size)
        return Image.fromarray(pixels).convert("RGBA")


@dataclass
class _Opened:
    slide: Slide
    generator: Any


class DeepZoomTiles:
    """Deep Zoom descriptors and JPEG tiles of slides given by path.

    Thread-safe: tiles are made in worker threads (OpenSlide and histotile's readers
    allow concurrent reads)."""

    def __init__(self, tile_size: int = 254, overlap: int = 1, quality: int = 80,
                 cache_bytes: int = 64 * 1024 * 1024) -> None:
        self.tile_size = tile_size
        self.overlap = overlap
        self.quality = quality
        self.cache = TileCache(cache_bytes)
        self._open: OrderedDict[Path, _Opened] = OrderedDict()
        self._lock = threading.Lock()

    def generator(self, path: Path):
        """The ``DeepZoomGenerator`` of the slide at ``path`` (opened once, kept)."""
        with self._lock:
            opened = self._open.get(path)
            if opened is not None:
                self._open.move_to_end(path)
                return opened.generator
        slide = open_slide(path)
        generator = make_generator(slide, self.tile_size, self.overlap)
        with self._lock:
            self._open[path] = _Opened(slide, generator)
            while len(self._open) > _OPEN_SLIDES:
                _, old = self._open.popitem(last=False)
                old.slide.close()
        return generator

    def dzi(self, path: Path) -> str:
        return self.generator(path).get_dzi("jpeg")

    def cached(self, path: Path, level: int, col: int, row: int) -> bytes | None:
        return self.cache.get((str(path), level, col, row))

    def tile(self, path: Path, level: int, col: int, row: int) -> bytes:
        """The JPEG bytes of one tile (cached). Raises :class:`TileNotFound` outside the
        pyramid."""
        key = (str(path), level, col, row)
        data = self.cache.get(key)
        if data is not None:
            return data
        generator = self.generator(path)
        if not 0 <= level < generator.level_count:
            raise TileNotFound(f"level {level} is outside 0-{generator.level_count - 1}")
        cols, rows = generator.level_tiles[level]
        if not (0 <= col < cols and 0 <= row < rows):
            raise TileNotFound(f"tile {col}_{row} is outside level {level} "
                               f"({cols} x {rows} tiles)")
        image = generator.get_tile(level, (col, row))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=self.quality)
        data = buffer.getvalue()
        self.cache.put(key, data)
        return data

    def close(self) -> None:
        with self._lock:
            for opened in self._open.values():
                opened.slide.close()
            self._open.clear()


def make_generator(slide: Slide, tile_size: int = 254, overlap: int = 1):
    """OpenSlide's ``DeepZoomGenerator`` over ``slide``: on the OpenSlide handle itself
    for OpenSlide formats, else on :class:`SlideAsOpenSlide`."""
    from openslide.deepzoom import DeepZoomGenerator

    reader = slide._r
    handle = getattr(reader, "_slide", None)
    import openslide

    # SlideAsOpenSlide has the part of AbstractSlide's interface that the generator uses.
    source = (handle if isinstance(handle, openslide.AbstractSlide)
              else cast(openslide.AbstractSlide, SlideAsOpenSlide(slide)))
    return DeepZoomGenerator(source, tile_size=tile_size, overlap=overlap, limit_bounds=False)


# Okabe-Ito colours (colour-blind safe) for the classes of a label mask, value 1 onwards.
_MASK_COLOURS = np.array([(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66),
                          (0, 114, 178), (213, 94, 0), (204, 121, 167)], np.uint8)


def thumbnail_png(path: Path, max_size: int = 1024) -> bytes:
    """A PNG of an annotation image shrunk to ``max_size`` px: a painted overlay as it
    is; a label mask (``*.mask.*``, one value per class) coloured per value, value 0
    (the first class) transparent."""
    from PIL import Image

    with open_slide(path) as slide:
        pixels = slide.thumbnail(max_size)
    if ".mask." in path.name.lower():
        labels = pixels[..., 0]
        rgba = np.zeros((*labels.shape, 4), np.uint8)
        marked = labels > 0
        rgba[marked, :3] = _MASK_COLOURS[(labels[marked].astype(np.int64) - 1)
                                         % len(_MASK_COLOURS)]
        rgba[marked, 3] = 255
        pixels = rgba
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "PNG")
    return buffer.getvalue()
