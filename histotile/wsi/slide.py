"""The :class:`Slide`: one whole-slide image (or any large image) read as RGB numpy arrays.

Coordinates follow OpenSlide: ``location`` is always in level-0 pixels, ``size`` in pixels
of the level read. Sizes are ``(width, height)``; arrays are ``(height, width, 3)``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from histotile.errors import (
    CorruptSlideError,
    HistotileError,
    LevelError,
    RegionError,
    SlideError,
    SlideNotFoundError,
    UnsupportedFormatError,
)
from histotile.wsi.backends import OpenSlideReader, PlainImageReader, TiffReader
from histotile.wsi.levels import LevelChoice, choose_level

PLAIN_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
SUPPORTED = ("OpenSlide formats (.svs .ndpi .mrxs .scn .vms .vmu .bif .tif/.tiff), "
             "plain TIFF/BigTIFF, JPEG and PNG")
# Rows per band when a whole level must be streamed (thumbnails): bounds memory to about
# band_rows x width x 3 bytes whatever the slide size.
_BAND_BYTES = 64 * 1024 * 1024


class Slide:
    """A slide opened for reading. Create with :func:`open_slide`.

    Pickles by path (it reopens lazily on first use), so it can be shipped to Dask
    workers and DataLoader processes. Thread-safe for reads.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader = None
        self._reader = _open_reader(self.path)

    # -- pickling by path -------------------------------------------------------------
    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.path = Path(state["path"])
        self._reader = None

    @property
    def _r(self):
        if self._reader is None:
            self._reader = _open_reader(self.path)
        return self._reader

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file. A closed slide reopens itself if used again."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __repr__(self) -> str:
        width, height = self.dimensions
        return (f"Slide({str(self.path)!r}, {width}x{height}, levels={self.level_count}, "
                f"mpp={self.mpp})")

    # -- metadata ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The file name without its extension (``CMU-1`` for ``/data/CMU-1.svs``)."""
        return self.path.name.split(".")[0] if self.path.suffix else self.path.name

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in pixels."""
        return self._r.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self._r.level_dimensions)

    @property
    def level_dimensions(self) -> list[tuple[int, int]]:
        """(width, height) in pixels of every level, level 0 first."""
        return list(self._r.level_dimensions)

    @property
    def level_downsamples(self) -> list[float]:
        """Downsample of every level relative to level 0 (1.0 for level 0)."""
        return list(self._r.level_downsamples)

    @property
    def mpp(self) -> float | None:
        """Level-0 microns per pixel, or None when the file does not record it."""
        return self._r.mpp

    @property
    def objective_power(self) -> float | None:
        """Scanning objective power (20.0 for a 20x scan), or None when not recorded."""
        return self._r.objective_power

    @property
    def vendor(self) -> str:
        return self._r.vendor

    @property
    def properties(self) -> dict[str, str]:
        """The format's raw metadata (OpenSlide properties for OpenSlide formats)."""
        return dict(self._r.properties)

    @property
    def associated_images(self) -> list[str]:
        """Names of the associated images (``label``, ``macro``, ``thumbnail``...)."""
        return self._r.associated_image_names()

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image as RGB uint8 (height, width, 3)."""
        if name not in self.associated_images:
            raise SlideError(self.path, f"no associated image {name!r}",
                             f"available: {', '.join(self.associated_images) or 'none'}")
        return self._r.associated_image(name)

    def level_mpp(self, level: int) -> float | None:
        """Microns per pixel at ``level`` (None without metadata)."""
        self._check_level(level)
        return None if self.mpp is None else self.mpp * self.level_downsamples[level]

    def best_level_for_downsample(self, downsample: float) -> int:
        """The level with the largest downsample not above ``downsample`` (within 1 %:
        OpenSlide averages a level's two axes, so a 32x level can read 31.995)."""
        downsamples = self.level_downsamples
        candidates = [i for i, d in enumerate(downsamples) if d <= downsample * 1.01]
        return max(candidates, key=lambda i: downsamples[i]) if candidates else 0

    def choose_level(self, *, magnification: float | None = None, mpp: float | None = None,
                     level: int | None = None) -> LevelChoice:
        """The stored level to read for a target magnification, mpp or explicit level,
        and the residual resize factor. See :func:`histotile.wsi.levels.choose_level`."""
        return choose_level(self.level_downsamples, base_mpp=self.mpp,
                            base_magnification=self.objective_power, mpp=mpp,
                            magnification=magnification, level=level, path=self.path)

    # -- pixels ------------------------------------------------------------------------
    def read_region(self, location: tuple[int, int], level: int,
                    size: tuple[int, int]) -> np.ndarray:
        """Read a region as RGB uint8 of shape (height, width, 3).

        Args:
            location: (x, y) of the top-left corner in level-0 pixels.
            level: the pyramid level to read.
            size: (width, height) in pixels of ``level``.

        Parts outside the slide are white; transparent pixels are composited onto white.
        """
        self._check_level(level)
        width, height = int(size[0]), int(size[1])
        if width <= 0 or height <= 0:
            raise RegionError(self.path, f"region size must be positive, got {size}")
        if width * height > 2**31:
            raise RegionError(self.path, f"region {size} is too large to hold in memory",
                              "read it in smaller blocks")
        x, y = int(location[0]), int(location[1])
        reader = self._r
        if reader.handles_level0_location:
            return reader.read_region((x, y), level, (width, height))
        downsample = self.level_downsamples[level]
        level_width, level_height = self.level_dimensions[level]
        left, top = math.floor(x / downsample), math.floor(y / downsample)
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + width, level_width), min(top + height, level_height)
        if x0 == left and y0 == top and x1 - x0 == width and y1 - y0 == height:
            return reader.read_level(level, x0, y0, width, height)
        canvas = np.full((height, width, 3), 255, dtype=np.uint8)
        if x1 > x0 and y1 > y0:
            canvas[y0 - top:y1 - top, x0 - left:x1 - left] = reader.read_level(
                level, x0, y0, x1 - x0, y1 - y0)
        return canvas

    def read_level_rows(self, level: int, y: int, height: int) -> np.ndarray:
        """Rows ``y .. y+height`` (pixels of ``level``) across the full width of a level."""
        downsample = self.level_downsamples[level]
        width = self.level_dimensions[level][0]
        return self.read_region((0, round(y * downsample)), level, (width, height))

    def thumbnail(self, max_size: int | tuple[int, int] = 1024) -> np.ndarray:
        """The whole slide shrunk to fit ``max_size`` (pixels; an int bounds both sides),
        aspect ratio kept, as RGB uint8. Streams the chosen level in bands, so memory
        stays bounded whatever the slide size."""
        if isinstance(max_size, int):
            max_size = (max_size, max_size)
        width0, height0 = self.dimensions
        factor = max(width0 / max_size[0], height0 / max_size[1], 1.0)
        out_width = max(1, round(width0 / factor))
        out_height = max(1, round(height0 / factor))
        fast = getattr(self._r, "thumbnail", None)
        if fast is not None:
            pixels = fast((out_width, out_height))
            if pixels is not None:
                return _resize(pixels, out_width, out_height)
        level = self.best_level_for_downsample(factor)
        level_width, level_height = self.level_dimensions[level]
        band_rows = max(1, min(level_height, _BAND_BYTES // (3 * level_width)))
        out = np.empty((out_height, out_width, 3), dtype=np.uint8)
        for top in range(0, level_height, band_rows):
            bottom = min(top + band_rows, level_height)
            out_top = round(top * out_height / level_height)
            out_bottom = round(bottom * out_height / level_height)
            if out_bottom <= out_top:
                continue
            band = self.read_level_rows(level, top, bottom - top)
            out[out_top:out_bottom] = _resize(band, out_width, out_bottom - out_top)
        return out

    def _check_level(self, level: int) -> None:
        if not isinstance(level, (int, np.integer)) or not 0 <= level < self.level_count:
            raise LevelError(self.path, f"level {level} does not exist",
                             f"the slide has levels 0 to {self.level_count - 1}")


def open_slide(path: str | Path) -> Slide:
    """Open a whole-slide image or a plain image for reading.

    OpenSlide formats go through OpenSlide; plain TIFF/BigTIFF through tifffile (regions
    decode only the tiles or strips they touch); JPEG/PNG through Pillow.

    Raises:
        SlideNotFoundError: the path does not exist or is a directory.
        CorruptSlideError: the file is empty, truncated or damaged.
        UnsupportedFormatError: no reader knows the format.
    """
    return Slide(path)


def _open_reader(path: Path):
    if not path.exists():
        raise SlideNotFoundError(path, "no such file", "check the path and its spelling")
    if path.is_dir():
        if (path.with_suffix(".mrxs")).exists():
            raise SlideNotFoundError(path, "is a directory",
                                     f"open the MIRAX index file {path.with_suffix('.mrxs')}")
        raise SlideNotFoundError(path, "is a directory, not a slide file",
                                 "pass the slide file, or a folder to a batch command")
    if not os.access(path, os.R_OK):
        raise SlideError(path, "permission denied", "make the file readable")
    file_size = path.stat().st_size
    if file_size == 0:
        raise CorruptSlideError(path, "the file is empty (0 bytes)",
                                "the copy or download did not finish; copy it again")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    is_tiff = magic in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    if is_tiff:
        _check_tiff_complete(path, file_size)

    if path.suffix.lower() in PLAIN_IMAGE_SUFFIXES and not is_tiff:
        return _guarded(path, PlainImageReader)

    import openslide

    try:
        vendor = openslide.OpenSlide.detect_format(str(path))
    except openslide.OpenSlideError as error:
        raise CorruptSlideError(path, f"OpenSlide cannot read the file: {error}",
                                "the file is damaged or truncated; copy it again") from None
    if vendor == "generic-tiff" and not _plain_8bit_tiff(path):
        vendor = None  # 16-bit, float, CMYK...: tifffile and histotile's scaling rule
    if vendor is not None:
        try:
            return OpenSlideReader(path)
        except openslide.OpenSlideUnsupportedFormatError:
            pass  # e.g. a striped TIFF: fall through to tifffile
        except openslide.OpenSlideError as error:
            raise CorruptSlideError(path, f"OpenSlide cannot open the {vendor} slide: {error}",
                                    "the file is damaged or incomplete; copy it again") from None
    if is_tiff:
        return _guarded(path, TiffReader)
    # Not a TIFF and unknown to OpenSlide: maybe an image with an unusual extension.
    try:
        from PIL import Image

        with Image.open(path):
            pass
    except Exception:  # noqa: BLE001 - any failure here means "not an image we know"
        raise UnsupportedFormatError(path, "not a slide or image format histotile can read",
                                     f"supported: {SUPPORTED}") from None
    return _guarded(path, PlainImageReader)


def _guarded(path: Path, reader_type):
    """Construct a reader, turning library exceptions into histotile errors."""
    try:
        return reader_type(path)
    except HistotileError:
        raise
    except Exception as error:  # noqa: BLE001 - tifffile/PIL raise many exception types
        raise CorruptSlideError(path, f"cannot read the file: {type(error).__name__}: {error}",
                                "the file is damaged, truncated or not an image") from None


def _check_tiff_complete(path: Path, file_size: int) -> None:
    """Catch truncated TIFF-based slides at open time by comparing the end of the last
    tile/strip with the file size (reads tags only, no pixel data)."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tiff:
            next_offset = _next_ifd_offset(tiff)
            if next_offset > file_size:
                raise CorruptSlideError(
                    path, f"truncated: the next image directory is at byte {next_offset:,} "
                    f"but the file has {file_size:,} bytes",
                    "the copy or download did not finish; copy it again")
            for page in tiff.pages:
                offsets, counts = page.dataoffsets, page.databytecounts
                if offsets and counts:
                    end = max(o + c for o, c in zip(offsets, counts))
                    if end > file_size:
                        raise CorruptSlideError(
                            path, f"truncated: image data runs to byte {end:,} but the file "
                            f"has {file_size:,} bytes",
                            "the copy or download did not finish; copy it again")
    except HistotileError:
        raise
    except Exception as error:  # noqa: BLE001 - damaged IFDs raise assorted errors
        raise CorruptSlideError(path, f"damaged TIFF structure: {error}",
                                "the file is damaged or truncated; copy it again") from None


def _plain_8bit_tiff(path: Path) -> bool:
    """Whether a generic TIFF's first image is 8-bit grey, RGB or YCbCr (what OpenSlide
    shows as scanned); other depths and colour spaces go through :class:`TiffReader`, so
    that one scaling rule (:func:`~histotile.wsi.backends.to_uint8`) holds for every
    format and OpenSlide's libtiff fallback never decides (it fails on float, reads CMYK
    through libtiff's own rules)."""
    import tifffile

    with tifffile.TiffFile(str(path)) as tiff:
        page = tiff.pages.first
        return (int(page.bitspersample) == 8 and int(page.sampleformat) == 1
                and int(page.photometric) in (1, 2, 6) and int(page.samplesperpixel) <= 4)


def _next_ifd_offset(tiff) -> int:
    """The 'next image directory' pointer of the last directory tifffile could parse.

    tifffile stops quietly at a pointer past the end of the file (a truncated slide whose
    label or macro directory was cut off); that pointer is the evidence."""
    import struct

    pages = tiff.pages
    last = pages[len(pages) - 1]
    fmt = tiff.tiff
    handle = tiff.filehandle
    handle.seek(last.offset)
    count = struct.unpack(fmt.tagnoformat, handle.read(fmt.tagnosize))[0]
    handle.seek(last.offset + fmt.tagnosize + count * fmt.tagsize)
    raw = handle.read(fmt.offsetsize)
    if len(raw) < fmt.offsetsize:
        return handle.size + 1
    return int(struct.unpack(fmt.offsetformat, raw)[0])


def _resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    shrinking = width <= pixels.shape[1] and height <= pixels.shape[0]
    return cv2.resize(pixels, (width, height),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
