"""Export of manifest tiles as image files in an ImageFolder layout, for other tools."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2

from histotile._atomic import atomic_path
from histotile._names import check_folder_name
from histotile.errors import DatasetError, OutputExistsError
from histotile.tiling.grid import grid_from_boxes
from histotile.tiling.reader import iter_tile_batches


def tile_filename(slide: str, x: int, y: int) -> str:
    """``<slide>_<x>_<y>.png`` (x, y: level-0 top-left)."""
    return f"{slide}_{int(x)}_{int(y)}.png"


def export_imagefolder(manifest, out_dir: str | Path, overwrite: bool = False,
                       progress: Callable[[int], None] | None = None) -> Path:
    """Write every tile of ``manifest`` as ``out_dir/<label>/<slide>_<x>_<y>.png``.

    Tiles are streamed from the slides in blocks (never the whole slide in memory); each
    PNG is written atomically. A non-empty ``out_dir`` is refused unless ``overwrite``
    (files of the same name are then replaced; other files are left alone).
    """
    from histotile.wsi import open_slide

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise OutputExistsError(f"{out_dir}: output folder exists and is not empty (pass "
                                "overwrite=True / --overwrite, or choose another folder)")
    labels = manifest["label"].astype(str)
    if (labels == "").any() or manifest["label"].isna().any():
        raise DatasetError("export_imagefolder: some tiles have no label; label them from "
                           "an annotation (extract_tiles(annotation=...)) first")
    for label in labels.unique():
        check_folder_name(label, "export_imagefolder: tile label", DatasetError)
    keys = ["path", "level", "read_size", "size", "extent"]
    for (path, level, read_size, size, extent), rows in manifest.groupby(keys, sort=False):
        with open_slide(path) as slide:
            grid = grid_from_boxes(rows["x"].to_numpy(), rows["y"].to_numpy(), level=level,
                                   read_size=read_size, size=size, extent=extent,
                                   slide_dimensions=slide.dimensions,
                                   level_downsample=slide.level_downsamples[int(level)])
            names = rows["slide"].astype(str).to_numpy()
            tile_labels = labels.loc[rows.index].to_numpy()
            for idx, tiles in iter_tile_batches(slide, grid):
                for k, i in enumerate(idx):
                    folder = out_dir / tile_labels[i]
                    target = folder / tile_filename(names[i], grid.xs[i], grid.ys[i])
                    with atomic_path(target, overwrite=True) as tmp:
                        if not cv2.imwrite(os.fspath(tmp), tiles[k][:, :, ::-1]):
                            raise DatasetError(f"{target}: could not write the PNG")
                if progress is not None:
                    progress(len(idx))
    return out_dir
