"""What a tile's group is: the unit that never straddles two folds, or training and test.

``group_by``:
    ``patient``: parsed from file names: BreakHis names by default
        (``SOB_B_A-14-22549AB-40-001.png`` -> ``14-22549AB``), or any naming scheme with
        ``group_pattern``, a regular expression with a named group ``group``.
    ``slide``: the slide (or image) file.
    ``region``: square cells of :data:`REGION` level-0 pixels of each slide, by tile
        centre, so one annotated slide can be cross-validated (neighbouring tiles never
        straddle training and validation, except across a cell border).
    any other word: a manifest column of that name.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from histotile.errors import ConfigError, DatasetError

GROUP_KINDS = ("patient", "slide", "region")
REGION = 512
"""Level-0 pixels per side of a region cell. One slide has no patients to group folds by:
its tiles are grouped by square regions instead, so neighbouring tiles never straddle
training and validation (only tiles overlapping a region border can share pixels)."""
# BreakHis: SOB_<B|M>_<type>-<year>-<slide id>-<magnification>-<sequence>.png; the
# patient is the year and slide id (the study's "patient" of each image).
BREAKHIS = re.compile(r"^SOB_[BM]_[A-Z]+-(?P<group>\d+-[0-9A-Za-z]+)-\d+-\d+$")


def compile_pattern(pattern: str | None) -> re.Pattern[str]:
    """The group pattern (default: BreakHis names); :class:`ConfigError` when it is not a
    regular expression with a named group ``group``."""
    if pattern is None:
        return BREAKHIS
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"--group-pattern {pattern!r}: not a regular expression "
                          f"({error})") from None
    if "group" not in compiled.groupindex:
        raise ConfigError(f"--group-pattern {pattern!r}: add a named group for the part "
                          "that identifies the group, (?P<group>...), e.g. "
                          "'^(?P<group>[^_]+)_'")
    return compiled


def name_group(name: str, pattern: re.Pattern[str]) -> str | None:
    """The group in a file stem (``SOB_B_A-14-22549AB-40-001`` -> ``14-22549AB``); None
    when the name does not match."""
    match = pattern.search(name)
    return None if match is None else match.group("group")


def group_values(frame: pd.DataFrame, group_by: str, *, pattern: str | None = None,
                 source: str = "the data") -> np.ndarray:
    """The group of every row of a tile table (columns ``path``, ``x``, ``y``,
    ``extent``; level-0 pixels) as strings. Raises :class:`DatasetError` naming a file
    whose name the pattern does not match."""
    stems = frame["path"].astype(str).map(lambda p: Path(p).name.split(".")[0])
    if group_by == "slide":
        return stems.to_numpy(dtype=str)
    if group_by == "region":
        return _region_labels(stems, frame, REGION).to_numpy(dtype=str)
    if group_by == "patient":
        compiled = compile_pattern(pattern)
        unique = {stem: name_group(stem, compiled) for stem in stems.unique()}
        unmatched = [stem for stem, group in unique.items() if group is None]
        if unmatched:
            what = "BreakHis names (SOB_B_A-14-22549AB-40-001)" if pattern is None \
                else f"--group-pattern {pattern!r}"
            raise DatasetError(f"{source}: {len(unmatched)} file name(s) do not match "
                               f"{what}, e.g. {unmatched[0]!r}; pass --group-pattern with a "
                               "named group (?P<group>...) for your naming scheme")
        return stems.map(unique).to_numpy(dtype=str)
    raise ConfigError(f"--group-by {group_by!r}: choose patient, slide, region or a manifest "
                      "column")


def spatial_groups(manifest: pd.DataFrame, region: int = REGION) -> pd.Series:
    """Group column for a single slide: ``<slide>:<column>,<row>`` of ``region``-px cells
    (level-0 pixels), by each tile's centre (columns ``slide``, ``x``, ``y``, ``extent``);
    the cells of ``group_by="region"``, named by the manifest's ``slide`` column."""
    return _region_labels(manifest["slide"], manifest, region)


def _region_labels(names: pd.Series, frame: pd.DataFrame, region: int) -> pd.Series:
    """``<name>:<column>,<row>`` of the ``region``-px cell holding each tile's centre."""
    cx = (frame["x"].to_numpy(np.int64) + frame["extent"].to_numpy(np.int64) // 2) // region
    cy = (frame["y"].to_numpy(np.int64) + frame["extent"].to_numpy(np.int64) // 2) // region
    return (names + ":" + pd.Series(cx, index=frame.index).astype(str) + ","
            + pd.Series(cy, index=frame.index).astype(str))
