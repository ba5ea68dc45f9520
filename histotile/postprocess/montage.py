"""The montage: the slide rebuilt from its kept tiles, each framed in its predicted
class's colour (the original study's check of the model against the pathologist).

Only the pixels under predicted tiles are copied from the slide's thumbnail (everything
else stays white), then every tile gets a border in the colour of the class it was
predicted as (the positive class when its probability reaches the threshold, otherwise
the most probable other class), the colours QuPath shows for the GeoJSON export. A
legend strip names the colours, the slide and the model; a scale bar in microns is drawn
when the slide records its resolution.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from histotile._atomic import atomic_path, check_writable
from histotile._deprecation import renamed_keywords
from histotile.errors import ConfigError
from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
from histotile.postprocess.evaluation import predicted_classes
from histotile.postprocess.legend import write_png
from histotile.postprocess.predictions import SlidePredictions
from histotile.postprocess.qupath import class_colour
from histotile.postprocess.scalebar import draw_scale_bar
from histotile.wsi import open_slide

MONTAGE_FILE = "montage.png"
_STRIP = 44  # legend strip height, pixels
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def covered_mask(predictions: SlidePredictions, shape: tuple[int, int],
                 downsample: tuple[float, float]) -> np.ndarray:
    """Boolean (height, width) mask of the image pixels some tile covers, for an image
    at ``downsample`` (x, y) level-0 pixels per pixel; a 2-D difference array, so the
    cost does not depend on the number of tiles times their area."""
    height, width = shape
    x0, y0, x1, y1 = tile_rectangles(predictions, width, height, downsample)
    marks = np.zeros((height + 1, width + 1), np.int32)
    for rows, cols, sign in ((y0, x0, 1), (y0, x1, -1), (y1, x0, -1), (y1, x1, 1)):
        np.add.at(marks, (rows, cols), sign)
    return marks.cumsum(0).cumsum(1)[:height, :width] > 0


def tile_rectangles(predictions: SlidePredictions, width: int, height: int,
                    downsample: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Tiles as image pixel rectangles ``x0, y0, x1, y1`` (end exclusive, at least one
    pixel), for an image ``width`` x ``height`` at ``downsample`` (x, y)."""
    tiles = predictions.tiles
    ds_x, ds_y = downsample
    x = tiles["x"].to_numpy(np.float64)
    y = tiles["y"].to_numpy(np.float64)
    extent = tiles["extent"].to_numpy(np.float64)
    x0 = np.clip(np.floor(x / ds_x), 0, width - 1).astype(np.intp)
    y0 = np.clip(np.floor(y / ds_y), 0, height - 1).astype(np.intp)
    x1 = np.clip(np.ceil((x + extent) / ds_x), x0 + 1, width).astype(np.intp)
    y1 = np.clip(np.ceil((y + extent) / ds_y), y0 + 1, height).astype(np.intp)
    return x0, y0, x1, y1


def render_montage(slide, predictions: SlidePredictions, positive_class: str,
                   threshold: float = DEFAULT_TILE_THRESHOLD, size: int = 2048) -> np.ndarray:
    """The montage (without legend) as RGB uint8, longest side at most ``size``."""
    if size < 16:
        raise ConfigError(f"size={size}: give at least 16 pixels for the montage")
    thumb = np.array(slide.thumbnail(size))
    height, width = thumb.shape[:2]
    width0, height0 = slide.dimensions
    downsample = (width0 / width, height0 / height)
    canvas = np.full_like(thumb, 255)
    if len(predictions) == 0:
        return canvas
    covered = covered_mask(predictions, (height, width), downsample)
    canvas[covered] = thumb[covered]
    positive = list(predictions.classes).index(predictions.check_class(positive_class))
    labels = predicted_classes(predictions.probability_matrix(), positive, threshold)
    x0, y0, x1, y1 = tile_rectangles(predictions, width, height, downsample)
    side = float(np.median(x1 - x0))
    thickness = 1 if side < 12 else 2
    # One OpenCV call per tile: the borders are lines, no array trick beats it.
    for left, top, right, bottom, label in zip(x0.tolist(), y0.tolist(), x1.tolist(),
                                               y1.tolist(), labels.tolist()):
        cv2.rectangle(canvas, (left, top), (right - 1, bottom - 1),
                      tuple(class_colour(label)), thickness)
    return canvas


def montage_strip(width: int, classes: tuple[str, ...], caption: str) -> np.ndarray:
    """A legend strip: a swatch per class colour, and a caption line."""
    strip = np.full((_STRIP, width, 3), 255, np.uint8)
    left = 10
    for index, name in enumerate(classes):
        cv2.rectangle(strip, (left, 6), (left + 22, 20), tuple(class_colour(index)), 2)
        text = name.encode("ascii", "replace").decode()
        cv2.putText(strip, text, (left + 28, 19), _FONT, 0.45, (40, 40, 40), 1, cv2.LINE_AA)
        left += 40 + cv2.getTextSize(text, _FONT, 0.45, 1)[0][0]
    cv2.putText(strip, caption.encode("ascii", "replace").decode(), (10, 38), _FONT, 0.42,
                (40, 40, 40), 1, cv2.LINE_AA)
    return strip


@renamed_keywords(class_name="positive_class")
def write_montage(slide_path: str | Path, predictions: SlidePredictions,
                  out_path: str | Path, *, positive_class: str,
                  threshold: float = DEFAULT_TILE_THRESHOLD, size: int = 2048,
                  match_name: bool = True, overwrite: bool = False) -> Path:
    """Write the montage PNG of one slide (tiles framed by predicted class, legend,
    slide name, scale bar when the slide's mpp is known); ``size``: longest side, px;
    tiles at or above ``threshold`` for ``positive_class`` are framed in its colour
    (``class_name=``, its old name, is still taken, with a :class:`DeprecationWarning`)."""
    check_writable(out_path, overwrite)
    with open_slide(slide_path) as slide:
        predictions.check_slide(slide, match_name=match_name)
        image = render_montage(slide, predictions, positive_class, threshold, size)
        mpp = None if slide.mpp is None else slide.mpp * slide.dimensions[0] / image.shape[1]
    draw_scale_bar(image, mpp)
    caption = (f"{predictions.slide_name}  |  {len(predictions)} tiles, framed by predicted "
               f"class ({positive_class} from {threshold:g})  |  model "
               f"{predictions.model.get('name', '?')}")
    width = max(image.shape[1], 420)
    canvas = np.full((image.shape[0] + _STRIP, width, 3), 255, np.uint8)
    canvas[:image.shape[0], :image.shape[1]] = image
    canvas[image.shape[0]:] = montage_strip(width, predictions.classes, caption)
    with atomic_path(out_path, overwrite=overwrite) as tmp:
        write_png(tmp, canvas)
    return Path(out_path)
