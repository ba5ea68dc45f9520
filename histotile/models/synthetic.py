"""A small synthetic classification task with a real visual signal, for tests, demos and
benchmarks: haematoxylin-rich tiles (dense dark-purple nuclei) versus eosin-rich tiles
(pink stroma with sparse nuclei), with per-tile stain jitter so colour alone is noisy.

:func:`write_stain_slides` writes small pyramidal TIFF slides whose tile grid cells carry
known classes, and the tile manifest the tiler would write for them (several slides per
patient, so grouping by patient is exercised). :func:`write_stain_imagefolder` writes the
same kind of tiles as an ImageFolder of PNGs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from histotile.tiling.tile_io import MANIFEST_COLUMNS

CLASSES = ("eosin", "haematoxylin")
_STROMA = np.array([236, 160, 196], np.float32)
_NUCLEUS = np.array([92, 52, 140], np.float32)
# Nuclear area fraction per class (a threshold on blurred noise gives it).
_NUCLEAR_FRACTION = {"eosin": 0.06, "haematoxylin": 0.30}


def stain_tiles(labels: Sequence[str], size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 tiles (len(labels), size, size, 3), one per label (a key of CLASSES)."""
    n = len(labels)
    noise = rng.standard_normal((n, size, size)).astype(np.float32)
    blobs = np.stack([cv2.GaussianBlur(tile, (0, 0), 2.2) for tile in noise])
    blobs /= blobs.reshape(n, -1).std(axis=1)[:, None, None] + 1e-6
    fractions = np.array([_NUCLEAR_FRACTION[label] for label in labels], np.float32)
    fractions *= rng.uniform(0.75, 1.25, n).astype(np.float32)  # biological variation
    ordered = np.sort(blobs.reshape(n, -1), axis=1)
    rank = ((1.0 - fractions) * (size * size - 1)).astype(np.int64)
    thresholds = ordered[np.arange(n), rank][:, None, None]
    nuclei = np.clip((blobs - thresholds) * 4.0, 0.0, 1.0)[..., None]
    fibres = cv2.GaussianBlur(noise.transpose(1, 2, 0), (0, 0), 1.0)
    fibres = fibres.reshape(size, size, n).transpose(2, 0, 1)[..., None]
    jitter = rng.normal(0.0, 10.0, (n, 1, 1, 3)).astype(np.float32)  # stain variation
    stroma = _STROMA + fibres * np.array([6, 10, 8], np.float32) + jitter
    tiles = stroma * (1.0 - nuclei) + (_NUCLEUS + jitter) * nuclei
    return np.clip(tiles, 0, 255).astype(np.uint8)


def write_stain_slides(directory: str | Path, *, patients: int = 6, slides_per_patient: int = 1,
                       grid: tuple[int, int] = (8, 6), tile_size: int = 64, seed: int = 0,
                       mpp: float = 0.5, balance: float | None = None) -> Path:
    """Slides of ``grid`` (columns, rows) cells of ``tile_size`` px, each cell one class,
    and their manifest ``tiles.csv`` (group = patient). Returns the manifest path.

    ``balance``: fraction of haematoxylin cells per slide (default: varies per slide
    between 0.25 and 0.75, so slides differ like patients do).
    """
    from histotile.wsi.tiff_writer import write_pyramid_tiff

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    columns, rows = grid
    records = []
    for patient in range(patients):
        for index in range(slides_per_patient):
            share = balance if balance is not None else rng.uniform(0.25, 0.75)
            cells = np.where(rng.random(columns * rows) < share, CLASSES[1], CLASSES[0])
            tiles = stain_tiles(list(cells), tile_size, rng)
            image = (tiles.reshape(rows, columns, tile_size, tile_size, 3)
                     .transpose(0, 2, 1, 3, 4).reshape(rows * tile_size, columns * tile_size, 3))
            name = f"patient{patient:02d}_slide{index}"
            path = directory / f"{name}.tif"
            def band(_level: int, top: int, count: int, image: np.ndarray = image
                     ) -> np.ndarray:
                return image[top:top + count]

            write_pyramid_tiff(path, [(image.shape[1], image.shape[0])], band,
                               mpp=mpp, tile_size=max(16, (tile_size // 16) * 16),
                               quality=92, overwrite=True)
            for cell, label in enumerate(cells):
                y, x = divmod(cell, columns)
                records.append({"slide": name, "path": path.name, "group": f"patient{patient:02d}",
                                "x": x * tile_size, "y": y * tile_size, "extent": tile_size,
                                "level": 0, "read_size": tile_size, "size": tile_size,
                                "tissue_fraction": 1.0, "label": label,
                                **{f"frac_{c}": float(c == label) for c in CLASSES}})
    frame = pd.DataFrame.from_records(records)
    frame = frame[list(MANIFEST_COLUMNS) + [f"frac_{c}" for c in CLASSES]]
    manifest = directory / "tiles.csv"
    frame.to_csv(manifest, index=False)
    sidecar = {"tiling": {"tile_size": tile_size, "mpp": mpp, "overlap": 0,
                          "source": "histotile.models.synthetic"}}
    (directory / "tiles.json").write_text(json.dumps(sidecar), encoding="utf-8")
    return manifest


def write_stain_imagefolder(directory: str | Path, *, per_class: int = 40, tile_size: int = 64,
                            patients: int = 8, seed: int = 0) -> Path:
    """``<directory>/<class>/patientNN__IIII.png`` tiles; returns ``directory``."""
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    for label in CLASSES:
        (directory / label).mkdir(parents=True, exist_ok=True)
        tiles = stain_tiles([label] * per_class, tile_size, rng)
        for i, tile in enumerate(tiles):
            name = f"patient{i % patients:02d}__{i:04d}.png"
            cv2.imwrite(str(directory / label / name), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
    return directory
