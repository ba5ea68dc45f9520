"""Training data: a tile manifest (tiles read from the slides on the fly) or an
ImageFolder directory (one sub-folder per class, images optionally cut into patches),
turned into one table of tile reads, validated (columns, slides, geometry, classes, groups).

No torch here: the tiles are read by :mod:`histotile.models.tile_source`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from histotile.errors import DatasetError, HistotileError
from histotile.models.tile_source import TileReader

log = logging.getLogger("histotile.models")

# Columns a manifest needs for training (besides the group column).
REQUIRED_COLUMNS = ("path", "x", "y", "extent", "level", "read_size", "size")


@dataclass
class TileTable:
    """Every tile of a dataset as a read instruction.

    Attributes:
        frame: one row per tile: ``path`` (slide or image file), ``x``, ``y``, ``extent``
            (level-0 px), ``level``, ``read_size`` (px at ``level``; -1 = the whole image),
            ``label`` (class name), ``target`` (class index), ``group``.
        classes: class names, index order.
        tile_size: network input side (px).
        source: the manifest path or folder (for messages and the model card).
        kind: ``"manifest"`` or ``"imagefolder"``.
        geometry: ``tile_mpp`` (um per tile pixel, or None), ``tile_downsample``
            (level-0 px per tile px, or None), ``tiling`` (the tiler's settings when a
            sidecar JSON was found) and ``slide_mpp``.
        notes: what was dropped and why (recorded in the model card).
        declared_classes: the class order the data declares (the tiler's classes, the
            manifest's ``frac_<class>`` columns, or the sorted class folders); classes
            are never sorted otherwise.
    """

    frame: pd.DataFrame
    classes: list[str]
    tile_size: int
    source: str
    kind: str
    geometry: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    declared_classes: list[str] = field(default_factory=list)

    @property
    def targets(self) -> np.ndarray:
        return self.frame["target"].to_numpy(np.int64)

    @property
    def groups(self) -> np.ndarray:
        return self.frame["group"].astype(str).to_numpy()

    def reader(self) -> TileReader:
        f = self.frame
        return TileReader(f["path"].astype(str).tolist(), f["x"].to_numpy(np.int64),
                          f["y"].to_numpy(np.int64), f["level"].to_numpy(np.int64),
                          f["read_size"].to_numpy(np.int64), self.tile_size)

    def summary(self) -> dict[str, Any]:
        counts = self.frame["label"].value_counts()
        return {"source": self.source, "kind": self.kind, "tiles": int(len(self.frame)),
                "groups": int(self.frame["group"].nunique()),
                "class_counts": {c: int(counts.get(c, 0)) for c in self.classes},
                "notes": list(self.notes)}


def load_tiles(data: str | Path | pd.DataFrame, *, group_column: str = "group",
               label_column: str = "label", classes: Sequence[str] | None = None,
               tile_size: int | None = None, patchify: bool = False,
               max_tiles: int | None = None, seed: int = 0, group_by: str | None = None,
               group_pattern: str | None = None, patch_size: int | None = None,
               patch_stride: int | None = None, workers: int | None = None,
               min_tile_size: int = 1) -> TileTable:
    """Read and validate a dataset.

    Args:
        data: a manifest CSV path, a manifest DataFrame, or an ImageFolder directory
            (``<dir>/<class>/<image>``; the group of an image is its file stem, or the
            part before ``__`` in the stem, e.g. ``patient7__0003.png`` -> ``patient7``).
        group_column: manifest column to group by (patient or slide).
        label_column: manifest column holding class names.
        classes: keep only these classes, in this order (default: all, in the order the
            data declares: the tiler's classes, else the manifest's ``frac_<class>``
            columns, else sorted class folders; see :mod:`histotile.class_roles`).
        tile_size: network input side; tiles of another size are resized.
        patchify: cut ImageFolder images into non-overlapping ``tile_size`` patches.
        max_tiles: keep at most this many tiles (seeded sample, stratified by class).
        seed: for ``max_tiles``.
        group_by, group_pattern: ``patient`` / ``slide`` / ``region`` or a manifest column,
            and the file-name pattern of patients (see :mod:`histotile.models.groups`).
        patch_size, patch_stride: with ``patchify``, the patch side (default
            ``tile_size``) and step (default: the patch size, no overlap), in pixels.
        workers: threads reading image headers (image folders).
        min_tile_size: the network's smallest input side (px): smaller tiles or images
            are resized up to it, with a note (never refused).

    Raises:
        DatasetError: missing columns, no tiles, a single class, unreadable slides or
            images, tiles of mixed sizes without ``tile_size``.
    """
    from histotile.models.groups import GROUP_KINDS, group_values

    if group_by is not None and group_by not in GROUP_KINDS:
        group_column = group_by  # a manifest column
    if isinstance(data, pd.DataFrame):
        table = _from_manifest(data.copy(), "the manifest DataFrame", None, group_column,
                               label_column, tile_size)
        if isinstance(data.attrs.get("tiling"), dict):  # the tiler's settings, if attached
            table.geometry["tiling"] = data.attrs["tiling"]
            table.declared_classes = [str(c) for c in data.attrs["tiling"].get("classes")
                                      or table.declared_classes]
    else:
        path = Path(data)
        if path.is_dir():
            table = _from_imagefolder(path, tile_size, patchify, patch_size, patch_stride,
                                      workers)
        elif path.is_file():
            table = _from_manifest(_read_csv(path), str(path), path, group_column,
                                   label_column, tile_size)
        else:
            raise DatasetError(f"{path}: no such manifest file or image folder (pass a tile "
                               "manifest CSV written by the tiler, or a folder with one "
                               "sub-folder of images per class)")
    if group_by in GROUP_KINDS or (group_by is None and group_pattern is not None):
        table.frame["group"] = group_values(table.frame, group_by or "patient",
                                            pattern=group_pattern, source=table.source)
    _select_classes(table, classes)
    if table.tile_size < min_tile_size:
        table.notes.append(f"tiles of {table.tile_size} px resized to {min_tile_size} px, "
                           "the network's smallest input")
        table.tile_size = int(min_tile_size)
    if max_tiles is not None and len(table.frame) > max_tiles:
        _subsample(table, max_tiles, seed)
    return table


# -- manifests -------------------------------------------------------------------------
def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype={"label": str, "group": str, "slide": str},
                           keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not a readable CSV manifest ({error}); write it with "
                           "the tiler, or check the file") from None


def _from_manifest(frame: pd.DataFrame, source: str, path: Path | None, group_column: str,
                   label_column: str, tile_size: int | None) -> TileTable:
    missing = [c for c in (*REQUIRED_COLUMNS, label_column) if c not in frame.columns]
    if missing:
        raise DatasetError(f"{source}: missing column(s) {', '.join(missing)} (found: "
                           f"{', '.join(map(str, frame.columns))}); a training manifest "
                           "needs the tiler's columns and a label column")
    if group_column not in frame.columns:
        raise DatasetError(f"{source}: group column {group_column!r} not found (found: "
                           f"{', '.join(map(str, frame.columns))}); set group_column to the "
                           "patient or slide column, e.g. group_column='slide'")
    notes: list[str] = []
    if frame.empty:
        raise DatasetError(f"{source}: the manifest holds no tiles; tile slides with "
                           "annotations first")
    labels = frame[label_column]
    unlabelled = labels.isna() | (labels.astype(str).str.strip() == "")
    if unlabelled.any():
        notes.append(f"{int(unlabelled.sum())} tile(s) without a label were left out")
        frame = frame.loc[~unlabelled]
    if frame.empty:
        raise DatasetError(f"{source}: no tile has a label in column {label_column!r}; "
                           "tile with annotations so that tiles get class labels")
    if frame[group_column].isna().any():
        raise DatasetError(f"{source}: {int(frame[group_column].isna().sum())} tile(s) have "
                           f"no value in group column {group_column!r}; fill it (patient or "
                           "slide) for every tile")
    for column in ("x", "y", "extent", "level", "read_size", "size"):
        if not pd.api.types.is_numeric_dtype(frame[column]) or frame[column].isna().any():
            raise DatasetError(f"{source}: column {column!r} must hold whole numbers for "
                               "every tile; the manifest is damaged or not the tiler's")
    declared = [str(c)[len("frac_"):] for c in frame.columns if str(c).startswith("frac_")]
    sizes = np.unique(frame["size"].to_numpy())
    if tile_size is None:
        if sizes.size != 1:
            raise DatasetError(f"{source}: tiles of several sizes ({sizes.tolist()}); pass "
                               "tile_size to resize them all to one network input size")
        tile_size = int(sizes[0])
    paths = frame["path"].astype(str)
    if path is not None:  # relative slide paths are relative to the manifest's folder
        base = path.parent
        paths = paths.map(lambda p: p if Path(p).is_absolute() or Path(p).exists()
                          else str(base / p))
    out = pd.DataFrame({
        "path": paths.to_numpy(), "x": frame["x"].to_numpy(np.int64),
        "y": frame["y"].to_numpy(np.int64), "extent": frame["extent"].to_numpy(np.int64),
        "level": frame["level"].to_numpy(np.int64),
        "read_size": frame["read_size"].to_numpy(np.int64),
        "label": frame[label_column].astype(str).str.strip().to_numpy(),
        "group": frame[group_column].astype(str).to_numpy(),
    })
    slide_mpp = _check_slides(out["path"].unique(), source)
    geometry = _geometry(out, frame["size"].to_numpy(np.float64), slide_mpp, path)
    tiler = geometry.get("tiling") or {}
    if tiler.get("classes"):
        declared = [str(c) for c in tiler["classes"]]
    return TileTable(out, [], int(tile_size), source, "manifest", geometry, notes, declared)


def _check_slides(paths: Sequence[str], source: str) -> dict[str, float | None]:
    """Open every slide once (header only), so that a missing or damaged slide fails
    before training starts. Returns each slide's level-0 mpp."""
    from histotile.wsi import open_slide

    mpp: dict[str, float | None] = {}
    for slide_path in paths:
        try:
            with open_slide(slide_path) as slide:
                mpp[slide_path] = slide.mpp
        except HistotileError as error:
            raise DatasetError(f"{source}: slide {slide_path} cannot be read: {error}; fix "
                               "or remove that slide's tiles from the manifest") from None
    return mpp


def _geometry(frame: pd.DataFrame, sizes: np.ndarray, slide_mpp: dict[str, float | None],
              manifest: Path | None) -> dict[str, Any]:
    """The tiling geometry prediction needs to rebuild the same tiles."""
    downsample = frame["extent"].to_numpy(np.float64) / sizes
    mpps = np.array([slide_mpp.get(p) or np.nan for p in frame["path"]], np.float64)
    tile_mpp_values = mpps * downsample
    geometry: dict[str, Any] = {
        "tile_downsample": _consistent(downsample),
        "tile_mpp": _consistent(tile_mpp_values) if np.isfinite(tile_mpp_values).all()
        else None,
        "slide_mpp": _consistent(mpps) if np.isfinite(mpps).all() else None,
        "tiling": None,
        "manifest": str(manifest) if manifest is not None else None,
    }
    if geometry["tile_mpp"]:
        # Equivalent objective magnification (the 10 um / mpp convention: 0.5 um/px = 20x).
        geometry["magnification"] = round(10.0 / geometry["tile_mpp"], 3)
    if manifest is not None:
        for sidecar in (manifest.with_suffix(".json"), Path(str(manifest) + ".json")):
            if sidecar.is_file():
                try:
                    info = json.loads(sidecar.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError) as error:
                    log.warning("%s: tiling sidecar not readable (%s); ignored", sidecar, error)
                    continue
                if isinstance(info, dict) and "tiling" in info:
                    geometry["tiling"] = info["tiling"]
                    geometry["stain"] = info.get("stain")  # the fitted stain normaliser
                    break
    return geometry


def _consistent(values: np.ndarray, tolerance: float = 0.02) -> float | None:
    """The common value (median) when all values agree within ``tolerance`` (relative);
    None when they disagree (tiles of mixed resolutions)."""
    if values.size == 0:
        return None
    median = float(np.median(values))
    if median <= 0 or np.abs(values - median).max() > tolerance * median:
        log.warning("tiles of mixed resolutions (%.4g to %.4g): the model card records none",
                    float(values.min()), float(values.max()))
        return None
    return median


# -- image folders ---------------------------------------------------------------------
def _from_imagefolder(root: Path, tile_size: int | None, patchify: bool,
                      patch_size: int | None = None, patch_stride: int | None = None,
                      workers: int | None = None) -> TileTable:
    """See :mod:`histotile.models.imagefolder`; ``patchify`` cuts ``patch_size`` patches
    (default ``tile_size``) at ``patch_stride`` (default: no overlap)."""
    from histotile.models.imagefolder import scan_imagefolder

    patch = (patch_size or tile_size) if patchify else None
    frame, classes, sizes, notes = scan_imagefolder(root, patch_size=patch,
                                                    patch_stride=patch_stride,
                                                    workers=workers)
    if tile_size is None:
        if patch is not None:
            tile_size = patch
        elif len(sizes) != 1 or len({*next(iter(sizes))}) != 1:
            raise DatasetError(f"{root}: images are not all square of one size (seen "
                               f"{sorted(sizes)[:4]}); pass tile_size to resize them, or "
                               "patchify=True with tile_size to cut them into patches")
        else:
            tile_size = next(iter(sizes))[0]
    geometry: dict[str, Any] = {"tile_downsample": None, "tile_mpp": None, "slide_mpp": None,
                                "tiling": None, "manifest": None}
    if patch is not None:
        geometry["tile_downsample"] = patch / tile_size
        geometry["tiling"] = {"patchify": True, "tile_size": tile_size,
                              "step": patch_stride or patch}
        if patch != tile_size:  # patches resized to the network's input
            geometry["tiling"]["patch_size"] = patch
    return TileTable(frame, [], int(tile_size), str(root), "imagefolder", geometry, notes,
                     declared_classes=classes)


# -- selection -------------------------------------------------------------------------
def _select_classes(table: TileTable, classes: Sequence[str] | None) -> None:
    from histotile.class_roles import order_classes

    found = order_classes(table.frame["label"].unique().tolist(), table.declared_classes)
    if classes:
        classes = [str(c) for c in classes]
        absent = [c for c in classes if c not in found]
        if absent:
            raise DatasetError(f"{table.source}: class(es) {', '.join(absent)} have no "
                               f"tiles (found: {', '.join(found)}); fix the classes setting")
        keep = table.frame["label"].isin(classes)
        if not keep.all():
            table.notes.append(f"{int((~keep).sum())} tile(s) of other classes "
                               f"({', '.join(sorted(set(found) - set(classes)))}) left out")
            table.frame = table.frame.loc[keep].reset_index(drop=True)
    else:
        classes = found
    if len(classes) < 2:
        raise DatasetError(f"{table.source}: only one class ({', '.join(classes) or 'none'}) "
                           "in the data; a classifier needs tiles of at least two classes "
                           "(annotate or tile another class)")
    table.classes = list(classes)
    table.frame = table.frame.reset_index(drop=True)
    table.frame["target"] = table.frame["label"].map(
        {c: k for k, c in enumerate(classes)}).astype(np.int64)


def _subsample(table: TileTable, max_tiles: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    targets = table.targets
    keep: list[np.ndarray] = []
    for k in range(len(table.classes)):
        rows = np.flatnonzero(targets == k)
        share = max(1, math.floor(max_tiles * rows.size / targets.size))
        keep.append(rng.choice(rows, size=min(share, rows.size), replace=False))
    chosen = np.sort(np.concatenate(keep))
    table.notes.append(f"max_tiles={max_tiles}: {chosen.size} of {targets.size} tiles kept "
                       "(seeded, stratified by class)")
    table.frame = table.frame.iloc[chosen].reset_index(drop=True)
