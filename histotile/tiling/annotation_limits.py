"""Checks that make silent annotation outcomes loud: a GeoJSON with no usable features,
features that all lie outside the slide, and raster annotations too small to mean
anything for their slide.

:func:`geojson_problems` returns the messages (``histotile tile`` puts them in its report's
warning column, see :mod:`histotile.tiling.annotation_checks`); :func:`check_geojson` warns
about either (``--strict`` on the command line makes them failures).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from histotile.errors import AnnotationError

# A painted overlay or label mask whose longer side is below this is refused: a 1 x 1 px
# "overlay" of a 2220 x 2967 slide would label the whole slide from one pixel.
MIN_MAP_SIDE = 32


class AnnotationWarning(UserWarning):
    """An annotation that is usable but probably not what was meant."""


def geojson_problems(features: tuple, slide_dimensions: tuple[int, int],
                     path: str | Path) -> list[str]:
    """Messages about parsed GeoJSON ``features`` (``(name, label, polygons, bbox)``,
    level-0 pixels) against a slide of ``slide_dimensions``; empty when all is well."""
    width, height = slide_dimensions
    if not features:
        return [f"{path}: no classified polygon in the GeoJSON, so every tile gets the "
                "default class (export the annotations again from QuPath if that is wrong)"]
    inside = [f for f in features
              if f[3][0] < width and f[3][1] < height and f[3][2] > 0 and f[3][3] > 0]
    if not inside:
        x0 = min(f[3][0] for f in features)
        y0 = min(f[3][1] for f in features)
        x1 = max(f[3][2] for f in features)
        y1 = max(f[3][3] for f in features)
        return [f"{path}: all {len(features)} features lie outside the {width} x {height} px "
                f"slide (they span x {x0:.0f}..{x1:.0f}, y {y0:.0f}..{y1:.0f}): the "
                "annotation belongs to another slide or uses other coordinates (export it "
                "from this slide in QuPath, in level-0 pixels)"]
    return []


def check_geojson(features: tuple, slide_dimensions: tuple[int, int], path: str | Path) -> None:
    """Warn (:class:`AnnotationWarning`) about an empty GeoJSON, or one whose features all
    lie outside the slide (it belongs to another slide or another coordinate system)."""
    for message in geojson_problems(features, slide_dimensions, path):
        warnings.warn(message, AnnotationWarning, stacklevel=3)


def check_map_size(slide_dims: tuple[int, int], map_dims: tuple[int, int],
                   path: str | Path) -> None:
    """Refuse a raster annotation too small to label its slide."""
    (w0, h0), (w, h) = slide_dims, map_dims
    if max(w, h) < MIN_MAP_SIDE and max(w0, h0) >= MIN_MAP_SIDE:
        raise AnnotationError(
            f"{path}: the annotation image is {w} x {h} px for a {w0} x {h0} px slide: each "
            f"of its pixels would label about {w0 / max(w, 1):.0f} x {h0 / max(h, 1):.0f} "
            f"slide pixels; export it from the whole slide at full or uniformly reduced "
            f"resolution (at least {MIN_MAP_SIDE} px on the longer side)")
