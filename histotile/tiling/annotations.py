"""Per-tile class fractions from annotations.

Three kinds of annotation, each a small dataclass:

* :class:`PaintedOverlay`: an image that is the slide plus coloured paint (any format
  ``open_slide`` reads, at full or reduced resolution with the slide's aspect ratio).
  Marked pixels differ from the slide by more than compression noise; a marked pixel
  takes the class of the nearest palette colour (within a tolerance).
* :class:`LabelMask`: an image whose pixel value is a class index.
* :class:`GeoJSONAnnotation`: QuPath GeoJSON, polygons with a classification name.

Each is turned, window by window, into a class map (one class index per map pixel, 255 =
unannotated) and integrated over tile boxes with summed-area tables, so the cost is one
pass over the annotation at its own resolution, never a loop over tile pixels. The
unannotated part of a tile counts towards the default class.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from histotile.errors import AnnotationError, HistotileError
from histotile.tiling._boxes import box_sums, group_by_cells, integral_image
from histotile.tiling.annotation_limits import check_geojson, check_map_size
from histotile.tiling.settings import RGB, TilingSettings

UNANNOTATED = 255
_WINDOW = 1024  # side of a class-map window, in map pixels (bounds memory)
_ASPECT_TOLERANCE = 0.01


@dataclass(frozen=True)
class PaintedOverlay:
    """A copy of the slide with coloured paint on it.

    Attributes:
        path: the overlay image.
        palette: class name -> painted RGB colour (None = the settings' palette).
    """

    path: Path
    palette: dict[str, RGB] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


@dataclass(frozen=True)
class LabelMask:
    """An image whose pixel value ``i`` means class ``classes[i]`` (8- or 16-bit grey, a
    palette PNG's indices, or the first channel of a colour image; values without a class
    are an error).

    Attributes:
        path: the mask image.
        classes: names of values 0, 1, ... (None = the settings' classes).
    """

    path: Path
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))


@dataclass(frozen=True)
class GeoJSONAnnotation:
    """QuPath GeoJSON (a FeatureCollection, a list of features or one feature) of
    polygons and multipolygons whose ``properties.classification.name`` is a class name
    (matched without regard to case). Later features paint over earlier ones.

    Attributes:
        path: the ``.geojson`` / ``.json`` file.
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))


Annotation = PaintedOverlay | LabelMask | GeoJSONAnnotation


def load_annotation(path: str | Path, *, palette: dict[str, RGB] | None = None,
                    classes: tuple[str, ...] | None = None) -> Annotation:
    """The annotation kind for a file: ``.geojson``/``.json`` -> GeoJSON; a single-channel
    image -> label mask; a colour image -> painted overlay."""
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path}: annotation file not found (check the path)")
    if path.suffix.lower() in (".geojson", ".json"):
        annotation = GeoJSONAnnotation(path)
        _features(path)  # parse now: errors surface before any tiling work
        return annotation
    if _channels(path) == 1:
        return LabelMask(path, classes)
    return PaintedOverlay(path, palette)


def _channels(path: Path) -> int:
    """Samples per pixel of an image file (3 when unknown)."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                return int(tif.pages[0].samplesperpixel)
        from PIL import Image

        with Image.open(path) as image:
            return 1 if image.mode in ("1", "L", "I", "I;16", "P") else 3
    except Exception:  # noqa: BLE001 - unreadable files are reported when opened
        return 3


# -- geometry of raster annotations -------------------------------------------------------
def map_scale(slide_dims: tuple[int, int], map_dims: tuple[int, int],
              path: Path) -> tuple[float, float]:
    """Level-0 pixels per annotation-image pixel along x and y. A reduced image saved
    at ``1/d`` (sizes rounded) gets exactly ``d`` on both axes; an aspect ratio that
    differs from the slide's raises :class:`AnnotationError`."""
    (w0, h0), (w, h) = slide_dims, map_dims
    check_map_size(slide_dims, map_dims, path)
    sx, sy = w0 / w, h0 / h
    for d in {round(sx), round(sy), round(sx * 4) / 4, round(sy * 4) / 4}:
        if d >= 1 and max(1, round(w0 / d)) == w and max(1, round(h0 / d)) == h:
            return float(d), float(d)
    if abs(sx - sy) / max(sx, sy) > _ASPECT_TOLERANCE and abs(w0 / sy - w) > 1 \
            and abs(h0 / sx - h) > 1:
        raise AnnotationError(
            f"{path}: the annotation image is {w} x {h} px but the slide is {w0} x {h0}: "
            f"aspect ratios differ ({w / h:.4f} vs {w0 / h0:.4f}); export the annotation "
            "from the whole slide (not a crop), at full or uniformly reduced resolution")
    return sx, sy


