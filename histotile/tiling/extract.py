"""Whole-slide tile extraction: tissue detection, grid, white-tile filter with a seeded
background sample, labels from an annotation, as a manifest DataFrame.

The tiles read and their read regions (groups of blocks in raster order) come from the
tiling plan (:func:`~histotile.tiling.plan.plan_tiles`). With ``workers > 1`` the
regions run in worker processes (``spawn`` context; each opens the slide by path) and the
results are put back by tile index, so the manifest is the same whatever ``workers`` is.
Each region returns only per-tile numbers, so memory stays at a few blocks per process.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histotile.errors import HistotileError
from histotile.tiling.annotations import (
    Annotation,
    annotation_fractions,
    assign_labels,
    load_annotation,
    warn_unused_palette,
)
from histotile.tiling.artefact_map import ArtefactMap
from histotile.tiling.grid import TileGrid
from histotile.tiling.manifest import class_columns
from histotile.tiling.plan import TilePlan, measure_artefact, measure_tissue, plan_tiles
from histotile.tiling.reader import DEFAULT_BLOCK, iter_tile_batches
from histotile.tiling.settings import TilingSettings
from histotile.tiling.tile_io import MANIFEST_COLUMNS


@dataclass
class _Task:
    slide_path: str
    grid: TileGrid  # the region's tiles only
    indices: np.ndarray  # their positions in the full grid
    threshold: float
    annotation: Annotation | None
    block_size: int
    mpp: float | None  # microns per tile pixel (None: unknown)
    artefacts: ArtefactMap  # the slide's artefacts under the region (a crop)


def _init_worker() -> None:
    import warnings

    import cv2

    cv2.setNumThreads(1)  # one process per core already; no oversubscription
    # An annotation's warnings were given once, by the parent, when it was loaded and
    # checked: a worker's copies would reach the terminal raw, once per process.
    warnings.simplefilter("ignore", UserWarning)


def _run_task(task: _Task) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    from histotile.wsi import open_slide

    settings = task.grid.settings
    with open_slide(task.slide_path) as slide:
        tissue = np.zeros(len(task.grid))
        artefact = np.zeros(len(task.grid))
        for idx, tiles in iter_tile_batches(slide, task.grid, batch_size=256,
                                            block_size=task.block_size):
            xs, ys = task.grid.xs[idx], task.grid.ys[idx]
            tissue[idx] = measure_tissue(tiles, xs, ys, task.grid, task.threshold, task.mpp,
                                         task.artefacts)
            artefact[idx] = measure_artefact(tiles, xs, ys, task.grid, tissue[idx], task.mpp,
                                             task.artefacts)
        fractions = None
        if task.annotation is not None:
            # The palette warning waits for every tile (extract_tiles gives it once).
            fractions = annotation_fractions(task.annotation, slide, task.grid,
                                             settings.classes, settings, warn_unused=False)
    return task.indices, tissue, fractions, artefact


def _measure(slide_path: str, plan: TilePlan, indices: np.ndarray,
             annotation: Annotation | None, pool: ProcessPoolExecutor | None,
             progress: Callable[[int], None] | None,
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Tissue fraction, class fractions (or None) and artefact fraction of the tiles
    ``indices`` of the plan's grid, read region by region, in ``pool`` when given (results
    placed by index: order-independent)."""
    grid = plan.grid
    n_classes = len(grid.settings.classes)
    tissue = np.zeros(len(indices))
    artefact = np.zeros(len(indices))
    fractions = np.zeros((len(indices), n_classes)) if annotation is not None else None
    where = np.full(len(grid), -1, dtype=np.int64)
    where[indices] = np.arange(len(indices))
    tasks = [_Task(slide_path, grid.subset(r), r, plan.threshold, annotation,
                   plan.block_size, plan.tile_mpp,
                   plan.artefacts.crop(grid.xs[r], grid.ys[r], grid.extent))
             for r in plan.regions(indices)]

    def collect(result) -> None:
        idx, tis, frac, art = result
        tissue[where[idx]] = tis
        artefact[where[idx]] = art
        if fractions is not None and frac is not None:
            fractions[where[idx]] = frac
        if progress is not None:
            progress(len(idx))

    if pool is None or len(tasks) <= 1:
        for task in tasks:
            collect(_run_task(task))
        return tissue, fractions, artefact
    try:
        for result in pool.map(_run_task, tasks):
            collect(result)
    except BrokenProcessPool:
        raise HistotileError(
            f"{slide_path}: a tiling worker process died (out of memory, or a script "
            "that calls extract_tiles(workers>1) outside `if __name__ == '__main__':`); "
            "use fewer workers or guard the script's entry point") from None
    return tissue, fractions, artefact


