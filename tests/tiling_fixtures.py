"""Test inputs for the tiling tests: synthetic slides with the artefacts of real slides
(pen marks, coverslip edge, dust, black ink), lossless painted overlays, label masks and
GeoJSON files, all small and written into pytest's tmp_path."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from histotile.wsi import open_slide
from histotile.wsi.synthetic import Mark, paint_marks, write_synthetic_slide
from histotile.wsi.tiff_writer import pyramid_dimensions, write_pyramid_tiff

SAMPLE = Path(__file__).resolve().parent.parent / "histotile" / "data" / "CMU-1-Small-Region.svs"

# Marker colours as scanners record them on glass.
GREEN_PEN = (20, 150, 70)
BLUE_PEN = (40, 60, 170)
RED_PEN = (190, 25, 40)
BLACK_INK = (25, 25, 30)
DUST = (95, 92, 90)
COVERSLIP = (150, 150, 150)


def read_all(path: Path, level: int = 0) -> np.ndarray:
    with open_slide(path) as slide:
        return slide.read_region((0, 0), level, slide.level_dimensions[level])


def copy_with(path: Path, out: Path, paint, *, tile_size: int = 256) -> Path:
    """A pyramidal copy of a slide with ``paint(pixels, origin_y, downsample)`` applied to
    every band of every level (JPEG, like a scanner's output)."""
    with open_slide(path) as slide:
        width, height = slide.dimensions
        sizes = pyramid_dimensions(width, height, tile_size)
        source = read_all(path)

        def render(level: int, top: int, rows: int) -> np.ndarray:
            level_w, level_h = sizes[level]
            ds = width / level_w
            full = source if level == 0 else cv2.resize(source, (level_w, level_h),
                                                        interpolation=cv2.INTER_AREA)
            band = np.ascontiguousarray(full[top:top + rows])
            return paint(band, top * ds, ds)

        write_pyramid_tiff(out, sizes, render, mpp=slide.mpp, tile_size=tile_size,
                           quality=90)
    return out


def artefact_marks(width: int, height: int) -> dict[str, list[Mark]]:
    """Pen strokes (green, blue, red, black) in the left margin of a slide whose tissue is
    kept out of that margin (see :func:`slide_with_artefacts`)."""
    w = width * 0.2
    return {
        "green": [Mark(GREEN_PEN, rect=(w * 0.1, height * 0.05, w * 0.6, height * 0.08))],
        "blue": [Mark(BLUE_PEN, polygon=[(w * 0.1, height * 0.25), (w * 0.8, height * 0.27),
                                         (w * 0.7, height * 0.36), (w * 0.15, height * 0.33)])],
        "red": [Mark(RED_PEN, rect=(w * 0.2, height * 0.45, w * 0.6, height * 0.08))],
        "black": [Mark(BLACK_INK, rect=(w * 0.1, height * 0.62, w * 0.7, height * 0.08))],
    }


def slide_with_artefacts(tmp: Path, width: int = 3072, height: int = 2048,
                         seed: int = 5) -> tuple[Path, np.ndarray, dict[str, list[Mark]]]:
    """A synthetic slide with tissue only in the right 80 %, plus pen marks, dust specks
    and a coverslip edge on the glass of the left 20 %. Returns (path, true tissue mask at
    downsample 8, the pen marks by colour)."""
    base = write_synthetic_slide(tmp / "base.tif", width, height, seed=seed,
                                 tissue_fraction=0.35, overwrite=True)
    truth = base.tissue_mask(8.0)
    margin = int(width * 0.2)
    truth[:, : margin // 8] = False
    marks = artefact_marks(width, height)
    rng = np.random.default_rng(seed)
    dust = rng.uniform([0, 0], [margin * 0.9, height], size=(12, 2))

    def paint(band: np.ndarray, y0: float, ds: float) -> np.ndarray:
        band[:, : int(round(margin / ds))] = (243, 242, 240)  # clean glass in the margin
        for group in marks.values():
            paint_marks(band, group, (0.0, y0), ds)
        for cx, cy in dust:
            cv2.circle(band, (int(cx / ds), int((cy - y0) / ds)), max(1, int(6 / ds)), DUST, -1)
        x_edge = int(margin * 0.95 / ds)
        cv2.line(band, (x_edge, 0), (x_edge, band.shape[0]), COVERSLIP, max(1, int(4 / ds)))
        return band

    path = copy_with(base.path, tmp / "artefacts.tif", paint)
    return path, truth, marks


def paint_rects(pixels: np.ndarray, rects: Sequence[tuple[tuple, tuple]],
                downsample: int = 1) -> np.ndarray:
    """Paint ``(colour, (x, y, w, h) level-0)`` rectangles exactly (pixel slices; the
    rectangle's sides must be multiples of ``downsample``), in place."""
    for colour, (x, y, w, h) in rects:
        assert all(v % downsample == 0 for v in (x, y, w, h)), "rect off the overlay grid"
        d = downsample
        pixels[y // d:(y + h) // d, x // d:(x + w) // d] = colour
    return pixels


def lossless_overlay(slide_path: Path, out: Path, rects: Sequence[tuple[tuple, tuple]],
                     downsample: int = 1, jpeg_quality: int | None = None) -> Path:
    """A painted overlay: the slide at ``1/downsample`` (exact integer-factor area
    shrink, as an image editor's "reduce" does) with exactly painted rectangles, written
    as PNG (lossless) or, with ``jpeg_quality``, as a JPEG file."""
    pixels = read_all(slide_path)
    if downsample > 1:
        height, width = pixels.shape[:2]
        pixels = cv2.resize(pixels, (round(width / downsample), round(height / downsample)),
                            interpolation=cv2.INTER_AREA)
    painted = paint_rects(np.ascontiguousarray(pixels), rects, downsample)
    params = [] if jpeg_quality is None else [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
    assert cv2.imwrite(str(out), painted[:, :, ::-1], params)
    return out


def label_mask(slide_dims: tuple[int, int], out: Path, rects: dict[int, Sequence[tuple]],
               downsample: int = 1) -> Path:
    """A single-channel PNG label mask: value ``k`` inside level-0 rects of ``rects[k]``."""
    width, height = slide_dims
    mask = np.zeros((round(height / downsample), round(width / downsample)), np.uint8)
    for value, boxes in rects.items():
        for x, y, w, h in boxes:
            mask[round(y / downsample):round((y + h) / downsample),
                 round(x / downsample):round((x + w) / downsample)] = value
    cv2.imwrite(str(out), mask)
    return out


def geojson(out: Path, features: Sequence[tuple[str | None, list]]) -> Path:
    """A QuPath-style FeatureCollection: ``(class name, exterior ring [(x, y), ...])``."""
    items = []
    for number, (name, ring) in enumerate(features):
        props = {"objectType": "annotation"}
        if name is not None:
            props["classification"] = {"name": name, "color": [255, 0, 0]}
        ring = [list(map(float, p)) for p in ring]
        items.append({"type": "Feature", "id": f"a{number}",
                      "geometry": {"type": "Polygon", "coordinates": [ring + [ring[0]]]},
                      "properties": props})
    out.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return out


def rect_ring(x: float, y: float, w: float, h: float) -> list[tuple[float, float]]:
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