def _open_image(path: Path, what: str):
    from histotile.wsi import open_slide

    try:
        return open_slide(path)
    except HistotileError as error:
        raise AnnotationError(f"{path}: cannot read the {what}: {error}; re-export it as "
                              "TIFF or PNG") from None


class _LabelImage:
    """Raw values of a label-mask image, without colour conversion (a palette PNG keeps
    its indices, a 16-bit mask its values). TIFFs are read window by window."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._array = None
        self._pixels = None
        try:
            if path.suffix.lower() in (".tif", ".tiff"):
                import tifffile
                import zarr

                self._tiff = tifffile.TiffFile(str(path))
                level = self._tiff.series[0].levels[0]
                self._axes = level.axes
                self._array = zarr.open(level.aszarr(), mode="r")
                shape = dict(zip(level.axes, level.shape))
                self.dimensions = (int(shape["X"]), int(shape["Y"]))
            else:
                from PIL import Image

                from histotile.wsi.limits import apply_to_pillow, check_image_pixels

                apply_to_pillow()  # decoded whole: the plain-image pixel limit applies
                with Image.open(path) as image:
                    check_image_pixels(path, *image.size)
                    image.load()
                    if image.mode not in ("P", "L", "I", "I;16", "I;16B", "1"):
                        image = image.convert("RGB")
                    pixels = np.asarray(image)
                self._pixels = pixels[..., 0] if pixels.ndim == 3 else pixels
                self.dimensions = (int(self._pixels.shape[1]), int(self._pixels.shape[0]))
        except Exception as error:  # noqa: BLE001 - PIL/tifffile raise many types
            raise AnnotationError(f"{path}: cannot read the label mask ({type(error).__name__}:"
                                  f" {error}); save it as a single-channel PNG or TIFF") from None

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        if self._pixels is not None:
            return self._pixels[y:y + height, x:x + width]
        index = tuple(slice(y, y + height) if a == "Y" else slice(x, x + width) if a == "X"
                      else 0 for a in self._axes)
        return np.asarray(self._array[index])


# -- GeoJSON ---------------------------------------------------------------------------
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
    parsed = []
    for number, feature in enumerate(features):
        label = _feature_label(feature, number)
        if not isinstance(feature, dict):
            raise AnnotationError(f"{path}: {label} is not a GeoJSON object")
        if not isinstance(feature.get("properties") or {}, dict):
            raise AnnotationError(f"{path}: {label} has 'properties' that is a "
                                  f"{type(feature['properties']).__name__}, not an object; "
                                  "fix that feature or export the annotations again")
        name = _classification(feature)
        polygons = _polygons(feature.get("geometry"), path, label)
        if not polygons:
            continue
        if name is None:
            warnings.warn(f"{path}: {label} has no classification and is ignored "
                          "(classify it in QuPath to use it)", stacklevel=4)
            continue
        points = np.concatenate([np.concatenate(rings) for rings in polygons])
        bbox = (*points.min(axis=0), *points.max(axis=0))
        parsed.append((name, label, tuple(polygons), bbox))
    return tuple(parsed)


def _features(path: Path) -> tuple:
    return _features_cached(str(path), path.stat().st_mtime)


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


def _polygons(geometry, path: Path, label: str) -> list[list[np.ndarray]]:
    """Rings (float64 (k, 2) arrays, exterior first) of each polygon of a geometry."""
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
            return [p for g in geometry["geometries"] for p in _polygons(g, path, label)]
    except (KeyError, TypeError, ValueError) as error:
        raise AnnotationError(f"{path}: {label} has malformed {kind} coordinates "
                              f"({error}); fix or delete that annotation and export "
                              "again") from None
    if kind in ("Point", "MultiPoint", "LineString", "MultiLineString"):
        warnings.warn(f"{path}: {label} is a {kind}, which covers no area, and is ignored",
                      stacklevel=5)
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


# -- class maps, window by window --------------------------------------------------------
class _Source:
    """Class maps of one annotation over level-0 windows."""

    def __init__(self, annotation: Annotation, slide, classes: tuple[str, ...],
                 settings: TilingSettings, extent: float) -> None:
        self.annotation = annotation
        self.slide = slide
        self.classes = classes
        self.settings = settings
        self.image = None
        if isinstance(annotation, GeoJSONAnnotation):
            self.features = _features(annotation.path)
            check_geojson(self.features, slide.dimensions, annotation.path)
            for name, label, _, _ in self.features:
                _class_index(name, classes, annotation.path, label)
            ds = max(1.0, extent / settings.annotation_resolution)
            self.scale = (ds, ds)
            w0, h0 = slide.dimensions
            self.map_dims = (math.ceil(w0 / ds), math.ceil(h0 / ds))
        elif isinstance(annotation, LabelMask):
            if not annotation.path.is_file():
                raise AnnotationError(f"{annotation.path}: label mask not found (check the "
                                      "path)")
            self.image = _LabelImage(annotation.path)
            self.map_dims = self.image.dimensions
            self.scale = map_scale(slide.dimensions, self.map_dims, annotation.path)
        else:
            self.image = _open_image(annotation.path, "painted overlay")
            self.map_dims = self.image.dimensions
            self.scale = map_scale(slide.dimensions, self.map_dims, annotation.path)
        if isinstance(annotation, PaintedOverlay):
            palette = annotation.palette if annotation.palette is not None else settings.palette
            if not palette:
                raise AnnotationError(f"{annotation.path}: a painted overlay needs a palette "
                                      "(class name -> RGB colour), e.g. {'tumour': (0, 255, 0)}")
            missing = [n for n in palette if n not in classes]
            if missing:
                raise AnnotationError(f"{annotation.path}: palette classes {missing} are not "
                                      f"among the classes {list(classes)}")
            self.palette_names = list(palette)
            self.palette_index = np.array([classes.index(n) for n in palette], np.uint8)
            self.palette_rgb = np.array([palette[n] for n in palette], np.float32)

    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[np.ndarray, int, int]:
        """Class map (uint8, 255 = unannotated) covering level-0 box [x0,x1) x [y0,y1),
        with its top-left in map pixels."""
        sx, sy = self.scale
        mw, mh = self.map_dims
        mx0 = min(max(0, math.floor(x0 / sx)), mw - 1)
        my0 = min(max(0, math.floor(y0 / sy)), mh - 1)
        mx1 = max(min(mw, math.ceil(x1 / sx)), mx0 + 1)
        my1 = max(min(mh, math.ceil(y1 / sy)), my0 + 1)
        if isinstance(self.annotation, GeoJSONAnnotation):
            return self._geojson(mx0, my0, mx1, my1), mx0, my0
        if isinstance(self.annotation, LabelMask):
            return self._labels(self.image.read(mx0, my0, mx1 - mx0, my1 - my0)), mx0, my0
        pixels = self._read(mx0, my0, mx1 - mx0, my1 - my0)
        return self._painted(pixels, mx0, my0), mx0, my0

    def _read(self, mx: int, my: int, w: int, h: int) -> np.ndarray:
        try:
            return self.image.read_region((mx, my), 0, (w, h))
        except HistotileError as error:
            raise AnnotationError(f"{self.annotation.path}: cannot read the annotation "
                                  f"image: {error}") from None

    def _labels(self, values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values)
        top = int(values.max())
        if top >= len(self.classes):
            found = np.unique(values[values >= len(self.classes)])[:10].tolist()
            raise AnnotationError(
                f"{self.annotation.path}: label-mask values {found} have no class (classes "
                f"are {list(self.classes)} for values 0-{len(self.classes) - 1}); give the "
                "classes in value order")
        return values.astype(np.uint8, copy=False)

    def _painted(self, overlay: np.ndarray, mx: int, my: int) -> np.ndarray:
        sx, sy = self.scale
        h, w = overlay.shape[:2]
        slide = self.slide
        level = slide.best_level_for_downsample(min(sx, sy))
        ds = slide.level_downsamples[level]
        read_w = max(1, round(w * sx / ds))
        read_h = max(1, round(h * sy / ds))
        base = slide.read_region((round(mx * sx), round(my * sy)), level, (read_w, read_h))
        if base.shape[:2] != (h, w):
            base = cv2.resize(base, (w, h), interpolation=cv2.INTER_AREA)
        diff = cv2.absdiff(overlay, base).max(axis=2)
        marked = diff >= self.settings.overlay_threshold
        out = np.full((h, w), UNANNOTATED, dtype=np.uint8)
        if not marked.any():
            return out
        colours = overlay[marked].astype(np.float32)
        dist = ((colours[:, None, :] - self.palette_rgb[None, :, :]) ** 2).sum(axis=2)
        nearest = dist.argmin(axis=1)
        best = dist[np.arange(len(nearest)), nearest]
        # Paint moves a pixel towards its palette colour: JPEG-smeared edges of a mark stay
        # nearer the paint than the slide, compression noise stays nearer the slide.
        from_slide = ((colours - base[marked].astype(np.float32)) ** 2).sum(axis=1)
        close = (best <= self.settings.palette_tolerance ** 2) & (best < from_slide)
        values = np.where(close, self.palette_index[nearest], UNANNOTATED).astype(np.uint8)
        out[marked] = values
        return out

    def _geojson(self, mx0: int, my0: int, mx1: int, my1: int) -> np.ndarray:
        ds = self.scale[0]
        out = np.full((my1 - my0, mx1 - mx0), UNANNOTATED, dtype=np.uint8)
        lo = np.array([mx0 * ds, my0 * ds])
        hi = np.array([mx1 * ds, my1 * ds])
        for name, label, polygons, bbox in self.features:
            if bbox[2] < lo[0] or bbox[3] < lo[1] or bbox[0] > hi[0] or bbox[1] > hi[1]:
                continue
            value = _class_index(name, self.classes, self.annotation.path, label)
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


def _as_boxes(grid_or_boxes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(xs, ys, widths, heights) in level-0 pixels from a TileGrid, an (n, 4) array of
    ``x, y, w, h`` or an (n, 3) array of ``x, y, extent``."""
    if hasattr(grid_or_boxes, "xs") and hasattr(grid_or_boxes, "extent"):
        xs = np.asarray(grid_or_boxes.xs, dtype=np.float64)
        ext = np.full(len(xs), float(grid_or_boxes.extent))
        return xs, np.asarray(grid_or_boxes.ys, dtype=np.float64), ext, ext
    boxes = np.asarray(grid_or_boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] not in (3, 4):
        raise ValueError(f"boxes must be a TileGrid or an (n, 4) array of x, y, w, h; got "
                         f"shape {boxes.shape}")
    heights = boxes[:, 3] if boxes.shape[1] == 4 else boxes[:, 2]
    return boxes[:, 0], boxes[:, 1], boxes[:, 2], heights


