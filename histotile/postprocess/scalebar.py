"""Scale bars for preview images: a round length in microns drawn to scale.

The bar is ``microns / mpp`` pixels long (``mpp``: microns per pixel of the image, not
of the slide's level 0), in the bottom-right corner on a white box, with its length
written above it. Drawn with OpenCV (ASCII text: ``um`` for microns).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (20, 20, 20)
_MARGIN = 10  # pixels between the box and the image's edges
_PAD = 6  # pixels between the bar and its box
_THICKNESS = 4  # bar height, pixels


@dataclass(frozen=True)
class ScaleBar:
    """A scale bar: ``microns`` long, ``pixels`` long in the image, and its label."""

    microns: float
    pixels: int
    label: str


def choose_scale_bar(mpp: float, width: int, fraction: float = 0.2) -> ScaleBar | None:
    """The longest round length (1, 2 or 5 times a power of ten microns) whose bar fits
    in ``fraction`` of an image ``width`` px wide at ``mpp`` microns per pixel; None when
    ``mpp`` is unknown or not even a 1 um bar of 2 px fits."""
    if mpp is None or not np.isfinite(mpp) or mpp <= 0:
        return None
    longest = fraction * width * mpp  # microns
    if longest <= 0:
        return None
    exponent = np.floor(np.log10(longest))
    for step in (5, 2, 1):
        microns = float(step * 10.0 ** exponent)
        if microns <= longest:
            break
    pixels = int(round(microns / mpp))
    if pixels < 2:
        return None
    if microns >= 1000:
        label = f"{microns / 1000:g} mm"
    else:
        label = f"{microns:g} um"
    return ScaleBar(microns, pixels, label)


def draw_scale_bar(image: np.ndarray, mpp: float | None, fraction: float = 0.2
                   ) -> ScaleBar | None:
    """Draw a scale bar into RGB ``image`` (in place) for ``mpp`` microns per image
    pixel; returns what was drawn (None: no mpp, or the image is too small)."""
    height, width = image.shape[:2]
    bar = choose_scale_bar(mpp, width, fraction) if mpp is not None else None
    if bar is None:
        return None
    (text_w, text_h), _ = cv2.getTextSize(bar.label, _FONT, 0.45, 1)
    box_w = max(bar.pixels, text_w) + 2 * _PAD
    box_h = text_h + _THICKNESS + 3 * _PAD
    x1, y1 = width - _MARGIN, height - _MARGIN
    x0, y0 = x1 - box_w, y1 - box_h
    if x0 < 0 or y0 < 0:
        return None
    image[y0:y1, x0:x1] = 255
    bar_x1 = x1 - _PAD
    bar_x0 = bar_x1 - bar.pixels
    image[y1 - _PAD - _THICKNESS:y1 - _PAD, bar_x0:bar_x1] = _INK
    cv2.putText(image, bar.label, (bar_x1 - text_w, y1 - 2 * _PAD - _THICKNESS), _FONT,
                0.45, _INK, 1, cv2.LINE_AA)
    return bar
