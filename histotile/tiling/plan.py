"""The tiling plan: which tiles of a slide are read, in what groups, and how each one is
judged tissue. Tiling (:func:`~histotile.tiling.extract.extract_tiles`), slide prediction
(:func:`histotile.postprocess.predict_slide`) and the benchmark all cut tiles through
:func:`plan_tiles`, so a model sees its slides' tiles exactly as its training tiles were
cut.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from histotile.tiling.artefact_batches import blurry_tiles
from histotile.tiling.artefact_map import ArtefactMap, artefact_map
from histotile.tiling.grid import TileGrid, make_grid
from histotile.tiling.reader import DEFAULT_BLOCK, plan_blocks
from histotile.tiling.settings import TilingSettings
from histotile.tiling.tissue import TissueMask, detect_tissue, slide_view, tissue_fractions

REGION_TILES = 2048
"""About this many tiles per read region (the unit of work of a tiling worker)."""


@dataclass(frozen=True)
class TilePlan:
    """How one slide is cut into tiles.

    Attributes:
        mask: the slide's low-resolution tissue mask; its ``threshold`` (0-255 chroma) is
            the one every tile's own tissue fraction is measured with.
        grid: the full grid at the target resolution (every whole tile in the slide).
        touching: bool (len(grid),): the tiles touching the (dilated) mask.
        candidates: positions into ``grid`` of the touching tiles (raster order): the
            tiles read and measured. The others are background without being read.
        tile_mpp: microns per tile pixel (None: the slide records no mpp).
        artefacts: the slide's pen ink, folds, air bubbles and coverslip edges, judged
            on the mask's view.
        block_size: side of a block read, in pixels of the level read.
    """

    mask: TissueMask
    grid: TileGrid
    touching: np.ndarray
    candidates: np.ndarray
    tile_mpp: float | None
    artefacts: ArtefactMap
    block_size: int = DEFAULT_BLOCK

    @property
    def settings(self) -> TilingSettings:
        return self.grid.settings

    @property
    def threshold(self) -> float:
        """The slide's chroma threshold (0-255) for a tissue pixel."""
        return self.mask.threshold

    def regions(self, indices: np.ndarray | None = None) -> list[np.ndarray]:
        """Read regions: positions into ``grid`` (``indices``, default the candidates)
        grouped by block (:func:`~histotile.tiling.reader.plan_blocks`, raster order), the
        blocks chunked into regions of about :data:`REGION_TILES` tiles."""
        indices = self.candidates if indices is None else indices
        regions, current, count = [], [], 0
        for block in plan_blocks(self.grid, indices, self.block_size):
            current.append(block)
            count += len(block)
            if count >= REGION_TILES:
                regions.append(np.concatenate(current))
                current, count = [], 0
        if current:
            regions.append(np.concatenate(current))
        return regions

    def tissue_fractions(self, tiles: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Each tile's own tissue fraction (float64 (n,), per pixel) for the tiles at
        positions ``indices`` of the grid: :func:`measure_tissue`."""
        return measure_tissue(tiles, self.grid.xs[indices], self.grid.ys[indices],
                              self.grid, self.threshold, self.tile_mpp, self.artefacts)

    def is_tissue(self, fractions: np.ndarray) -> np.ndarray:
        """bool: which tissue fractions make a tissue tile (``settings.min_tissue``)."""
        return np.asarray(fractions) >= self.settings.min_tissue


def measure_tissue(tiles: np.ndarray, xs: np.ndarray, ys: np.ndarray, grid: TileGrid,
                   threshold: float, tile_mpp: float | None,
                   artefacts: ArtefactMap) -> np.ndarray:
    """The one rule for a tile's tissue fraction (float64 (n,)), as tiling and slide
    prediction apply it: its pixels passing the slide's chroma ``threshold``
    (:func:`~histotile.tiling.tissue.tissue_fractions`), less those under the slide's
    pen ink (``artefacts``, judged on the view). ``xs``, ``ys``: the tiles' level-0
    top-left corners in ``grid``."""
    inked, pen = artefacts.pen_pixels(xs, ys, grid.extent, grid.size)
    return tissue_fractions(tiles, threshold, tile_mpp, pen, inked)


def measure_artefact(tiles: np.ndarray, xs: np.ndarray, ys: np.ndarray, grid: TileGrid,
                     tissue: np.ndarray, tile_mpp: float | None,
                     artefacts: ArtefactMap) -> np.ndarray:
    """The one rule for a tile's artefact share (float64 (n,), 0-1): its share under any
    of the slide's ``artefacts`` (pen ink, folds, bubbles, coverslip edges), or, for tiles whose
    ``tissue`` fraction reaches ``grid.settings.min_tissue``, 1 when out of focus
    (:func:`~histotile.tiling.artefact_batches.blurry_tiles`, on the tile's pixels)."""
    share = artefacts.fractions("artefact", xs, ys, grid.extent)
    judged = np.asarray(tissue) >= grid.settings.min_tissue
    return np.maximum(share, blurry_tiles(tiles, tile_mpp, judged))


def plan_tiles(slide, settings: TilingSettings | None = None, *,
               block_size: int = DEFAULT_BLOCK) -> TilePlan:
    """The tiling plan of an open ``slide`` (:class:`~histotile.wsi.Slide`): its tissue
    mask (``settings``' mask options), the full grid at the target resolution, the tiles
    touching tissue (those read) and how they are grouped for reading."""
    settings = settings or TilingSettings()
    view = slide_view(slide, settings.tissue_downsample)
    mask = detect_tissue(slide, threshold=settings.tissue_threshold,
                         min_area_um2=settings.mask_min_area_um2, view=view)
    artefacts = artefact_map(view[0], view[1], slide.mpp)
    grid = make_grid(slide, settings, mask, all_tiles=True)
    touching = mask.touches(grid.xs, grid.ys, grid.extent)
    tile_mpp = slide.mpp * grid.extent / grid.size if slide.mpp else None
    return TilePlan(mask, grid, touching, np.flatnonzero(touching), tile_mpp, artefacts,
                    int(block_size))