def class_fractions(annotation: Annotation, slide, grid_or_boxes, classes,
                    settings: TilingSettings | None = None) -> np.ndarray:
    """:func:`annotation_fractions` without the palette warning (used by workers)."""
    settings = settings or TilingSettings()
    classes = tuple(classes)
    if isinstance(annotation, LabelMask) and annotation.classes is not None:
        if tuple(annotation.classes) != classes:
            raise AnnotationError(f"{annotation.path}: the label mask's classes "
                                  f"{list(annotation.classes)} differ from the classes "
                                  f"asked for {list(classes)}")
    xs, ys, ws, hs = _as_boxes(grid_or_boxes)
    out = np.zeros((len(xs), len(classes)), dtype=np.float64)
    if len(xs) == 0:
        return out
    source = _Source(annotation, slide, classes, settings, float(np.min(ws)))
    sx, sy = source.scale
    cell = _WINDOW * min(sx, sy)
    for group in group_by_cells(xs, ys, cell):
        gx, gy, gw, gh = xs[group], ys[group], ws[group], hs[group]
        cmap, mx0, my0 = source.window(gx.min(), gy.min(), (gx + gw).max(), (gy + gh).max())
        bx0, by0 = gx / sx - mx0, gy / sy - my0
        bx1, by1 = (gx + gw) / sx - mx0, (gy + gh) / sy - my0
        area = (bx1 - bx0) * (by1 - by0)
        present = np.unique(cmap)
        for value in present[present != UNANNOTATED]:
            integral = integral_image(cmap == value)
            out[group, int(value)] = box_sums(integral, bx0, by0, bx1, by1) / area
    out = np.clip(out, 0.0, 1.0)
    default = classes.index(settings.default_label) if settings.default_label in classes else 0
    rest = np.clip(1.0 - out.sum(axis=1) + out[:, default], 0.0, 1.0)
    out[:, default] = rest
    return out


