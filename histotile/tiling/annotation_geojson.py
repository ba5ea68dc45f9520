"""QuPath GeoJSON annotations: the features parsed once per file (cached on path and
modification time) and drawn, window by window, into class maps by :class:`GeoJSONWindows`
(a vectorised scanline fill, :func:`fill_polygon`)."""

from __future__ import annotations

import functools
import json
import math
import warnings
from pathlib import Path

import numpy as np

from histotile.errors import AnnotationError
from histotile.tiling.annotation_limits import check_geojson
from histotile.tiling.annotation_windows import UNANNOTATED, ClassMapWindows
from histotile.tiling.settings import TilingSettings


@functools.lru_cache(maxsize=8)
def _features_cached(path: str, mtime: float) -> tuple:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except RecursionError:
        raise AnnotationError(f"{path}: the GeoJSON is nested too deeply to read (not an "
                              "export of annotations); export the annotations again from "
                              "QuPath") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AnnotationError(f"{path}: not readable GeoJSON ({error}); export the "
                              "annotations again from QuPath (File > Export objects as "
                              "GeoJSON)") from None
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, list):
        features = data
    else:
        raise AnnotationError(f"{path}: GeoJSON must be a FeatureCollection, a Feature or "
                              "a list of features; export it from QuPath as GeoJSON")
    if not isinstance(features, list):
        raise AnnotationError(f"{path}: 'features' is not a list")
    # (class, feature label, polygons as lists of rings, bounding box x0, y0, x1, y1)
    parsed: list[tuple[str, str, tuple[list[np.ndarray], ...], tuple[float, ...]]] = []
    notes: list[str] = []
    for number, feature in enumerate(features):
        label = _feature_label(feature, number)
        if not isinstance(feature, dict):
            raise AnnotationError(f"{path}: {label} is not a GeoJSON object")
        if not isinstance(feature.get("properties") or {}, dict):
            raise AnnotationError(f"{path}: {label} has 'properties' that is a "
                                  f"{type(feature['properties']).__name__}, not an object; "
                                  "fix that feature or export the annotations again")
        name = _classification(feature)
        polygons = _polygons(feature.get("geometry"), path, label, notes)
        if not polygons:
            continue
        if name is None:
            notes.append(f"{path}: {label} has no classification and is ignored "
                         "(classify it in QuPath to use it)")
            continue
        points = np.concatenate([np.concatenate(rings) for rings in polygons])
        bbox = (*points.min(axis=0), *points.max(axis=0))
        parsed.append((name, label, tuple(polygons), bbox))
    return tuple(parsed), tuple(notes)


def read_features(path: Path) -> tuple:
    """The classified polygon features of a GeoJSON file: ``(name, label, polygons,
    bbox)`` tuples, bbox in level-0 pixels. Features ignored (no classification, no
    area) are warned about at every call, the parse being cached."""
    features, notes = _features_cached(str(path), path.stat().st_mtime)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return features


def _feature_label(feature, number: int) -> str:
    label = f"feature {number}"
    if isinstance(feature, dict):
        props = feature.get("properties")
        extra = feature.get("id") or (props.get("name") if isinstance(props, dict) else None)
        if extra:
            label += f" ({extra})"
    return label


def _classification(feature: dict) -> str | None:
    props = feature.get("properties") or {}
    value = props.get("classification")
    if isinstance(value, dict):
        value = value.get("name")
    if value is None:
        value = props.get("class") or props.get("label")
    return None if value in (None, "") else str(value)


def _polygons(geometry, path: str | Path, label: str,
              notes: list[str]) -> list[list[np.ndarray]]:
    """Rings (float64 (k, 2) arrays, exterior first) of each polygon of a geometry;
    a geometry without area is ignored with a line in ``notes``."""
    if geometry is None:
        return []
    if not isinstance(geometry, dict) or "type" not in geometry:
        raise AnnotationError(f"{path}: {label} has an invalid geometry (no 'type'); "
                              "fix or delete that annotation and export again")
    kind = geometry["type"]
    try:
        if kind == "Polygon":
            return [[_ring(r) for r in geometry["coordinates"]]]
        if kind == "MultiPolygon":
            return [[_ring(r) for r in poly] for poly in geometry["coordinates"]]
        if kind == "GeometryCollection":
            return [p for g in geometry["geometries"]
                    for p in _polygons(g, path, label, notes)]
    except (KeyError, TypeError, ValueError) as error:
        raise AnnotationError(f"{path}: {label} has malformed {kind} coordinates "
                              f"({error}); fix or delete that annotation and export "
                              "again") from None
    if kind in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        notes.append(f"{path}: {label} is a {kind}, which covers no area, and is ignored")
        return []
    raise AnnotationError(f"{path}: {label} has unknown geometry type {kind!r}")


