"""Raster annotations: a label mask (pixel value = class index) and a painted overlay (the
slide plus coloured paint), each read window by window at its own resolution into class
maps (:class:`LabelMaskWindows`, :class:`PaintedOverlayWindows`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from histotile.errors import AnnotationError, HistotileError
from histotile.tiling.annotation_limits import check_map_size
from histotile.tiling.annotation_windows import UNANNOTATED, ClassMapWindows
from histotile.tiling.settings import RGB, TilingSettings

if TYPE_CHECKING:
    import zarr

_ASPECT_TOLERANCE = 0.01


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
        self._array: zarr.Array | None = None  # a TIFF's, read window by window
        self._pixels: np.ndarray | None = None  # any other image's, decoded whole
        try:
            if path.suffix.lower() in (".tif", ".tiff"):
                import tifffile
                import zarr

                self._tiff = tifffile.TiffFile(str(path))
                level = self._tiff.series[0].levels[0]
                self._axes = level.axes
                self._array = zarr.open_array(level.aszarr(), mode="r")
                shape = dict(zip(level.axes, level.shape))
                self.dimensions = (int(shape["X"]), int(shape["Y"]))
            else:
                from PIL import Image

                from histotile.wsi.limits import apply_to_pillow, check_image_pixels

                apply_to_pillow()  # decoded whole: the plain-image pixel limit applies
                with Image.open(path) as image:
                    check_image_pixels(path, *image.size)
                    image.load()
                    kept = image.mode in ("P", "L", "I", "I;16", "I;16B", "1")
                    pixels = np.asarray(image if kept else image.convert("RGB"))
                if pixels.ndim == 3 and np.any(pixels[..., 1:] != pixels[..., :1]):
                    raise AnnotationError(
                        f"{path}: a label mask in colour (its red, green and blue differ): "
                        "a mask's pixel values are class numbers 0, 1, ...; save it as a "
                        "single-channel PNG or TIFF (or name a painted copy of the slide "
                        "<slide>.overlay.png)")
                self._pixels = pixels[..., 0] if pixels.ndim == 3 else pixels
                self.dimensions = (int(self._pixels.shape[1]), int(self._pixels.shape[0]))
        except AnnotationError:
            raise
        except Exception as error:  # noqa: BLE001 - PIL/tifffile raise many types
            raise AnnotationError(f"{path}: cannot read the label mask ({type(error).__name__}:"
                                  f" {error}); save it as a single-channel PNG or TIFF") from None

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        if self._pixels is not None:
            return self._pixels[y:y + height, x:x + width]
        index = tuple(slice(y, y + height) if a == "Y" else slice(x, x + width) if a == "X"
                      else 0 for a in self._axes)
        assert self._array is not None  # the constructor set one of the two
        try:
            return np.asarray(self._array[index])
        except Exception as error:  # noqa: BLE001 - tifffile/zarr raise many types
            raise AnnotationError(f"{self.path}: cannot read the label mask "
                                  f"({type(error).__name__}: {error}); the file is damaged "
                                  "or truncated: export it again") from None


class LabelMaskWindows(ClassMapWindows):
    """Class maps of a label mask: its values, checked against the classes."""

    def __init__(self, path: Path, slide, classes: tuple[str, ...]) -> None:
        if not path.is_file():
            raise AnnotationError(f"{path}: label mask not found (check the path)")
        self.path = path
        self.classes = classes
        self.image = _LabelImage(path)
        self.map_dims = self.image.dimensions
        self.scale = map_scale(slide.dimensions, self.map_dims, path)

    def class_map(self, mx0: int, my0: int, mx1: int, my1: int) -> np.ndarray:
        return self._labels(self.image.read(mx0, my0, mx1 - mx0, my1 - my0))

    def _labels(self, values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values)
        top = int(values.max())
        if top >= len(self.classes):
            found = np.unique(values[values >= len(self.classes)])[:10].tolist()
            raise AnnotationError(
                f"{self.path}: label-mask values {found} have no class (classes "
                f"are {list(self.classes)} for values 0-{len(self.classes) - 1}); give the "
                "classes in value order")
        return values.astype(np.uint8, copy=False)


class PaintedOverlayWindows(ClassMapWindows):
    """Class maps of a painted overlay: pixels that differ from the slide, each given the
    class of the nearest palette colour within the tolerance."""

    def __init__(self, path: Path, palette: dict[str, RGB] | None, slide,
                 classes: tuple[str, ...], settings: TilingSettings) -> None:
        self.path = path
        self.slide = slide
        self.settings = settings
        self.image = _open_image(path, "painted overlay")
        self.map_dims = self.image.dimensions
        self.scale = map_scale(slide.dimensions, self.map_dims, path)
        palette = palette if palette is not None else settings.palette
        if not palette:
            raise AnnotationError(f"{path}: a painted overlay needs a palette "
                                  "(class name -> RGB colour), e.g. {'tumour': (0, 255, 0)}")
        missing = [n for n in palette if n not in classes]
        if missing:
            raise AnnotationError(f"{path}: palette classes {missing} are not "
                                  f"among the classes {list(classes)}")
        self.palette_names = list(palette)
        self.palette_index = np.array([classes.index(n) for n in palette], np.uint8)
        self.palette_rgb = np.array([palette[n] for n in palette], np.float32)

    def class_map(self, mx0: int, my0: int, mx1: int, my1: int) -> np.ndarray:
        pixels = self._read(mx0, my0, mx1 - mx0, my1 - my0)
        return self._painted(pixels, mx0, my0)

    def _read(self, mx: int, my: int, w: int, h: int) -> np.ndarray:
        try:
            return self.image.read_region((mx, my), 0, (w, h))
        except HistotileError as error:
            raise AnnotationError(f"{self.path}: cannot read the annotation "
                                  f"image: {error}") from None

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
