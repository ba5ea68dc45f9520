"""Reading training tiles: :class:`TileReader` (one tile of a table, read through
:mod:`histotile.tiling.tile_io` as the manifest describes it), :class:`TileSource` (batches
for the backends: parallel reads, a RAM or disk cache of the tiles, stain normalisation and
augmentation) and :class:`DiskTiles`.

Torch is imported only inside :meth:`TileSource._read` (its DataLoader runs the parallel
reads); the rest is numpy. The table these read from is :mod:`histotile.models.data`.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from histotile.errors import DatasetError, HistotileError
from histotile.models.augment import augment as augment_tiles
from histotile.models.augment import flip

log = logging.getLogger("histotile.models")

_SLIDE_CACHE = 16  # open slides kept per reading process


class TileReader:
    """Reads tile ``i`` of a table as uint8 RGB ``(tile_size, tile_size, 3)``.

    Picklable (paths and integer arrays only); each process opens the slides it needs
    lazily and keeps the last few open, so DataLoader workers read from slides by path.
    """

    def __init__(self, paths: list[str], x: np.ndarray, y: np.ndarray, level: np.ndarray,
                 read_size: np.ndarray, tile_size: int) -> None:
        self.paths, self.x, self.y = paths, x, y
        self.level, self.read_size, self.tile_size = level, read_size, int(tile_size)
        self._slides: OrderedDict[str, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_slides"] = OrderedDict()
        return state

    def _slide(self, path: str):
        from histotile.wsi import open_slide

        slide = self._slides.pop(path, None)
        if slide is None:
            slide = open_slide(path)
        self._slides[path] = slide
        while len(self._slides) > _SLIDE_CACHE:
            self._slides.popitem(last=False)[1].close()
        return slide

    def __getitem__(self, i: int) -> np.ndarray:
        from histotile.tiling.tile_io import read_tile, resize_tile

        path = self.paths[i]
        try:
            slide = self._slide(path)
            read_size = int(self.read_size[i])
            if read_size < 0:  # a whole image (ImageFolder)
                width, height = slide.dimensions
                pixels = slide.read_region((0, 0), 0, (width, height))
                if width != height:
                    import cv2

                    return cv2.resize(pixels, (self.tile_size, self.tile_size),
                                      interpolation=cv2.INTER_AREA)
                return np.ascontiguousarray(resize_tile(pixels, self.tile_size))
            return np.ascontiguousarray(read_tile(slide, int(self.x[i]), int(self.y[i]),
                                                  int(self.level[i]), read_size,
                                                  self.tile_size))
        except HistotileError as error:
            raise DatasetError(f"{path}: tile {i} at ({self.x[i]}, {self.y[i]}) cannot be "
                               f"read: {error}; fix or remove the file") from None

    def close(self) -> None:
        for slide in self._slides.values():
            slide.close()
        self._slides.clear()


augment_batch = flip
"""Flips and 90-degree rotations of a batch (see :mod:`histotile.models.augment`)."""


def worker_init(_worker_id: int) -> None:
    """DataLoader worker set-up: one torch thread per worker (the cores belong to training).

    OpenCV's thread count is deliberately left alone: ``cv2.setNumThreads`` in a child
    forked after the parent used OpenCV's thread pool (tiling, then training, in one
    process) blocks forever on the pool's lock, which fork copied held."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


def _collate(items: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    index = np.array([i for i, _ in items], np.int64)
    return index, np.stack([tile for _, tile in items])


class _Indexed:
    """(index, tile) pairs for the loader, so batches say which rows they hold."""

    def __init__(self, reader: TileReader, rows: np.ndarray) -> None:
        self.reader, self.rows = reader, rows

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray]:
        row = int(self.rows[i])
        return row, self.reader[row]


class DiskTiles:
    """uint8 tiles of one shape in an anonymous temporary file: written once in order,
    then read back in any order. The file is unlinked as soon as it is created, so it
    never outlives the process (not even a crash) and its pages stay in the kernel's
    page cache rather than in this process's memory.

    Args:
        count: number of tiles.
        shape: one tile's shape, e.g. ``(128, 128, 3)``.
        directory: where the file lives (None: the system's temporary folder).
    """

    def __init__(self, count: int, shape: tuple[int, ...], directory: str | Path | None) -> None:
        import tempfile

        self.count, self.shape = int(count), tuple(int(v) for v in shape)
        self.tile_bytes = int(np.prod(self.shape))
        fd, path = tempfile.mkstemp(prefix="histotile-tiles-", suffix=".bin", dir=directory)
        os.unlink(path)
        self._fd: int | None = fd

    def _open(self) -> int:
        if self._fd is None:
            raise ValueError("the tile cache's file is closed")
        return self._fd

    def __setitem__(self, positions: np.ndarray, tiles: np.ndarray) -> None:
        positions = np.asarray(positions, np.int64)
        tiles = np.ascontiguousarray(tiles, np.uint8)
        if positions.size and np.all(np.diff(positions) == 1):  # one write for a run
            os.pwrite(self._open(), tiles.tobytes(), int(positions[0]) * self.tile_bytes)
            return
        for position, tile in zip(positions, tiles):
            os.pwrite(self._open(), tile.tobytes(), int(position) * self.tile_bytes)

    def __getitem__(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, np.int64)
        out = np.empty((positions.size, *self.shape), np.uint8)
        for k, position in enumerate(positions):
            data = os.pread(self._open(), self.tile_bytes, int(position) * self.tile_bytes)
            out[k] = np.frombuffer(data, np.uint8).reshape(self.shape)
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


