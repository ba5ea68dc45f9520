"""The benchmark's tissue detection and tiling stages, and their baseline: plain OpenSlide
reads of the same pixels (the mask's level; the blocks the tiler reads, in as many
processes)."""

from __future__ import annotations

import multiprocessing

import numpy as np

from histotile.workflows.benchmark.inputs import tiling_settings
from histotile.workflows.benchmark.meter import Meter

# --- tissue detection -------------------------------------------------------------------

def tissue(params: dict, meter: Meter) -> dict:
    from histotile.tiling import detect_tissue
    from histotile.tiling.tissue import tissue_lut
    from histotile.wsi import open_slide

    tissue_lut()  # a once-per-process colour table (about 1 s)
    with meter, open_slide(params["slide"]) as slide:
        mask = detect_tissue(slide)
    return {"mask_width": int(mask.mask.shape[1]), "mask_height": int(mask.mask.shape[0]),
            "downsample": float(mask.downsample),
            "tissue_area_fraction": mask.tissue_area_fraction}


def tissue_baseline(params: dict, meter: Meter) -> dict:
    import openslide

    with meter, openslide.OpenSlide(params["slide"]) as slide:
        level = slide.get_best_level_for_downsample(params["downsample"] + 1e-6)
        np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]))
    return {}


# --- tiling, labelling, white-tile filter ------------------------------------------------

def tiling(params: dict, meter: Meter) -> dict:
    from histotile.tiling import PaintedOverlay, extract_tiles, write_manifest
    from histotile.tiling.artefacts import ink_lut
    from histotile.tiling.tissue import tissue_lut

    tissue_lut()
    ink_lut()  # the ink test's once-per-process table, like the tissue one
    settings = tiling_settings()
    with meter:
        df = extract_tiles(params["slide"], settings, annotation=PaintedOverlay(params["overlay"]),
                           workers=int(params["workers"]))
        write_manifest(df, params["manifest"], overwrite=True)
    tissue_tiles = int((df["tissue_fraction"] >= settings.min_tissue).sum())
    return {"tiles_kept": len(df), "tissue_tiles": tissue_tiles,
            "labels": {str(k): int(v) for k, v in df["label"].value_counts().items()}}


def read_rects(args: tuple[str, list[tuple[int, int, int, int]]]) -> int:
    import openslide

    path, rects = args
    pixels = 0
    with openslide.OpenSlide(path) as slide:
        for x, y, w, h in rects:
            pixels += np.asarray(slide.read_region((x, y), 0, (w, h))).shape[0] * w
    return pixels


def read_plan(slide_path: str) -> tuple[list[list[tuple[int, int, int, int]]], int, int]:
    """The rectangles the tiler reads (level-0 x, y, width, height), grouped by the read
    regions of its plan (:func:`histotile.tiling.plan_tiles`), as it hands them to its
    workers; the grid's tile count and the number of tiles read."""
    from histotile.tiling import plan_tiles
    from histotile.tiling.reader import plan_blocks
    from histotile.wsi import open_slide

    with open_slide(slide_path) as slide:
        plan = plan_tiles(slide, tiling_settings())
    grid = plan.grid
    regions = []
    for region in plan.regions():
        rects = []
        for block in plan_blocks(grid.subset(region), None, plan.block_size):
            xs, ys = grid.xs[region][block], grid.ys[region][block]
            rects.append((int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + grid.extent,
                          int(ys.max() - ys.min()) + grid.extent))
        regions.append(rects)
    return regions, len(grid), len(plan.candidates)


def tiling_baseline(params: dict, meter: Meter) -> dict:
    regions, grid_tiles, tiles_read = read_plan(params["slide"])
    workers = int(params["workers"])
    jobs = [(params["slide"], rects) for rects in regions]
    with meter:
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                pixels = sum(pool.map(read_rects, jobs, chunksize=1))
        else:
            pixels = sum(map(read_rects, jobs))
    return {"grid_tiles": grid_tiles, "tiles_read": tiles_read,
            "blocks": sum(len(r) for r in regions), "pixels_read": pixels}