def extract_tiles(slide_path: str | Path, settings: TilingSettings | None = None, *,
                  annotation: Annotation | None = None, workers: int = 1,
                  progress: Callable[[int], None] | None = None, group: str | None = None,
                  block_size: int = DEFAULT_BLOCK, plan: TilePlan | None = None):
    """Cut a slide into tiles and describe them in a manifest (pandas DataFrame).

    Steps (the plan, :func:`~histotile.tiling.plan.plan_tiles`): a low-resolution tissue
    mask; the full grid at the target resolution; every tile touching tissue is read (in
    blocks) and its tissue fraction measured; tiles under ``settings.min_tissue`` are
    background, of which ``keep_background`` (exactly
    ``round(keep_background * n_background)``, seeded) are kept, tiles far from tissue
    included; with an annotation, per-class fractions and a label per tile.

    Args:
        slide_path: the slide.
        settings: tiling settings (defaults otherwise).
        annotation: optional :class:`PaintedOverlay`, :class:`LabelMask` or
            :class:`GeoJSONAnnotation`, or a path given to :func:`load_annotation` with
            the settings' palette and classes.
        workers: worker processes (1 = in this process). Workers are spawned, so a
            script calling this with ``workers > 1`` needs the usual
            ``if __name__ == "__main__":`` guard.
        progress: called with the number of tiles finished, as work completes (for a
            progress bar; tiling itself prints nothing). Totals the grid's tile count.
        group: the cross-validation group (patient); default the slide name.
        block_size: side of a block read, in pixels of the level read.
        plan: the slide's :func:`~histotile.tiling.plan.plan_tiles` when the caller
            already made it (with these ``settings``; its block size is used).

    Returns:
        DataFrame with :data:`MANIFEST_COLUMNS` and ``frac_<class>`` columns, one row per
        kept tile, in grid (raster) order. ``label`` is empty without an annotation.
    """
    from histotile.wsi import open_slide

    settings = settings or TilingSettings()
    slide_path = Path(slide_path)
    if isinstance(annotation, (str, Path)):
        annotation = load_annotation(annotation, palette=settings.palette,
                                     classes=settings.classes)
    with open_slide(slide_path) as slide:
        plan = plan or plan_tiles(slide, settings, block_size=block_size)
        name = slide.name
    grid, touching, candidates = plan.grid, plan.touching, plan.candidates
    pool = (ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 else None)
    try:
        tissue, fractions, artefact = _measure(str(slide_path), plan, candidates,
                                               annotation, pool, progress)
        if progress is not None and len(grid) > len(candidates):
            progress(len(grid) - len(candidates))
        is_tissue, kept_bg = _select(plan, tissue, artefact)
        # Background tiles far from tissue were not read: measure the sampled ones now.
        far = kept_bg[~touching[kept_bg]]
        far_tissue, far_fractions, far_artefact = _measure(
            str(slide_path), plan, far, annotation, pool, None)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    keep = np.sort(np.concatenate([candidates[is_tissue], kept_bg]), kind="stable")
    tissue_all = _scatter((len(grid),), (candidates, tissue), (far, far_tissue))
    artefact_all = _scatter((len(grid),), (candidates, artefact), (far, far_artefact))
    frac_all = np.zeros((len(grid), len(settings.classes)))
    if annotation is not None:
        assert fractions is not None and far_fractions is not None  # measured with it
        frac_all = _scatter(frac_all.shape, (candidates, fractions), (far, far_fractions))
        warn_unused_palette(annotation, frac_all[keep], settings.classes, settings)
    labels = (assign_labels(frac_all[keep], settings.classes, settings.roles.default_class,
                            settings.min_label_fraction)
              if annotation is not None else np.full(len(keep), "", dtype=object))
    fractions = frac_all[keep] if annotation is not None else None
    return _manifest(name, slide_path, group, grid, keep, tissue_all[keep], labels,
                     artefact_all[keep], fractions, settings)


def _select(plan: TilePlan, tissue: np.ndarray,
            artefact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which candidate tiles (their ``tissue`` and ``artefact`` fractions) are kept as
    tissue, and the seeded sample of background tiles kept (grid indices, sorted)."""
    settings, candidates = plan.settings, plan.candidates
    # A tile mostly artefact (ink, fold, blur) is dropped, or kept on request; ink is
    # not tissue, but an inked tile is never sampled as background (glass) either.
    spoilt = artefact >= settings.max_artefact
    is_tissue = plan.is_tissue(tissue)
    background = np.concatenate([candidates[~is_tissue & ~spoilt],
                                 np.flatnonzero(~plan.touching)])
    is_tissue = (is_tissue | spoilt) if settings.keep_artefacts else is_tissue & ~spoilt
    background.sort()
    rng = np.random.default_rng(settings.seed)
    n_keep = int(round(settings.keep_background * len(background)))
    kept_bg = (np.sort(rng.choice(background, size=n_keep, replace=False)) if n_keep
               else np.zeros(0, dtype=np.int64))
    return is_tissue, kept_bg


def _scatter(shape: tuple[int, ...], *parts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Zeros of ``shape`` with each ``(indices, values)`` part written in, in turn."""
    out = np.zeros(shape)
    for indices, values in parts:
        out[indices] = values
    return out


def _manifest(name: str, slide_path: Path, group: str | None, grid: TileGrid,
              keep: np.ndarray, tissue: np.ndarray, labels: np.ndarray,
              artefact: np.ndarray, fractions: np.ndarray | None, settings: TilingSettings):
    """The manifest rows of the kept tiles (``frac_<class>`` NaN when ``fractions`` is
    None, i.e. without an annotation)."""
    import pandas as pd

    df = pd.DataFrame({
        "slide": name,
        "path": str(slide_path),
        "group": group if group is not None else name,
        "x": grid.xs[keep],
        "y": grid.ys[keep],
        "extent": grid.extent,
        "level": grid.level,
        "read_size": grid.read_size,
        "size": grid.size,
        "tissue_fraction": tissue,
        "label": labels,
    }, columns=list(MANIFEST_COLUMNS))
    df["artefact"] = artefact
    for column, index in zip(class_columns(settings.classes),
                                  range(len(settings.classes))):
        df[column] = fractions[:, index] if fractions is not None else np.nan
    return df