def _ring(coords) -> np.ndarray:
    ring = np.asarray(coords, dtype=np.float64)
    if ring.ndim != 2 or ring.shape[1] < 2 or len(ring) < 3 or not np.isfinite(ring).all():
        raise ValueError("a ring needs at least 3 finite (x, y) points")
    return ring[:, :2]


def _class_index(name: str, classes: tuple[str, ...], path: Path, label: str) -> int:
    if name in classes:
        return classes.index(name)
    lowered = [c.lower() for c in classes]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    raise AnnotationError(f"{path}: {label} is classified {name!r}, which is not one of "
                          f"the classes {list(classes)}; add it to the classes setting or "
                          "rename the class in QuPath")


class GeoJSONWindows(ClassMapWindows):
    """Class maps of a GeoJSON file, drawn at ``settings.annotation_resolution`` level-0
    pixels per map pixel (never finer than level 0)."""

    def __init__(self, path: Path, slide, classes: tuple[str, ...],
                 settings: TilingSettings, extent: float,
                 only: tuple[str, ...] | None = None) -> None:
        self.path = path
        self.classes = classes
        self.features = read_features(path)
        if only is not None:  # the features of these classes alone (any case)
            kept = {c.lower() for c in only}
            self.features = tuple(f for f in self.features if f[0].lower() in kept)
        check_geojson(self.features, slide.dimensions, path)
        for name, label, _, _ in self.features:
            _class_index(name, classes, path, label)
        ds = max(1.0, extent / settings.annotation_resolution)
        self.scale = (ds, ds)
        w0, h0 = slide.dimensions
        self.map_dims = (math.ceil(w0 / ds), math.ceil(h0 / ds))

    def class_map(self, mx0: int, my0: int, mx1: int, my1: int) -> np.ndarray:
        ds = self.scale[0]
        out = np.full((my1 - my0, mx1 - mx0), UNANNOTATED, dtype=np.uint8)
        lo = np.array([mx0 * ds, my0 * ds])
        hi = np.array([mx1 * ds, my1 * ds])
        for name, label, polygons, bbox in self.features:
            if bbox[2] < lo[0] or bbox[3] < lo[1] or bbox[0] > hi[0] or bbox[1] > hi[1]:
                continue
            value = _class_index(name, self.classes, self.path, label)
            for rings in polygons:
                fill_polygon(out, [r / ds - [mx0, my0] for r in rings], int(value))
        return out


def fill_polygon(out: np.ndarray, rings: list[np.ndarray], value: int) -> None:
    """Set ``out`` to ``value`` at the pixels whose centre lies inside a polygon (even-odd
    rule over all its rings, so holes stay out). Vertices are (x, y) in pixel units, pixel
    (i, j) covering [i, i+1) x [j, j+1); a rectangle on pixel edges fills exactly its
    pixels. Vectorised scanline: crossings of every edge with every pixel-centre row."""
    height, width = out.shape
    starts = np.concatenate([r for r in rings])
    ends = np.concatenate([np.roll(r, -1, axis=0) for r in rings])
    x1, y1, x2, y2 = starts[:, 0], starts[:, 1], ends[:, 0], ends[:, 1]
    moving = y1 != y2
    x1, y1, x2, y2 = x1[moving], y1[moving], x2[moving], y2[moving]
    if len(x1) == 0:
        return
    # Rows j whose centre j + 0.5 lies in [min y, max y) of an edge (half-open: a vertex
    # is counted once), clipped to the map.
    low = np.clip(np.ceil(np.minimum(y1, y2) - 0.5), 0, height).astype(np.int64)
    high = np.clip(np.ceil(np.maximum(y1, y2) - 0.5), 0, height).astype(np.int64)
    counts = high - low
    if counts.sum() == 0:
        return
    edge = np.repeat(np.arange(len(x1)), counts)
    row = low[edge] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    centre = row + 0.5
    x = x1[edge] + (centre - y1[edge]) * (x2[edge] - x1[edge]) / (y2[edge] - y1[edge])
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    # Consecutive crossings of a row pair up (entering, leaving); fill centres in [a, b).
    a, b, r = x[0::2], x[1::2], row[0::2]
    first = np.clip(np.ceil(a - 0.5), 0, width).astype(np.int64)
    last = np.clip(np.ceil(b - 0.5), 0, width).astype(np.int64)
    spans = last > first
    first, last, r = first[spans], last[spans], r[spans]
    if len(r) == 0:
        return
    top, bottom = int(r.min()), int(r.max()) + 1
    left, right = int(first.min()), int(last.max())
    marks = np.zeros((bottom - top, right - left + 1), np.int32)
    np.add.at(marks, (r - top, first - left), 1)
    np.add.at(marks, (r - top, last - left), -1)
    inside = np.cumsum(marks, axis=1)[:, :-1] > 0
    out[top:bottom, left:right][inside] = value
