"""The pixel limit of plain images (PNG, JPEG, BMP...), which are decoded whole.

A 438 KB PNG can claim 20,000 x 20,000 px and take gigabytes to decode (a decompression
bomb). Images over the limit are refused before decoding, with an error naming the limit
and how to raise it. Tiled TIFFs and OpenSlide formats are read region by region and
have no such limit.
"""

from __future__ import annotations

import os
from pathlib import Path

from histotile.errors import ConfigError, SlideError

ENVIRONMENT = "HISTOTILE_MAX_IMAGE_PIXELS"
# 250 MP: about 750 MB decoded as RGB, the size of a large plain-image export of a biopsy.
DEFAULT_MAX_IMAGE_PIXELS = 250_000_000


class ImageTooLargeError(SlideError):
    """A plain image has more pixels than :func:`max_image_pixels` allows."""


def max_image_pixels() -> int | None:
    """The limit: ``HISTOTILE_MAX_IMAGE_PIXELS`` (a whole number; 0 means no limit), else
    :data:`DEFAULT_MAX_IMAGE_PIXELS`. None when there is no limit."""
    text = os.environ.get(ENVIRONMENT, "").strip().replace("_", "").replace(",", "")
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(float(text))
    except ValueError:
        raise ConfigError(f"{ENVIRONMENT}={os.environ[ENVIRONMENT]!r}: give a whole number "
                          "of pixels, e.g. 500000000 (0: no limit)") from None
    if value < 0:
        raise ConfigError(f"{ENVIRONMENT}={value}: give 0 (no limit) or a positive number")
    return value or None


def apply_to_pillow() -> None:
    """Set Pillow's own bomb check (a warning above it, an error at twice it) to the
    limit, before opening an image: nothing under the limit is refused, nothing far over
    it is decoded. Pillow's error is turned into :class:`ImageTooLargeError` by
    :func:`pillow_refusal`."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = max_image_pixels()


def pillow_refusal(path: str | Path, error: Exception) -> ImageTooLargeError:
    """:class:`ImageTooLargeError` for Pillow's ``DecompressionBombError``."""
    return ImageTooLargeError(path, f"over the limit of {max_image_pixels() or 0:,} pixels "
                              f"for plain images ({error})", _hint("a larger number"))


def _hint(pixels: object) -> str:
    return ("convert it to a tiled pyramidal TIFF (e.g. 'vips tiffsave IN OUT.tif --tile "
            f"--pyramid --compression jpeg'), or raise the limit with {ENVIRONMENT}="
            f"{pixels} (0: no limit) if the memory is there")


def check_image_pixels(path: str | Path, width: int, height: int) -> None:
    """Raise :class:`ImageTooLargeError` when a ``width`` x ``height`` plain image is
    over the limit (see :func:`max_image_pixels`)."""
    limit = max_image_pixels()
    if limit is not None and width * height > limit:
        gib = width * height * 3 / 2**30
        raise ImageTooLargeError(
            path, f"{width:,} x {height:,} px ({width * height / 1e6:,.0f} megapixels) is over "
            f"the limit of {limit:,} pixels for plain images, which are decoded "
            f"whole (about {gib:,.1f} GiB)", _hint(width * height))
