"""Preview images: a legend strip under a small heatmap, and titled side-by-side panels.

Drawn with OpenCV (Hershey fonts, ASCII text), so no plotting library is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from histotile.postprocess.blend import blend_reference, colour_map_lut
from histotile.postprocess.render import BlendStyle
from histotile.postprocess.scalebar import draw_scale_bar

LEGEND_HEIGHT = 64  # pixels added under a preview
MIN_WIDTH = 420  # previews narrower than this are padded with white to fit the legend
TITLE_HEIGHT = 36  # pixels above each side-by-side panel
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (40, 40, 40)
_PAPER = (255, 255, 255)
_SWATCH_UNDER = (243, 242, 240)  # the colour shown under the swatch: bare glass


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.5) -> None:
    cv2.putText(image, text.encode("ascii", "replace").decode(), origin, _FONT, scale, _INK,
                1, cv2.LINE_AA)


def legend_strip(width: int, style: BlendStyle, positive_class: str, caption: str = ""
                 ) -> np.ndarray:
    """An RGB uint8 strip (LEGEND_HEIGHT, width, 3) explaining the overlay colours."""
    strip = np.full((LEGEND_HEIGHT, width, 3), _PAPER, np.uint8)
    if style.mode == "threshold":
        swatch = blend_reference(np.array(_SWATCH_UNDER, np.uint8), style.color, style.alpha)
        cv2.rectangle(strip, (10, 10), (40, 32), tuple(int(c) for c in swatch), -1)
        cv2.rectangle(strip, (10, 10), (40, 32), _INK, 1)
        _text(strip, f"{positive_class} probability >= {style.threshold:.2f}"
              f"  (alpha {style.alpha:.2f})", (50, 27))
    else:
        bar_width = max(60, min(256, width - 200))
        lut = colour_map_lut(style.colormap)
        ramp = lut[np.linspace(0, 255, bar_width).round().astype(int)]
        under = np.broadcast_to(np.array(_SWATCH_UNDER, np.uint8), ramp.shape)
        strip[10:32, 30:30 + bar_width] = blend_reference(under, ramp, style.alpha)[None]
        cv2.rectangle(strip, (30, 10), (30 + bar_width, 32), _INK, 1)
        _text(strip, "0", (20, 27), 0.45)
        _text(strip, "1", (36 + bar_width, 27), 0.45)
        floor = f", from {style.floor:g}" if style.floor > 0 else ""
        _text(strip, f"{positive_class} probability ({style.colormap}{floor})",
              (56 + bar_width, 27))
    if caption:
        _text(strip, caption, (10, 54), 0.42)
    return strip


def with_legend(image: np.ndarray, style: BlendStyle, positive_class: str, caption: str = "",
                mpp: float | None = None) -> np.ndarray:
    """``image`` (top-left) with a legend strip under it; the canvas is
    ``max(width, MIN_WIDTH)`` wide and ``height + LEGEND_HEIGHT`` tall. With ``mpp``
    (microns per pixel of ``image``) a scale bar is drawn in its bottom-right corner."""
    height, width = image.shape[:2]
    canvas_width = max(width, MIN_WIDTH)
    canvas = np.full((height + LEGEND_HEIGHT, canvas_width, 3), _PAPER, np.uint8)
    canvas[:height, :width] = image
    draw_scale_bar(canvas[:height, :width], mpp)
    canvas[height:] = legend_strip(canvas_width, style, positive_class, caption)
    return canvas


def side_by_side(panels: Sequence[np.ndarray], titles: Sequence[str], gap: int = 12
                 ) -> np.ndarray:
    """Panels next to each other, top-aligned, each under a title line."""
    height = max(p.shape[0] for p in panels) + TITLE_HEIGHT
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.full((height, width, 3), _PAPER, np.uint8)
    left = 0
    for panel, title in zip(panels, titles):
        canvas[TITLE_HEIGHT:TITLE_HEIGHT + panel.shape[0], left:left + panel.shape[1]] = panel
        _text(canvas, title, (left + 6, 24), 0.6)
        left += panel.shape[1] + gap
    return canvas


def write_png(path, image: np.ndarray) -> None:
    """Write RGB ``image`` as PNG to ``path`` (a temporary path from ``atomic_path``)."""
    # Encoded in memory and written by Python, so that a full disk raises OSError(ENOSPC)
    # (cv2.imwrite only returns False, which hides why).
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"OpenCV could not encode {path}")
    Path(path).write_bytes(data.tobytes())