def annotation_fractions(annotation: Annotation, slide, grid_or_boxes, classes,
                         settings: TilingSettings | None = None) -> np.ndarray:
    """Fraction (0-1) of each tile covered by each class: float64 (n, len(classes)).

    Args:
        annotation: a :class:`PaintedOverlay`, :class:`LabelMask` or
            :class:`GeoJSONAnnotation` (see :func:`load_annotation`).
        slide: the open slide the annotation belongs to.
        grid_or_boxes: a :class:`~histotile.tiling.grid.TileGrid`, or an (n, 4) array of
            level-0 boxes ``x, y, width, height``.
        classes: class names; column order of the result.
        settings: thresholds, palette and default class (defaults otherwise).

    The part of a tile no class covers is counted in the default class, so rows sum to
    1. Warns when a palette colour of a painted overlay occurs in none of the tiles.
    """
    settings = settings or TilingSettings()
    fractions = class_fractions(annotation, slide, grid_or_boxes, classes, settings)
    warn_unused_palette(annotation, fractions, tuple(classes), settings)
    return fractions


def warn_unused_palette(annotation: Annotation, fractions: np.ndarray,
                        classes: tuple[str, ...], settings: TilingSettings) -> None:
    """Warn about palette colours of a painted overlay found in no tile."""
    if not isinstance(annotation, PaintedOverlay) or len(fractions) == 0:
        return
    palette = annotation.palette if annotation.palette is not None else settings.palette
    for name, rgb in palette.items():
        if name != settings.default_label and fractions[:, classes.index(name)].max() <= 0:
            warnings.warn(f"{annotation.path}: palette colour {tuple(rgb)} for class "
                          f"{name!r} was not found in any tile; check the palette against "
                          "the colours painted (and overlay_threshold)", stacklevel=3)


def assign_labels(fractions: np.ndarray, classes, default_class: str,
                  min_label_fraction: float) -> np.ndarray:
    """A label per tile: the non-default class covering the largest fraction, if it
    covers at least ``min_label_fraction``; otherwise ``default_class``."""
    classes = list(classes)
    default = classes.index(default_class)
    others = fractions.copy()
    others[:, default] = -1.0
    best = others.argmax(axis=1)
    ok = others[np.arange(len(best)), best] >= min_label_fraction
    names = np.array(classes, dtype=object)
    return np.where(ok, names[best], default_class)
