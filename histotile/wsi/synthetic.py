"""Synthetic whole-slide images for tests, demos and benchmarks.

:func:`write_synthetic_slide` writes a pyramidal, tiled, JPEG TIFF of any size with
H&E-like tissue (eosin-pink stroma with haematoxylin-dark nuclei) in smooth blobs on a
near-white background, its resolution in the TIFF tags. Content is a deterministic
function of the seed and is rendered band by band, so a 100,000 x 50,000 slide is
written without holding it in memory.

:func:`write_overlay` paints coloured marks onto a copy of a slide, as a pathologist does
in an image editor, at full or reduced resolution: the "painted overlay" kind of
annotation that :mod:`histotile.tiling` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from histotile.wsi.tiff_writer import pyramid_dimensions, write_pyramid_tiff

BACKGROUND_RGB = (243, 242, 240)  # clean glass as scanners record it
# Level-0 pixels per pixel of the tissue field: the field is tiny even for huge slides.
FIELD_DOWNSAMPLE = 64
_BANK_SIZE = 8
_CHUNK = 8192


@dataclass(frozen=True)
class SyntheticSlide:
    """What :func:`write_synthetic_slide` wrote.

    Attributes:
        path: the TIFF.
        dimensions: level-0 (width, height).
        mpp: level-0 microns per pixel (None if not written).
        seed: the seed that determines the content.
        tissue_fraction: fraction of the slide area that is tissue.
    """

    path: Path
    dimensions: tuple[int, int]
    mpp: float | None
    seed: int
    tissue_fraction: float
    field_threshold: float = field(repr=False, default=0.0)

    def tissue_mask(self, downsample: float) -> np.ndarray:
        """The true tissue mask (bool, height x width) at ``downsample`` of level 0."""
        return _TissueModel(self.dimensions, self.seed, self.tissue_fraction,
                            tile_size=512).mask(downsample)


class _TissueModel:
    """Deterministic tissue content: a smooth random field thresholded to the wanted
    tissue fraction, textured with a small bank of H&E-like tiles."""

    def __init__(self, dimensions: tuple[int, int], seed: int, tissue_fraction: float,
                 tile_size: int, pale: bool = False) -> None:
        self.width, self.height = dimensions
        self.seed = seed
        self.tile_size = tile_size
        rng = np.random.default_rng(seed)
        field_w = max(8, -(-self.width // FIELD_DOWNSAMPLE))
        field_h = max(8, -(-self.height // FIELD_DOWNSAMPLE))
        # Smooth blobs: white noise blurred at a scale of about a tenth of the slide.
        noise = rng.standard_normal((field_h, field_w)).astype(np.float32)
        sigma = max(2.0, min(field_w, field_h) / 10.0)
        blurred = cv2.GaussianBlur(noise, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        blurred /= max(float(blurred.std()), 1e-6)
        self.field = blurred
        self.threshold = float(np.quantile(blurred, 1.0 - tissue_fraction)) \
            if tissue_fraction > 0 else float(blurred.max()) + 1.0
        self.bank = _texture_bank(rng, tile_size, pale)

    def mask(self, downsample: float) -> np.ndarray:
        """Boolean tissue mask at ``downsample``."""
        width = max(1, round(self.width / downsample))
        height = max(1, round(self.height / downsample))
        return self._alpha(0.0, 0.0, width, height, downsample) >= 0.5

    def _alpha(self, x0: float, y0: float, width: int, height: int,
               downsample: float) -> np.ndarray:
        """Tissue opacity in [0, 1] for a block starting at level-0 (x0, y0)."""
        scale = downsample / FIELD_DOWNSAMPLE
        map_x = ((x0 / FIELD_DOWNSAMPLE) + (np.arange(width, dtype=np.float32) + 0.5) * scale
                 - 0.5).astype(np.float32)
        map_y = ((y0 / FIELD_DOWNSAMPLE) + (np.arange(height, dtype=np.float32) + 0.5) * scale
                 - 0.5).astype(np.float32)
        grid_x = np.broadcast_to(map_x[None, :], (height, width))
        grid_y = np.broadcast_to(map_y[:, None], (height, width))
        values = cv2.remap(self.field, np.ascontiguousarray(grid_x),
                           np.ascontiguousarray(grid_y), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        # A soft edge a few field units wide, like the tapering edge of a section.
        return np.clip((values - self.threshold) / 0.15 + 0.5, 0.0, 1.0)

    def render(self, level_downsample: float, top: int, rows: int, width: int) -> np.ndarray:
        """RGB rows ``top .. top+rows`` of a level whose downsample is ``level_downsample``."""
        y0 = top * level_downsample
        band = np.empty((rows, width, 3), dtype=np.uint8)
        band[:] = BACKGROUND_RGB
        texture = None
        # Column chunks: cv2.remap is limited to 32767 px, and chunks bound the temporaries.
        for left in range(0, width, _CHUNK):
            right = min(left + _CHUNK, width)
            alpha = self._alpha(left * level_downsample, y0, right - left, rows,
                                level_downsample)
            if alpha.max() <= 0.0:
                continue
            if texture is None:
                texture = self._texture(level_downsample, top, rows, width)
            weight = (alpha * 256).astype(np.uint16)[:, :, None]
            band[:, left:right] = (
                (texture[:, left:right].astype(np.uint16) * weight
                 + np.asarray(BACKGROUND_RGB, np.uint16) * (256 - weight)) >> 8)
        return band

    def _texture(self, level_downsample: float, top: int, rows: int,
                 width: int) -> np.ndarray:
        """Texture rows: bank tiles chosen by a hash of their level-0 tile index, shrunk to
        the level (so every level looks like the shrunk level 0)."""
        factor = max(1, round(level_downsample))
        size = self.tile_size
        shrunk = max(1, size // factor)
        bank = self.bank if shrunk == size else np.stack(
            [cv2.resize(t, (shrunk, shrunk), interpolation=cv2.INTER_AREA) for t in self.bank])
        first_row, last_row = top // shrunk, (top + rows - 1) // shrunk
        columns = -(-width // shrunk)
        tile_y = np.arange(first_row, last_row + 1, dtype=np.int64)[:, None]
        tile_x = np.arange(columns, dtype=np.int64)[None, :]
        index = ((tile_x * 73856093) ^ (tile_y * 19349663) ^ (self.seed * 83492791)) % len(bank)
        mosaic = bank[index]  # (ty, tx, s, s, 3)
        mosaic = mosaic.transpose(0, 2, 1, 3, 4).reshape(
            index.shape[0] * shrunk, columns * shrunk, 3)
        offset = top - first_row * shrunk
        return mosaic[offset:offset + rows, :width]


def _texture_bank(rng: np.random.Generator, size: int, pale: bool) -> np.ndarray:
    """A few H&E-like tiles: pink stroma with fibre-like noise and dark purple nuclei."""
    tiles = []
    stroma = np.array([236, 160, 196], np.float32) if not pale else np.array(
        [240, 205, 222], np.float32)
    nucleus = np.array([92, 52, 140], np.float32) if not pale else np.array(
        [170, 140, 200], np.float32)
    for _ in range(_BANK_SIZE):
        noise = rng.standard_normal((size, size)).astype(np.float32)
        fibres = cv2.GaussianBlur(noise, (0, 0), 2.0)
        fibres /= max(float(fibres.std()), 1e-6)
        tile = stroma[None, None, :] + fibres[:, :, None] * np.array([8, 14, 10], np.float32)
        nuclei = np.zeros((size, size), np.uint8)
        count = int(size * size / 900)
        centres = rng.integers(0, size, (count, 2))
        radii = rng.integers(3, 7, count)
        for (cx, cy), radius in zip(centres, radii):
            cv2.circle(nuclei, (int(cx), int(cy)), int(radius), 255, -1, lineType=cv2.LINE_AA)
        weight = (nuclei.astype(np.float32) / 255.0)[:, :, None]
        tile = tile * (1 - weight) + nucleus[None, None, :] * weight
        tiles.append(np.clip(tile, 0, 255).astype(np.uint8))
    return np.stack(tiles)


def write_synthetic_slide(
    path: str | Path,
    width: int,
    height: int,
    *,
    mpp: float | None = 0.5,
    seed: int = 0,
    tissue_fraction: float = 0.3,
    tile_size: int = 512,
    quality: int = 90,
    pale: bool = False,
    levels: int | None = None,
    overwrite: bool = False,
) -> SyntheticSlide:
    """Write a synthetic H&E-like pyramidal slide (tiled JPEG TIFF) of any size.

    Args:
        path: output ``.tif``.
        width, height: level-0 size in pixels.
        mpp: level-0 microns per pixel written to the TIFF (None: no resolution).
        seed: determines the content exactly.
        tissue_fraction: fraction of the area covered by tissue (0 gives blank glass).
        tile_size: TIFF tile size (multiple of 16).
        quality: JPEG quality.
        pale: faint, weakly stained tissue (for tissue-detection tests).
        levels: number of pyramid levels (default: halve down to one tile).
    """
    model = _TissueModel((width, height), seed, tissue_fraction, tile_size, pale=pale)
    sizes = pyramid_dimensions(width, height, tile_size)
    if levels is not None:
        sizes = sizes[:max(1, levels)]

    def render(level: int, top: int, rows: int) -> np.ndarray:
        level_width = sizes[level][0]
        return model.render(width / level_width, top, rows, level_width)

    write_pyramid_tiff(path, sizes, render, mpp=mpp, tile_size=tile_size, quality=quality,
                       overwrite=overwrite, description="histotile synthetic slide")
    return SyntheticSlide(Path(path), (width, height), mpp, seed, tissue_fraction,
                          model.threshold)


@dataclass(frozen=True)
class Mark:
    """A painted annotation: an RGB colour filled over a rectangle or polygon.

    Coordinates are level-0 pixels of the slide: ``rect`` is (x, y, width, height);
    ``polygon`` a sequence of (x, y) vertices.
    """

    color: tuple[int, int, int]
    rect: tuple[float, float, float, float] | None = None
    polygon: Sequence[tuple[float, float]] | None = None

    def vertices(self) -> np.ndarray:
        if self.polygon is not None:
            return np.asarray(self.polygon, dtype=np.float64)
        if self.rect is None:
            raise ValueError("a Mark needs rect= or polygon=")
        x, y, w, h = self.rect
        return np.array([(x, y), (x + w, y), (x + w, y + h), (x, y + h)], dtype=np.float64)


def paint_marks(pixels: np.ndarray, marks: Sequence[Mark], origin: tuple[float, float],
                downsample: float) -> np.ndarray:
    """Fill ``marks`` into ``pixels`` (RGB, in place) whose top-left is level-0 ``origin``
    at ``downsample``. A rectangle paints exactly the pixels whose centre lies inside it
    (so one aligned to the pixel grid covers exactly its pixels); a polygon is filled by
    OpenCV, which also paints the pixels its edges cross."""
    for mark in marks:
        if mark.polygon is None and mark.rect is not None:
            x, y, w, h = ((v - o) / downsample for v, o in zip(
                mark.rect, (origin[0], origin[1], 0.0, 0.0)))
            # Pixel i's centre i + 0.5 is inside [x, x + w) when ceil(x - 0.5) <= i < ...
            x0, x1 = max(0, int(np.ceil(x - 0.5))), max(0, int(np.ceil(x + w - 0.5)))
            y0, y1 = max(0, int(np.ceil(y - 0.5))), max(0, int(np.ceil(y + h - 0.5)))
            pixels[y0:y1, x0:x1] = mark.color
            continue
        points = (mark.vertices() - np.asarray(origin)) / downsample
        # fillPoly with shift=8 rounds vertices to 1/256 px; boundaries sit on pixel edges,
        # and a pixel is filled when its centre is inside, hence the half-pixel shift.
        fixed = np.round((points - 0.5) * 256).astype(np.int32)
        cv2.fillPoly(pixels, [fixed], tuple(int(c) for c in mark.color), lineType=cv2.LINE_8,
                     shift=8)
    return pixels


def write_overlay(
    slide_path: str | Path,
    out_path: str | Path,
    marks: Sequence[Mark],
    *,
    downsample: float = 1.0,
    tile_size: int = 512,
    quality: int = 90,
    overwrite: bool = False,
) -> Path:
    """Write a painted overlay: a copy of the slide with ``marks`` painted on, at
    ``1/downsample`` of level-0 resolution, as a tiled JPEG TIFF (single level for a
    reduced overlay; the format a pathologist's image editor would save is irrelevant to
    the labeller, which reads any format ``open_slide`` reads). Streamed band by band."""
    from histotile.wsi.slide import open_slide

    with open_slide(slide_path) as slide:
        width0, height0 = slide.dimensions
        width = max(1, round(width0 / downsample))
        height = max(1, round(height0 / downsample))
        level = slide.best_level_for_downsample(downsample)
        level_ds = slide.level_downsamples[level]

        def render(_level: int, top: int, rows: int) -> np.ndarray:
            y0 = top * downsample
            if level_ds == downsample:
                band = slide.read_region((0, round(y0)), level, (width, rows)).copy()
            else:
                read_rows = max(1, round(rows * downsample / level_ds))
                read_width = max(1, round(width * downsample / level_ds))
                band = cv2.resize(slide.read_region((0, round(y0)), level,
                                                    (read_width, read_rows)),
                                  (width, rows), interpolation=cv2.INTER_AREA)
            return paint_marks(band, marks, (0.0, y0), downsample)

        write_pyramid_tiff(out_path, [(width, height)], render, mpp=None,
                           tile_size=tile_size, quality=quality, overwrite=overwrite,
                           description="histotile painted overlay")
    return Path(out_path)
