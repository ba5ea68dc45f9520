"""The tile manifest (CSV): the source of truth between stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from histotile._atomic import atomic_path
from histotile.errors import DatasetError
from histotile.tiling.tile_io import MANIFEST_COLUMNS

_INTEGER_COLUMNS = ("x", "y", "extent", "level", "read_size", "size")


def class_columns(classes) -> list[str]:
    """The ``frac_<class>`` column names of ``classes``."""
    return [f"frac_{name}" for name in classes]


def write_manifest(df, path: str | Path, overwrite: bool = False) -> Path:
    """Write a manifest as CSV, atomically (never half-written; an existing file is kept
    unless ``overwrite``)."""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: manifest to write lacks columns {missing}; build it "
                           "with extract_tiles or patch_dataset")
    with atomic_path(path, overwrite=overwrite) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return Path(path)


def read_manifest(path: str | Path):
    """Read and check a manifest CSV: a pandas DataFrame with :data:`MANIFEST_COLUMNS`
    (integers where integers belong, labels as strings) and any ``frac_<class>``."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found; create it with `histotile tile` "
                           "(extract_tiles + write_manifest)")
    try:
        # No NA parsing: a slide or label named "NA" stays a string; empty numbers are
        # turned into NaN below.
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not a readable manifest CSV ({error}); write it again "
                           "with write_manifest") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: manifest lacks columns {missing} (has "
                           f"{list(df.columns)}); regenerate it with extract_tiles")
    for column in _INTEGER_COLUMNS:
        try:
            df[column] = pd.to_numeric(df[column]).astype("int64")
        except (ValueError, TypeError):
            raise DatasetError(f"{path}: column {column!r} must hold whole numbers; the "
                               "file was edited or is damaged, regenerate it") from None
    optional = [c for c in df.columns if c.startswith("frac_") or c == "artefact"]
    for column in ["tissue_fraction", *optional]:
        try:
            df[column] = pd.to_numeric(df[column].replace("", np.nan)).astype("float64")
        except (ValueError, TypeError):
            raise DatasetError(f"{path}: column {column!r} must hold numbers; regenerate "
                               "the manifest") from None
    return df
