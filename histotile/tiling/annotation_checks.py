"""Annotations that label nothing: the checks behind the per-slide warnings of
``histotile tile`` (``--strict`` makes each a failure).

Before tiling (:func:`check_annotation`): a GeoJSON without classified features, or
none inside the slide, or with class names not among the classes. After tiling
(:func:`check_labels`): a painted overlay or label mask that gave no tile any class but
the default one, with the colours (or values) found and those expected.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from histotile.tiling.annotation_geojson import read_features
from histotile.tiling.annotation_limits import geojson_problems
from histotile.tiling.annotations import (
    Annotation,
    GeoJSONAnnotation,
    LabelMask,
    PaintedOverlay,
)
from histotile.tiling.settings import TilingSettings

_PREVIEW = 1024  # longest side (px) at which overlay colours are looked at


def check_annotation(annotation: Annotation, dimensions: tuple[int, int],
                     settings: TilingSettings) -> list[str]:
    """Problems of a GeoJSON annotation seen before tiling, one sentence each
    (``dimensions``: the slide's level-0 width and height)."""
    if not isinstance(annotation, GeoJSONAnnotation):
        return []
    features = read_features(annotation.path)
    problems = geojson_problems(features, dimensions, annotation.path.name)
    if not features:
        return problems
    unknown = unknown_classes(annotation, settings.classes)
    if unknown:
        problems.append(f"{annotation.path.name}: class name(s) {', '.join(unknown)} are "
                        f"not in --classes {list(settings.classes)}; their polygons are "
                        "ignored (add them to --classes, or rename them in QuPath)")
    return problems


def unknown_classes(annotation: Annotation, classes: tuple[str, ...]) -> list[str]:
    """The class names of a GeoJSON's features not among ``classes`` (without regard to
    case), sorted; empty for other kinds."""
    if not isinstance(annotation, GeoJSONAnnotation):
        return []
    known = {c.lower() for c in classes}
    return sorted({f[0] for f in read_features(annotation.path) if f[0].lower() not in known})


def without_unknown_classes(annotation: GeoJSONAnnotation,
                            classes: tuple[str, ...]) -> GeoJSONAnnotation:
    """The GeoJSON with only the features of known classes drawn (matched without regard
    to case), so that tiling can go on past a warning. Nothing is written: a copy of the
    file in the output folder was left behind by every run."""
    return GeoJSONAnnotation(annotation.path, only=tuple(classes))


def check_labels(annotation: Annotation, manifest, slide, settings: TilingSettings
                 ) -> list[str]:
    """Problems seen after tiling: an overlay or mask that labelled no tile with any class
    but the default one. ``manifest``: the tiles (``frac_<class>`` columns)."""
    if isinstance(annotation, GeoJSONAnnotation) or len(manifest) == 0:
        return []
    others = [c for c in settings.classes if c != settings.roles.default_class]
    covered = any(float(manifest[f"frac_{c}"].max()) > 0 for c in others
                  if f"frac_{c}" in manifest)
    if covered:
        return []
    if isinstance(annotation, PaintedOverlay):
        palette = annotation.palette if annotation.palette is not None else settings.palette
        expected = ", ".join(f"{name} {_hex(rgb)}" for name, rgb in palette.items())
        found = ", ".join(_hex(c) for c in painted_colours(annotation.path, slide,
                                                           settings.overlay_threshold))
        return [f"{annotation.path.name}: no painted pixel matches a class colour "
                f"(expected {expected or 'no palette'}; painted colours found: "
                f"{found or 'none'}); fix --classes colours, e.g. 'normal,tumour=#00ff00'"]
    if isinstance(annotation, LabelMask):
        values = mask_values(annotation.path)
        expected = ", ".join(f"{i}={c}" for i, c in enumerate(settings.classes)
                             if c != settings.roles.default_class)
        return [f"{annotation.path.name}: the label mask labels no tile with a class (values "
                f"found: {values}; expected {expected}); check the mask and --classes order"]
    return []


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def painted_colours(path: Path, slide, threshold: int, top: int = 3) -> list[tuple]:
    """The most common colours painted on an overlay (pixels differing from the slide by
    at least ``threshold`` in a channel), rounded to multiples of 16, most common first;
    compared at :data:`_PREVIEW` px so that any overlay size is cheap."""
    import cv2

    from histotile.wsi import open_slide

    with open_slide(path) as image:  # PNG, JPEG or (tiled) TIFF alike
        overlay = np.asarray(image.thumbnail(_PREVIEW))
    base = np.asarray(slide.thumbnail(max(overlay.shape[:2])))
    if base.shape[:2] != overlay.shape[:2]:
        base = cv2.resize(base, overlay.shape[1::-1], interpolation=cv2.INTER_AREA)
    marked = cv2.absdiff(overlay, base).max(axis=2) >= threshold
    rounded = (overlay[marked].astype(np.int64) + 8) // 16 * 16
    counts = Counter(map(tuple, np.clip(rounded, 0, 255).tolist()))
    return [colour for colour, _ in counts.most_common(top)]


def mask_values(path: Path, limit: int = 10) -> list[int]:
    """The distinct values of a label mask (read at up to :data:`_PREVIEW` px)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.thumbnail((_PREVIEW, _PREVIEW), Image.Resampling.NEAREST)
            values = np.unique(np.asarray(image))
    except Exception:  # noqa: BLE001 - only a message depends on it
        return []
    return [int(v) for v in values[:limit]]
