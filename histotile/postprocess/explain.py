"""Explanations for a pathologist: galleries of chosen tiles with their Grad-CAM.

:func:`select_tiles` picks, from one slide's predictions, the tiles most confidently
positive, most confidently negative and most uncertain (closest to the threshold) and,
when the true class of every tile is known (an annotation), the worst false positives
and false negatives. :func:`explain_tiles` reads any list of tiles from the slide at the
model's input size and explains them (:func:`histotile.models.cam.grad_cam`);
:func:`gallery_image` and :func:`gallery_html` lay them out (tile, Grad-CAM overlay,
class probabilities, level-0 coordinates) as a PNG and a self-contained HTML page (images
inlined: it opens anywhere, offline). :func:`write_explanations` does all of it for one
slide.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from histotile._atomic import atomic_path, check_writable, write_text_atomic
from histotile._deprecation import RenamedAttribute, renamed_keywords
from histotile.errors import ConfigError, DatasetError
from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
from histotile.postprocess.legend import write_png
from histotile.postprocess.predictions import SlidePredictions
from histotile.wsi import open_slide

GALLERY_FILE = "explanations.png"
PAGE_FILE = "explanations.html"
_CELL = 128  # displayed tile side in the gallery PNG, pixels
_GAP = 10
_TITLE = 30
_CAPTION = 34
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (40, 40, 40)


@dataclass(frozen=True)
class TileGroup:
    """Tiles chosen for one reason.

    Attributes:
        title: why they were chosen ("most confidently positive", ...).
        rows: row indices into the predictions' table, most telling first.
    """

    title: str
    rows: np.ndarray


@dataclass(frozen=True)
class Explained:
    """Tiles with their explanations.

    Attributes:
        rows: row indices into the predictions' table.
        tiles: uint8 (N, T, T, 3) at the model's input size.
        maps: float32 (N, T, T), 0-1, evidence for ``positive_class``.
        overlays: uint8 (N, T, T, 3), the maps over the tiles.
        probabilities: float32 (N, C), the model's probabilities of the tiles as read.
        positive_class: the class explained (``class_name``, its old name, still reads
            it, deprecated).
        classes: the model's classes.
        coordinates: int64 (N, 3) level-0 ``x, y, extent`` of each tile.
    """

    rows: np.ndarray
    tiles: np.ndarray
    maps: np.ndarray
    overlays: np.ndarray
    probabilities: np.ndarray
    positive_class: str
    classes: tuple[str, ...]
    coordinates: np.ndarray

    class_name = RenamedAttribute("positive_class")


def select_tiles(predictions: SlidePredictions, positive_class: str, top: int = 8,
                 threshold: float = DEFAULT_TILE_THRESHOLD, truth: np.ndarray | None = None
                 ) -> list[TileGroup]:
    """The tiles worth looking at, by ``positive_class``'s probability ``p``: the ``top``
    highest, the ``top`` lowest, the ``top`` closest to ``threshold``; with ``truth``
    (class index per tile) also the false positives with the highest ``p`` and the false
    negatives with the lowest. Groups without tiles are left out."""
    if int(top) < 1:
        raise ConfigError(f"top={top}: choose at least 1 tile per group")
    top = int(top)
    p = predictions.probabilities(positive_class).astype(np.float64)
    # Stable sorts, ties broken by table order, so galleries are reproducible.
    groups = [TileGroup(f"most confidently {positive_class}",
                        np.argsort(-p, kind="stable")[:top]),
              TileGroup(f"most confidently not {positive_class}",
                        np.argsort(p, kind="stable")[:top]),
              TileGroup(f"most uncertain (p closest to {threshold:g})",
                        np.argsort(np.abs(p - threshold), kind="stable")[:top])]
    if truth is not None:
        positive = list(predictions.classes).index(positive_class)
        truth = np.asarray(truth)
        if truth.shape != p.shape:
            raise ConfigError(f"truth has {truth.size} entries for {p.size} tiles")
        false_pos = np.flatnonzero((truth != positive) & (p >= threshold))
        false_neg = np.flatnonzero((truth == positive) & (p < threshold))
        groups += [TileGroup("worst false positives",
                             false_pos[np.argsort(-p[false_pos], kind="stable")][:top]),
                   TileGroup("worst false negatives",
                             false_neg[np.argsort(p[false_neg], kind="stable")][:top])]
    return [g for g in groups if g.rows.size]


def read_tiles(slide, predictions: SlidePredictions, rows: np.ndarray,
               tile_size: int) -> np.ndarray:
    """The tiles of table ``rows`` from the open ``slide``, resized to ``tile_size``:
    uint8 (N, tile_size, tile_size, 3). Each is read at the pyramid level closest above
    its resolution, as prediction reads them."""
    tiles = predictions.tiles.iloc[np.asarray(rows, np.intp)]
    out = np.empty((len(tiles), tile_size, tile_size, 3), np.uint8)
    for i, (x, y, extent) in enumerate(tiles[["x", "y", "extent"]].itertuples(index=False)):
        level = slide.best_level_for_downsample(float(extent) / tile_size)
        scale = slide.level_downsamples[level]
        side = max(1, round(float(extent) / scale))
        region = slide.read_region((int(x), int(y)), level, (side, side))
        out[i] = region if side == tile_size else cv2.resize(
            region, (tile_size, tile_size), interpolation=cv2.INTER_AREA)
    return out


@renamed_keywords(class_name="positive_class")
def explain_tiles(slide_path: str | Path, predictions: SlidePredictions, predictor: Any,
                  rows: np.ndarray, positive_class: str) -> Explained:
    """Read table ``rows`` of ``predictions`` from the slide and explain them for
    ``positive_class`` with Grad-CAM (torch models; MXNet is refused). ``class_name=``,
    its old name, is still taken, with a :class:`DeprecationWarning`."""
    from histotile.models.cam import cam_overlay, grad_cam

    predictions.check_class(positive_class)
    rows = np.asarray(rows, np.intp)
    with open_slide(slide_path) as slide:
        tiles = read_tiles(slide, predictions, rows, predictor.tile_size)
    result = grad_cam(predictor, tiles, positive_class)
    coordinates = predictions.tiles.iloc[rows][["x", "y", "extent"]].to_numpy(np.int64)
    return Explained(rows, tiles, result.maps, cam_overlay(tiles, result.maps),
                     result.probabilities, positive_class, tuple(predictor.classes),
                     coordinates)


def _caption(explained: Explained, i: int) -> tuple[str, str]:
    p = explained.probabilities[i, explained.classes.index(explained.positive_class)]
    x, y, _ = explained.coordinates[i]
    return f"p={p:.3f}", f"x={x} y={y}"


def gallery_image(groups: list[TileGroup], explained: Explained, title: str) -> np.ndarray:
    """The gallery as RGB uint8: per group a title line, then tile and Grad-CAM side by
    side for each of its tiles, with the probability and level-0 coordinates under."""
    position = {int(r): i for i, r in enumerate(explained.rows)}
    per_row = max((g.rows.size for g in groups), default=1)
    pair = 2 * _CELL + _GAP
    width = max(_GAP + per_row * (pair + _GAP), 640)
    height = _TITLE + sum(_TITLE + _CELL + _CAPTION for _ in groups) + _GAP
    canvas = np.full((height, width, 3), 255, np.uint8)
    _text(canvas, title, (_GAP, 22), 0.6)
    top = _TITLE
    for group in groups:
        _text(canvas, group.title, (_GAP, top + 21), 0.55)
        top += _TITLE
        for column, row in enumerate(group.rows):
            i = position[int(row)]
            left = _GAP + column * (pair + _GAP)
            for offset, image in ((0, explained.tiles[i]), (_CELL, explained.overlays[i])):
                canvas[top:top + _CELL, left + offset:left + offset + _CELL] = cv2.resize(
                    image, (_CELL, _CELL), interpolation=cv2.INTER_AREA)
            first, second = _caption(explained, i)
            _text(canvas, f"{first}  {second}", (left, top + _CELL + 14), 0.38)
        top += _CELL + _CAPTION
    return canvas


def _text(image: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    cv2.putText(image, text.encode("ascii", "replace").decode(), origin, _FONT, scale, _INK,
                1, cv2.LINE_AA)


def _data_uri(image: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError("OpenCV could not encode a tile as PNG")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def gallery_html(groups: list[TileGroup], explained: Explained, title: str) -> str:
    """A self-contained HTML page of the gallery (images inlined as PNG data URIs): for
    each tile, the tile, its Grad-CAM overlay, every class probability and its level-0
    position and size."""
    position = {int(r): i for i, r in enumerate(explained.rows)}
    sections = []
    for group in groups:
        cells = []
        for row in group.rows:
            i = position[int(row)]
            x, y, extent = (int(v) for v in explained.coordinates[i])
            probabilities = "".join(
                f"<li>{html.escape(c)}: {explained.probabilities[i, k]:.3f}</li>"
                for k, c in enumerate(explained.classes))
            cells.append(
                f'<figure class="tile" data-x="{x}" data-y="{y}">'
                f'<img src="{_data_uri(explained.tiles[i])}" alt="tile at {x}, {y}">'
                f'<img src="{_data_uri(explained.overlays[i])}" alt="Grad-CAM at {x}, {y}">'
                f"<figcaption>x={x}, y={y}, {extent} px (level 0)<ul>{probabilities}</ul>"
                "</figcaption></figure>")
        sections.append(f"<section><h2>{html.escape(group.title)}</h2>"
                        f'<div class="row">{"".join(cells)}</div></section>')
    style = ("body{font-family:sans-serif;margin:1em;color:#222}"
             ".row{display:flex;flex-wrap:wrap;gap:12px}"
             ".tile{margin:0;border:1px solid #ccc;padding:6px}"
             ".tile img{width:128px;height:128px;image-rendering:pixelated;margin-right:4px}"
             "figcaption{font-size:12px}ul{margin:2px 0;padding-left:16px}")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{style}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>Left: the tile as the model saw it. Right: "
            f"Grad-CAM evidence for <b>{html.escape(explained.positive_class)}</b> "
            "(viridis: dark none, yellow most).</p>"
            f"{''.join(sections)}</body></html>\n")


@renamed_keywords(class_name="positive_class")
def write_explanations(slide_path: str | Path, predictions: SlidePredictions,
                       predictor: Any, out_dir: str | Path, *, positive_class: str,
                       top: int = 8, threshold: float = DEFAULT_TILE_THRESHOLD,
                       truth: np.ndarray | None = None,
                       overwrite: bool = False) -> dict[str, Path]:
    """``explanations.png`` and ``explanations.html`` of one slide in ``out_dir``: the
    groups of :func:`select_tiles`, explained for ``positive_class`` (``class_name=``,
    its old name, is still taken, with a :class:`DeprecationWarning`)."""
    out_dir = Path(out_dir)
    paths = {"gallery": out_dir / GALLERY_FILE, "page": out_dir / PAGE_FILE}
    for path in paths.values():
        check_writable(path, overwrite)
    groups = select_tiles(predictions, positive_class, top, threshold, truth)
    if not groups:
        raise DatasetError(f"slide {predictions.slide_name!r}: no predicted tiles to "
                           "explain (check the tissue settings of the prediction)")
    rows = np.unique(np.concatenate([g.rows for g in groups]))
    explained = explain_tiles(slide_path, predictions, predictor, rows, positive_class)
    title = (f"{predictions.slide_name}: why the model ({predictor.architecture}) says "
             f"{positive_class}")
    with atomic_path(paths["gallery"], overwrite=overwrite) as tmp:
        write_png(tmp, gallery_image(groups, explained, title))
    write_text_atomic(paths["page"], gallery_html(groups, explained, title),
                      overwrite=overwrite)
    return paths
