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

Each kind reads its own class maps (its ``windows`` method returns a
:class:`~histotile.tiling.annotation_windows.ClassMapWindows`): GeoJSON in
:mod:`~histotile.tiling.annotation_geojson`, label masks and painted overlays in
:mod:`~histotile.tiling.annotation_raster`. Add a kind: a dataclass here with
``windows``, ``check_classes`` and ``warn_unused``, and its case in :func:`load_annotation`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histotile.errors import AnnotationError
from histotile.tiling._boxes import box_sums, group_by_cells, integral_image
from histotile.tiling.annotation_geojson import GeoJSONWindows, read_features
from histotile.tiling.annotation_raster import LabelMaskWindows, PaintedOverlayWindows
from histotile.tiling.annotation_windows import UNANNOTATED, ClassMapWindows
from histotile.tiling.settings import RGB, TilingSettings

_WINDOW = 1024  # side of a class-map window, in map pixels (bounds memory)


class _Kind:
    """What every annotation kind does beyond reading its class maps (no-ops here)."""

    def check_classes(self, classes: tuple[str, ...]) -> None:
        """Raise :class:`AnnotationError` when the annotation's own classes disagree."""

    def warn_unused(self, fractions: np.ndarray, classes: tuple[str, ...],
                    settings: TilingSettings) -> None:
        """Warn about classes the annotation declares but no tile got."""


@dataclass(frozen=True)
class PaintedOverlay(_Kind):
    """A copy of the slide with coloured paint on it.

    Attributes:
        path: the overlay image.
        palette: class name -> painted RGB colour (None = the settings' palette).
    """

    path: Path
    palette: dict[str, RGB] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def windows(self, slide, classes: tuple[str, ...], settings: TilingSettings,
                extent: float) -> ClassMapWindows:
        return PaintedOverlayWindows(self.path, self.palette, slide, classes, settings)

    def warn_unused(self, fractions: np.ndarray, classes: tuple[str, ...],
                    settings: TilingSettings) -> None:
        """Warn about palette colours found in no tile."""
        if len(fractions) == 0:
            return
        palette = self.palette if self.palette is not None else settings.palette
        default = settings.roles.default_class
        for name, rgb in palette.items():
            if name != default and fractions[:, classes.index(name)].max() <= 0:
                warnings.warn(f"{self.path}: palette colour {tuple(rgb)} for class "
                              f"{name!r} was not found in any tile; check the palette against "
                              "the colours painted (and overlay_threshold)", stacklevel=4)


@dataclass(frozen=True)
class LabelMask(_Kind):
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

    def windows(self, slide, classes: tuple[str, ...], settings: TilingSettings,
                extent: float) -> ClassMapWindows:
        return LabelMaskWindows(self.path, slide, classes)

    def check_classes(self, classes: tuple[str, ...]) -> None:
        if self.classes is not None and tuple(self.classes) != classes:
            raise AnnotationError(f"{self.path}: the label mask's classes "
                                  f"{list(self.classes)} differ from the classes "
                                  f"asked for {list(classes)}")


@dataclass(frozen=True)
class GeoJSONAnnotation(_Kind):
    """QuPath GeoJSON (a FeatureCollection, a list of features or one feature) of
    polygons and multipolygons whose ``properties.classification.name`` is a class name
    (matched without regard to case). Later features paint over earlier ones.

    Attributes:
        path: the ``.geojson`` / ``.json`` file.
        only: when set, the class names whose features are drawn (matched without
            regard to case); the others are left out (names reported unknown, tiling
            going on past the warning), with no copy of the file written anywhere.
    """

    path: Path
    only: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.only is not None:
            object.__setattr__(self, "only", tuple(self.only))

    def windows(self, slide, classes: tuple[str, ...], settings: TilingSettings,
                extent: float) -> ClassMapWindows:
        return GeoJSONWindows(self.path, slide, classes, settings, extent, only=self.only)


Annotation = PaintedOverlay | LabelMask | GeoJSONAnnotation


def load_annotation(path: str | Path, *, palette: dict[str, RGB] | None = None,
                    classes: tuple[str, ...] | None = None) -> Annotation:
    """The annotation kind for a file: ``.geojson``/``.json`` -> GeoJSON; a file named
    ``<slide>.mask.*`` or a single-channel image -> label mask (a colour mask by its
    first channel: exported masks are often saved as RGB); a colour image -> painted
    overlay."""
    path = Path(path)
    if not path.exists():
        raise AnnotationError(f"{path}: annotation file not found (check the path)")
    if path.suffix.lower() in (".geojson", ".json"):
        annotation = GeoJSONAnnotation(path)
        read_features(path)  # parse now: errors surface before any tiling work
        return annotation
    if ".mask." in path.name.lower() or _channels(path) == 1:
        return LabelMask(path, classes)
    return PaintedOverlay(path, palette)


def _channels(path: Path) -> int:
    """Samples per pixel of an image file (3 when unknown)."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                page = tif.pages[0]  # the first page is always a TiffPage
                return int(page.samplesperpixel) if isinstance(page, tifffile.TiffPage) else 3
        from PIL import Image

        with Image.open(path) as image:
            return 1 if image.mode in ("1", "L", "I", "I;16", "P") else 3
    except Exception:  # noqa: BLE001 - unreadable files are reported when opened
        return 3


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


def annotation_fractions(annotation: Annotation, slide, grid_or_boxes, classes,
                         settings: TilingSettings | None = None, *,
                         warn_unused: bool = True) -> np.ndarray:
    """Fraction (0-1) of each tile covered by each class: float64 (n, len(classes)).

    Args:
        annotation: a :class:`PaintedOverlay`, :class:`LabelMask` or
            :class:`GeoJSONAnnotation` (see :func:`load_annotation`).
        slide: the open slide the annotation belongs to.
        grid_or_boxes: a :class:`~histotile.tiling.grid.TileGrid`, or an (n, 4) array of
            level-0 boxes ``x, y, width, height``.
        classes: class names; column order of the result.
        settings: thresholds, palette and default class (defaults otherwise).
        warn_unused: warn when a palette colour of a painted overlay occurs in none of
            the tiles (tiling workers leave it to the caller, who has every tile).

    The part of a tile no class covers is counted in the default class, so rows sum to
    1.
    """
    settings = settings or TilingSettings()
    fractions = _coverage(annotation, slide, grid_or_boxes, tuple(classes), settings)
    if warn_unused:
        warn_unused_palette(annotation, fractions, tuple(classes), settings)
    return fractions


def _coverage(annotation: Annotation, slide, grid_or_boxes, classes: tuple[str, ...],
              settings: TilingSettings) -> np.ndarray:
    """:func:`annotation_fractions`' numbers: each class's map integrated over the boxes,
    window by window."""
    annotation.check_classes(classes)
    xs, ys, ws, hs = _as_boxes(grid_or_boxes)
    out = np.zeros((len(xs), len(classes)), dtype=np.float64)
    if len(xs) == 0:
        return out
    source = annotation.windows(slide, classes, settings, float(np.min(ws)))
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
    default_class = settings.roles.default_class
    default = classes.index(default_class) if default_class in classes else 0
    rest = np.clip(1.0 - out.sum(axis=1) + out[:, default], 0.0, 1.0)
    out[:, default] = rest
    return out


def warn_unused_palette(annotation: Annotation, fractions: np.ndarray,
                        classes: tuple[str, ...], settings: TilingSettings) -> None:
    """Warn about palette colours of a painted overlay found in no tile."""
    annotation.warn_unused(fractions, classes, settings)


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
