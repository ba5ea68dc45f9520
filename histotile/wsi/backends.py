"""Readers behind :class:`histotile.wsi.Slide`, one per family of formats.

* :class:`OpenSlideReader`: every format OpenSlide knows (SVS, NDPI, MRXS, SCN, generic
  tiled TIFF, ...).
* :class:`TiffReader`: plain TIFF/BigTIFF that OpenSlide refuses (striped, non-pyramidal,
  odd sample layouts), read through tifffile's zarr view so that a region decodes only the
  tiles or strips it touches.
* :class:`PlainImageReader`: JPEG, PNG and other single images (decoded once on first use:
  these formats have no random access).

Each reader returns RGB uint8 arrays for regions given in *level* pixel coordinates that
lie inside the level; :class:`Slide` does the clipping, padding and level-0 conversion.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np

from histotile.errors import CorruptSlideError


def to_uint8(pixels: np.ndarray, float_max: float = 1.0) -> np.ndarray:
    """The one scaling rule to 8 bits, for every format and reader:

    * unsigned integers keep their top 8 bits (16-bit 65535 -> 255, 4096 -> 16);
    * signed integers: negative values are 0, then the top 8 bits of the positive range;
    * floating point is taken as 0-``float_max`` (values outside are clipped, NaN is 0),
      scaled to 0-255 (``float_max``: the image's range, see :func:`float_range`);
    * booleans are 0 or 255.

    Complex data is refused (:class:`ValueError`; readers check it at open time)."""
    kind = pixels.dtype.kind
    if pixels.dtype == np.uint8:
        return pixels
    if kind == "b":
        return pixels.astype(np.uint8) * 255
    if kind == "u":
        return (pixels >> (8 * pixels.dtype.itemsize - 8)).astype(np.uint8)
    if kind == "i":
        shift = 8 * pixels.dtype.itemsize - 9
        return (np.maximum(pixels, 0) >> shift).astype(np.uint8)
    if kind == "f":
        scale = np.float32(255.0 / float_max)
        scaled = np.nan_to_num(pixels.astype(np.float32), nan=0.0) * scale + 0.5
        return np.clip(scaled, 0, 255).astype(np.uint8)
    raise ValueError(f"cannot show {pixels.dtype} pixels as an image")


FLOAT_RANGES = (1.0, 255.0, 65535.0)
"""The ranges a floating-point image may hold: 0-1, or 8- or 16-bit values as floats."""


def float_range(path: Path, sample: np.ndarray) -> float:
    """The range (top of 0-1, 0-255 or 0-65535) of a floating-point image, from a
    ``sample`` of its values: the smallest of :data:`FLOAT_RANGES` holding them all (an
    image of 0-255 values read as 0-1 would be all white). Values beyond 65535 are an
    :class:`~histotile.errors.UnsupportedFormatError`. (An image of 0-255 values none
    above 1, all but black, cannot be told from a 0-1 one and is read as 0-1.)"""
    from histotile.errors import UnsupportedFormatError

    values = sample[np.isfinite(sample)]
    top = float(values.max()) if values.size else 0.0
    for limit in FLOAT_RANGES:
        if top <= limit:
            return limit
    raise UnsupportedFormatError(path, f"floating-point pixels up to {top:g}, not in any "
                                 "range histotile knows (0-1, 0-255, 0-65535)",
                                 "export the image as 8-bit RGB")


def cmyk_to_rgb(pixels: np.ndarray) -> np.ndarray:
    """8-bit CMYK (TIFF 'separated', no ink profile) to RGB: ``R = (255-C)(255-K)/255``."""
    ink = 255 - pixels[..., :4].astype(np.uint16)
    rgb = (ink[..., :3] * ink[..., 3:4] + 127) // 255
    return rgb.astype(np.uint8)


def to_rgb(pixels: np.ndarray, float_max: float = 1.0) -> np.ndarray:
    """Convert grey, grey+alpha, RGB or RGBA pixels of any depth to RGB uint8 (scaled by
    :func:`to_uint8`; ``float_max``: the range of floating-point pixels).

    Transparent pixels are composited onto white (alpha is taken as straight, not
    premultiplied, as OpenSlide and PIL hand it out).
    """
    pixels = to_uint8(pixels, float_max)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    channels = pixels.shape[2]
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if channels == 2:
        grey, alpha = pixels[:, :, :1], pixels[:, :, 1:2]
        return to_rgb(np.concatenate([grey, grey, grey, alpha], axis=2))
    if channels == 3:
        return pixels
    rgb, alpha = pixels[:, :, :3], pixels[:, :, 3]
    if alpha.min() == 255:  # the usual case: nothing transparent, no arithmetic
        if pixels.flags.c_contiguous:  # OpenCV's SIMD copy: ~40x faster than numpy's
            import cv2

            return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)
        return np.ascontiguousarray(rgb)
    weight = alpha[:, :, None].astype(np.uint16)
    blended = (rgb.astype(np.uint16) * weight + 255 * (255 - weight) + 127) // 255
    return blended.astype(np.uint8)


class OpenSlideReader:
    """Formats OpenSlide reads. Regions are read with OpenSlide's own ``read_region``
    so that pixels equal OpenSlide's (and so QuPath's) exactly."""

    handles_level0_location = True

    def __init__(self, path: Path) -> None:
        import openslide

        self._openslide = openslide
        self.path = path
        self._slide = openslide.OpenSlide(str(path))
        self.level_dimensions = [tuple(map(int, d)) for d in self._slide.level_dimensions]
        self.level_downsamples = [float(d) for d in self._slide.level_downsamples]
        self.properties = dict(self._slide.properties)
        self.vendor = self.properties.get("openslide.vendor", "unknown")
        self.mpp = _positive_float(self.properties.get("openslide.mpp-x"))
        self.objective_power = _positive_float(self.properties.get("openslide.objective-power"))

    def read_region(self, location: tuple[int, int], level: int,
                    size: tuple[int, int]) -> np.ndarray:
        try:
            image = self._slide.read_region(location, level, size)
        except self._openslide.OpenSlideError as error:
            raise CorruptSlideError(self.path, f"OpenSlide could not read region at "
                                    f"{location}, level {level}, size {size}: {error}",
                                    "the file is damaged or truncated; copy it again") from None
        return to_rgb(np.asarray(image))

    def associated_image_names(self) -> list[str]:
        return sorted(self._slide.associated_images)

    def associated_image(self, name: str) -> np.ndarray:
        return to_rgb(np.asarray(self._slide.associated_images[name]))

    def close(self) -> None:
        self._slide.close()


class TiffReader:
    """Plain TIFF/BigTIFF through tifffile; regions decode only the tiles/strips they touch."""

    handles_level0_location = False

    def __init__(self, path: Path) -> None:
        import tifffile
        import zarr

        self.path = path
        self._tiff = tifffile.TiffFile(str(path))
        series = self._tiff.series[0]
        self._levels = []
        self._sample_first = []
        self.level_dimensions = []
        for level in series.levels:
            axes = level.axes
            self._sample_first.append("S" in axes and axes.index("S") < axes.index("Y"))
            height = level.shape[axes.index("Y")]
            width = level.shape[axes.index("X")]
            self.level_dimensions.append((int(width), int(height)))
            self._levels.append(zarr.open_array(level.aszarr(), mode="r"))
        width0, height0 = self.level_dimensions[0]
        self.level_downsamples = [
            (width0 / w + height0 / h) / 2.0 for w, h in self.level_dimensions
        ]
        page = series.levels[0].keyframe
        self._cmyk = _check_samples(path, page, series.dtype)
        self._float_max = 1.0
        if np.dtype(series.dtype).kind == "f":
            self._float_max = float_range(path, self._sample_pixels())
        self.properties = {"tiff.ImageDescription": str(page.description or "")}
        self.vendor = "tifffile"
        self.mpp = _tiff_mpp(page)
        self.objective_power = None
        self._lock = threading.Lock()

    def read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        array = self._levels[level]
        with self._lock:  # tifffile shares one file handle between readers
            if self._sample_first[level]:
                pixels = np.moveaxis(np.asarray(array[..., y:y + height, x:x + width]), 0, -1)
            else:
                pixels = np.asarray(array[y:y + height, x:x + width])
        while pixels.ndim > 3:  # leading singleton axes (time, z) of odd files
            pixels = pixels[0]
        if self._cmyk:
            return cmyk_to_rgb(to_uint8(pixels))
        return to_rgb(pixels, self._float_max)

    def _sample_pixels(self, side: int = 2048) -> np.ndarray:
        """Values of the smallest level, at most ``side`` x ``side`` of its centre (the
        range of a floating-point image is judged on them)."""
        level = len(self._levels) - 1
        width, height = self.level_dimensions[level]
        x, y = max(0, (width - side) // 2), max(0, (height - side) // 2)
        array = self._levels[level]
        if self._sample_first[level]:
            return np.asarray(array[..., y:y + side, x:x + side])
        return np.asarray(array[y:y + side, x:x + side])

    def associated_image_names(self) -> list[str]:
        return []

    def associated_image(self, name: str) -> np.ndarray:
        raise KeyError(name)

    def close(self) -> None:
        self._tiff.close()


class PlainImageReader:
    """JPEG, PNG, BMP and other single images, through Pillow.

    The header gives the size without decoding. Pixels are decoded in full on the first
    read and kept (these formats have no random access); convert very large ones to tiled
    TIFF for bounded memory.
    """

    handles_level0_location = False

    def __init__(self, path: Path) -> None:
        from PIL import Image

        from histotile.wsi.limits import apply_to_pillow, check_image_pixels, pillow_refusal

        self.path = path
        self._image_module = Image
        apply_to_pillow()  # a decompression bomb is refused before it is decoded
        try:
            with warnings.catch_warnings():  # over the limit: our error, not its warning
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    check_image_pixels(path, *image.size)
            with Image.open(path) as image:
                image.verify()  # raises on damaged headers / chunks
        except Image.DecompressionBombError as error:
            raise pillow_refusal(path, error) from None
        with Image.open(path) as image:
            self.level_dimensions = [tuple(map(int, image.size))]
            self._format = image.format
            dpi = image.info.get("dpi")
        self.level_downsamples = [1.0]
        self.properties = {"image.format": str(self._format)}
        self.vendor = f"image/{str(self._format).lower()}"
        self.mpp = (25400.0 / float(dpi[0])
                    if dpi and float(dpi[0]) > 1.0 and float(dpi[0]) != 72.0 else None)
        self.objective_power = None
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()

    def _decoded(self) -> np.ndarray:
        with self._lock:
            if self._pixels is None:
                try:
                    with self._image_module.open(self.path) as image:
                        image.load()
                        if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
                            # Deep greyscale (16-bit PNG): numpy values, the scaling rule
                            # of every reader (to_uint8); Pillow's convert saturates them.
                            # Pillow's "I" holds at most 16-bit sources (PNG, PGM).
                            values = np.asarray(image)
                            if image.mode == "I":
                                values = np.clip(values, 0, 65535).astype(np.uint16)
                            self._pixels = to_rgb(values, float_range(self.path, values)
                                                  if values.dtype.kind == "f" else 1.0)
                            return self._pixels
                        rgb = image if image.mode in ("RGB", "RGBA", "L", "LA") else (
                            image.convert("RGBA" if "A" in image.mode or
                                          "transparency" in image.info else "RGB"))
                        self._pixels = to_rgb(np.asarray(rgb))
                except (OSError, SyntaxError, ValueError) as error:
                    raise CorruptSlideError(self.path, f"cannot decode image: {error}",
                                            "the file is damaged or truncated") from None
            return self._pixels

    def read_level(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        return self._decoded()[y:y + height, x:x + width]

    def thumbnail(self, max_size: tuple[int, int]) -> np.ndarray | None:
        """A reduced decode (JPEG DCT scaling) that avoids decoding the whole image."""
        if self._pixels is not None or self._format != "JPEG":
            return None
        try:
            with self._image_module.open(self.path) as image:
                image.draft("RGB", max_size)
                image.load()
                return to_rgb(np.asarray(image.convert("RGB")))
        except (OSError, SyntaxError, ValueError) as error:  # truncated or damaged JPEG
            raise CorruptSlideError(self.path, f"cannot decode image: {error}",
                                    "the file is damaged or truncated; copy it again") from None

    def associated_image_names(self) -> list[str]:
        return []

    def associated_image(self, name: str) -> np.ndarray:
        raise KeyError(name)

    def close(self) -> None:
        self._pixels = None


def _check_samples(path: Path, page, dtype: np.dtype) -> bool:
    """Refuse TIFF pixels that cannot be shown as RGB (complex numbers, more than four
    samples per pixel); True when the page is CMYK (photometric 'separated', 4 inks)."""
    from histotile.errors import UnsupportedFormatError

    if np.dtype(dtype).kind == "c":
        raise UnsupportedFormatError(path, f"complex-valued pixels ({dtype}) cannot be shown "
                                     "as an image", "export magnitudes as a real image")
    samples = int(page.samplesperpixel)
    cmyk = int(page.photometric) == 5 and samples in (4, 5)  # SEPARATED, CMYK inks
    if samples > 4 and not (cmyk and samples == 4):
        raise UnsupportedFormatError(path, f"{samples} samples per pixel (multispectral or "
                                     "multiplexed image); histotile reads grey, RGB, RGBA "
                                     "and CMYK", "export an RGB rendering of the channels")
    return cmyk


def _positive_float(value: object) -> float | None:
    try:
        # A tag's value of any type: what float() refuses means None.
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _tiff_mpp(page) -> float | None:
    """Microns per pixel from the TIFF resolution tags, or None when absent/meaningless."""
    tags = page.tags
    if "XResolution" not in tags or "ResolutionUnit" not in tags:
        return None
    numerator, denominator = tags["XResolution"].value
    if not denominator or not numerator:
        return None
    pixels_per_unit = numerator / denominator
    unit = int(tags["ResolutionUnit"].value)
    microns_per_unit = {2: 25400.0, 3: 10000.0}.get(unit)
    if microns_per_unit is None or pixels_per_unit <= 1.0:
        return None
    return microns_per_unit / pixels_per_unit
