"""Overlapping patches of small images (BreakHis-style datasets), with ``patchify``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from histotile.errors import DatasetError, HistotileError
from histotile.tiling.tile_io import MANIFEST_COLUMNS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def default_step(patch_size: int) -> int:
    """Half a patch: 112 for 225-px patches, a 3 x 5 grid (15 patches) on 700 x 460."""
    return max(1, patch_size // 2)


def patch_positions(width: int, height: int, patch_size: int = 225,
                    step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-left (xs, ys) of the patches ``patchify`` cuts from a width x height image,
    row by row (partial patches at the right and bottom edges are not made)."""
    step = default_step(patch_size) if step is None else step
    if patch_size > width or patch_size > height:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cols = (width - patch_size) // step + 1
    rows = (height - patch_size) // step + 1
    ys, xs = np.divmod(np.arange(rows * cols, dtype=np.int64), cols)
    return xs * step, ys * step


def patchify_image(image: np.ndarray, patch_size: int = 225,
                   step: int | None = None) -> np.ndarray:
    """Overlapping square patches of an RGB image (h, w, 3) -> (n, patch, patch, 3),
    row by row, via ``patchify``. ``step`` defaults to half a patch."""
    from patchify import patchify

    image = np.asarray(image)
    step = default_step(patch_size) if step is None else step
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image (h, w, 3), got shape {image.shape}")
    if step < 1:
        raise ValueError(f"step must be positive, got {step}")
    if patch_size > image.shape[0] or patch_size > image.shape[1]:
        raise ValueError(f"patch_size {patch_size} is larger than the image "
                         f"{image.shape[1]} x {image.shape[0]}")
    grid = patchify(image, (patch_size, patch_size, 3), step=step)
    return np.ascontiguousarray(grid.reshape(-1, patch_size, patch_size, 3))


def _images(source: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(source, (str, Path)):
        source = Path(source)
        if source.is_dir():
            files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                           and p.is_file())
            if not files:
                raise DatasetError(f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) in "
                                   "this folder or below")
            return files
        return [source]
    return [Path(p) for p in source]


def _breakhis_parts(path: Path) -> list[str]:
    """``SOB_<B|M>_<type>-<year>-<slide>-<magnification>-<seq>`` split at ``_`` and ``-``."""
    stem = Path(path).stem
    head, _, rest = stem.partition("-")
    parts = head.split("_")
    tail = rest.split("-")
    if len(parts) != 3 or parts[0] != "SOB" or parts[1] not in ("B", "M") or len(tail) < 4:
        raise DatasetError(f"{path}: not a BreakHis file name (SOB_<B|M>_<type>-<year>-"
                           "<slide>-<magnification>-<seq>); pass label= and group= "
                           "functions for this dataset")
    return [*parts, *tail]


def breakhis_label(path: Path) -> str:
    """BreakHis class from the file name: ``benign`` (SOB_B_...) or ``malignant``."""
    return "benign" if _breakhis_parts(path)[1] == "B" else "malignant"


def breakhis_tumour_type(path: Path) -> str:
    """BreakHis tumour type from the file name (A, F, PT, TA, DC, LC, MC, PC)."""
    return _breakhis_parts(path)[2]


def breakhis_patient(path: Path) -> str:
    """BreakHis patient (slide) from the file name, e.g. ``14-22549AB``: the group to
    keep together in cross-validation (images of one patient are near-duplicates)."""
    parts = _breakhis_parts(path)
    return f"{parts[3]}-{parts[4]}"


def patch_dataset(source: str | Path | Iterable[str | Path], *, patch_size: int = 225,
                  step: int | None = None,
                  label: str | Callable[[Path], str] | None = None,
                  group: Callable[[Path], str] | None = None):
    """A manifest of the overlapping patches of small images (no pixels copied: later
    stages read each patch from its image through the manifest).

    Args:
        source: a folder (searched recursively) or a list of image files.
        patch_size: patch side in pixels.
        step: distance between patches (default half a patch).
        label: each image's label: None = its parent folder's name; a string = the same
            for all; a callable(path) -> str (for BreakHis: :func:`breakhis_label` or
            :func:`breakhis_tumour_type`).
        group: each image's cross-validation group (patient): default its file stem
            (for BreakHis: :func:`breakhis_patient`).

    Returns:
        A DataFrame with :data:`MANIFEST_COLUMNS` (``level`` 0, ``extent`` = ``read_size``
        = ``size`` = ``patch_size``), one row per patch, images in sorted order.
    """
    import pandas as pd

    from histotile.tiling.tissue import tissue_fractions
    from histotile.wsi import open_slide

    step = default_step(patch_size) if step is None else step
    frames = []
    for path in _images(source):
        try:
            with open_slide(path) as image:
                pixels = image.read_region((0, 0), 0, image.dimensions)
                name = image.name
        except HistotileError as error:
            raise DatasetError(f"{path}: cannot read the image for patching: {error}") from None
        height, width = pixels.shape[:2]
        xs, ys = patch_positions(width, height, patch_size, step)
        if len(xs) == 0:
            raise DatasetError(f"{path}: image {width} x {height} is smaller than the "
                               f"{patch_size}-px patches; lower patch_size")
        patches = patchify_image(pixels, patch_size, step)
        if label is None:
            tag = path.parent.name
        elif callable(label):
            tag = str(label(path))
        else:
            tag = str(label)
        frames.append(pd.DataFrame({
            "slide": name, "path": str(path),
            "group": group(path) if group is not None else path.stem,
            "x": xs, "y": ys, "extent": patch_size, "level": 0, "read_size": patch_size,
            "size": patch_size, "tissue_fraction": tissue_fractions(patches), "label": tag,
        }, columns=list(MANIFEST_COLUMNS)))
    return pd.concat(frames, ignore_index=True)
