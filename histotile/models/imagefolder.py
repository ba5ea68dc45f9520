"""Image folders (``<dir>/<class>/<image>``) as tile tables: whole images, or images cut
into (overlapping) patches as in the BreakHis study (225 px at stride 117: 3 x 5 = 15
patches per 700 x 460 image).

Only image headers are read here (in parallel: a folder of 10,000 PNGs is I/O-bound);
pixels are read by the training loader. Images smaller than one patch are skipped,
counted and reported, never fatal.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from histotile.errors import DatasetError, HistotileError
from histotile.tiling.patches import IMAGE_SUFFIXES

COLUMNS = ["path", "x", "y", "extent", "level", "read_size", "label", "group"]


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the file's header. PIL reads only the header of
    PNG/JPEG/BMP; other files (pyramidal TIFFs) go through histotile's slide reader."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: BLE001 - PIL raises many types; the slide reader decides
        from histotile.wsi import open_slide

        try:
            with open_slide(path) as slide:
                return slide.dimensions
        except HistotileError as error:
            raise DatasetError(f"{path}: unreadable image ({error}); remove or replace "
                               "the file") from None


def patch_origins(width: int, height: int, size: int, stride: int) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """Top-left corners (x, y) of every whole ``size`` patch at ``stride`` in a
    ``width`` x ``height`` image, row by row; empty when the image is smaller."""
    xs = np.arange(0, width - size + 1, stride)
    ys = np.arange(0, height - size + 1, stride)
    gx, gy = np.meshgrid(xs, ys)
    return gx.ravel(), gy.ravel()


def list_images(root: Path) -> list[tuple[Path, str]]:
    """(image, class) pairs, class folders in sorted order (their declared order)."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"{root}: no class sub-folders; arrange images as "
                           f"{root}/<class>/<image>.png")
    return [(image, class_dir.name) for class_dir in class_dirs
            for image in sorted(class_dir.rglob("*"))
            if image.suffix.lower() in IMAGE_SUFFIXES and image.is_file()]


DOMINANT_SHARE = 0.9
"""A folder is "of fixed-size patches" when at least this share of its images have one
size; the few others (the edge patches of a slide, 50 x 1 to 50 x 49 px in the IDC set)
are skipped and counted rather than stretched or fatal."""


def _drop_odd_sizes(images: list[tuple[Path, str]], sizes: list[tuple[int, int]],
                    groups: list[str], notes: list[str]
                    ) -> tuple[list[tuple[Path, str]], list[tuple[int, int]], list[str]]:
    """Images, sizes and groups without the few images whose size differs from the size
    of at least :data:`DOMINANT_SHARE` of them (a note counts them)."""
    from collections import Counter

    (size, count), = Counter(sizes).most_common(1)
    if count == len(sizes) or count < DOMINANT_SHARE * len(sizes):
        return images, sizes, groups
    keep = [k for k, s in enumerate(sizes) if s == size]
    odd = [f"{images[k][0].name} ({sizes[k][0]}x{sizes[k][1]})"
           for k in range(len(sizes)) if sizes[k] != size]
    notes.append(f"{len(odd)} image(s) not of the folder's {size[0]}x{size[1]} px size "
                 f"skipped, e.g. {', '.join(odd[:3])}")
    return ([images[k] for k in keep], [sizes[k] for k in keep],
            [groups[k] for k in keep])


def scan_imagefolder(root: Path, *, patch_size: int | None = None,
                     patch_stride: int | None = None,
                     workers: int | None = None) -> tuple[pd.DataFrame, list[str],
                                                          set[tuple[int, int]], list[str]]:
    """Rows of a tile table (:data:`COLUMNS`; ``read_size`` -1 = the whole image), the
    class folders in order, the whole-image sizes seen, and notes (skipped images).

    Args:
        patch_size: cut images into patches of this side (px); None keeps whole images.
        patch_stride: step between patches (px; None = ``patch_size``, no overlap).
        workers: threads reading headers (None: CPU cores, at most 16).
    """
    images = list_images(root)
    classes = list(dict.fromkeys(label for _, label in images))
    if not images:
        raise DatasetError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class "
                           "sub-folders")
    threads = workers or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        sizes = list(pool.map(image_size, [image for image, _ in images]))
    # The group of an image: its file stem, or the part before "__" (patient7__0003.png).
    groups = [image.stem.split("__")[0] for image, _ in images]
    notes: list[str] = []
    if patch_size is None:
        images, sizes, groups = _drop_odd_sizes(images, sizes, groups, notes)
        frame = pd.DataFrame({
            "path": [str(image) for image, _ in images], "x": 0, "y": 0,
            "extent": [max(w, h) for w, h in sizes], "level": 0, "read_size": -1,
            "label": [label for _, label in images], "group": groups}, columns=COLUMNS)
        return frame, classes, set(sizes), notes
    stride = patch_stride or patch_size
    parts, small = [], []
    for (image, label), (width, height), group in zip(images, sizes, groups):
        xs, ys = patch_origins(width, height, patch_size, stride)
        if xs.size == 0:
            small.append(f"{image.name} ({width}x{height})")
            continue
        parts.append(pd.DataFrame({"path": str(image), "x": xs, "y": ys,
                                   "extent": patch_size, "level": 0,
                                   "read_size": patch_size, "label": label, "group": group},
                                  columns=COLUMNS))
    if small:
        notes.append(f"{len(small)} image(s) smaller than one {patch_size} px patch skipped, "
                     f"e.g. {', '.join(small[:3])}")
    if not parts:
        raise DatasetError(f"{root}: every image is smaller than one {patch_size} px patch; "
                           "pass a smaller --patchify size")
    frame = pd.concat(parts, ignore_index=True)
    frame[["x", "y", "extent", "level", "read_size"]] = frame[
        ["x", "y", "extent", "level", "read_size"]].astype(np.int64)
    return frame, classes, set(), notes