def _disk_cache_directory(needed: int, directory: str | Path | None) -> str | None:
    """``directory`` (or the temporary folder) when it has room for ``needed`` bytes and
    1 GiB to spare, else None."""
    import shutil
    import tempfile

    if not hasattr(os, "pread"):
        return None
    folder = str(directory or tempfile.gettempdir())
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    return folder if free >= needed + 2**30 else None


class TileSource:
    """Batches of tiles for the backends. The tiles are read from the slides once, in
    manifest (raster) order, into memory when they fit in ``cache_mb``, else into a
    temporary file (``disk_cache``, in ``cache_dir``) when the disk has room; otherwise
    they are streamed from the slides every epoch by DataLoader workers. Reading a
    shuffled epoch straight from the slides decodes a whole JPEG slide tile for each
    small tile; the on-disk copy is read back at memory-copy cost."""

    def __init__(self, reader: TileReader, *, workers: int = 1, cache_mb: float = 2048,
                 rows: np.ndarray | None = None, disk_cache: bool = True,
                 cache_dir: str | Path | None = None,
                 stain: dict[str, Any] | None = None) -> None:
        from histotile.tiling.stain import normaliser_from_dict

        self.reader = reader
        # Tiles are stain-normalised as read (once, when cached); failures counted.
        self.normaliser = normaliser_from_dict(stain)
        self.stain_failures = 0
        self.workers = int(workers)
        self.cache: np.ndarray | DiskTiles | None = None
        self._cache_pos: np.ndarray | None = None
        self.cache_kind = "streamed"
        rows = np.arange(len(reader)) if rows is None else np.unique(rows)
        shape = (reader.tile_size, reader.tile_size, 3)
        needed = rows.size * int(np.prod(shape))
        if needed <= cache_mb * 2**20:
            self.cache, self.cache_kind = np.empty((rows.size, *shape), np.uint8), "memory"
        elif disk_cache and (folder := _disk_cache_directory(needed, cache_dir)) is not None:
            self.cache, self.cache_kind = DiskTiles(rows.size, shape, folder), "disk"
        if self.cache is not None:
            self._cache_pos = np.full(len(reader), -1, np.int64)
            self._cache_pos[rows] = np.arange(rows.size)
            for index, tiles in self._stream(rows, batch_size=64):
                self.cache[self._cache_pos[index]] = tiles
            reader.close()

    def close(self) -> None:
        """Close the slides and drop the on-disk copy."""
        self.reader.close()
        if isinstance(self.cache, DiskTiles):
            self.cache.close()

    def _stream(self, rows: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray,
                                                                           np.ndarray]]:
        from histotile.tiling.stain import normalise_tiles

        for index, tiles in self._read(rows, batch_size):
            tiles, failures = normalise_tiles(self.normaliser, tiles)
            self.stain_failures += failures
            yield index, tiles

    def _read(self, rows: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray,
                                                                         np.ndarray]]:
        from torch.utils.data import DataLoader, Dataset

        if self.workers == 0:
            for start in range(0, rows.size, batch_size):
                part = rows[start:start + batch_size]
                yield part, np.stack([self.reader[int(i)] for i in part])
            return
        # _Indexed is a map-style dataset (len and item) without torch at module level.
        dataset = cast("Dataset[tuple[int, np.ndarray]]", _Indexed(self.reader, rows))
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            num_workers=min(self.workers, max(1, rows.size // batch_size)),
                            collate_fn=_collate, worker_init_fn=worker_init,
                            prefetch_factor=4, persistent_workers=False)
        yield from loader

    def batches(self, rows: np.ndarray, batch_size: int, *, shuffle: bool = False,
                rng: np.random.Generator | None = None,
                augment: bool | str | Sequence[str] = False,
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(rows, tiles)`` batches over ``rows`` (in a seeded random order when
        ``shuffle``); ``tiles`` is uint8 (n, T, T, 3), augmented when asked (``True``:
        flips; names such as ``"colour,blur"``: see :mod:`histotile.models.augment`)."""
        rows = np.asarray(rows, np.int64)
        if shuffle:
            assert rng is not None
            rows = rows[rng.permutation(rows.size)]
        if self.cache is not None:
            assert self._cache_pos is not None
            stream: Iterator = ((rows[s:s + batch_size],
                                 self.cache[self._cache_pos[rows[s:s + batch_size]]])
                                for s in range(0, rows.size, batch_size))
        else:
            stream = self._stream(rows, batch_size)
        for index, tiles in stream:
            if augment:
                assert rng is not None
                tiles = augment_tiles(tiles, rng, augment)
            yield index, tiles
