"""Choosing a pyramid level for a target magnification or resolution (microns per pixel).

Pure functions over a slide's level downsamples and metadata, so they are testable
without a slide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from histotile.errors import LevelError, MetadataMissingError

# A stored level whose resolution is within this factor of the target is used as it is:
# scanners write 0.499 or 0.2527 um/px where users ask for 0.5 or 0.25.
RESOLUTION_TOLERANCE = 0.05


@dataclass(frozen=True)
class LevelChoice:
    """Where to read pixels for a target resolution.

    Attributes:
        level: the stored pyramid level to read.
        level_downsample: that level's downsample relative to level 0.
        target_downsample: the requested resolution as a downsample of level 0.
        scale: resize factor from level pixels to target pixels
            (``level_downsample / target_downsample``; 1.0 when the level matches,
            below 1.0 when the read must be shrunk).
    """

    level: int
    level_downsample: float
    target_downsample: float
    scale: float

    @property
    def exact(self) -> bool:
        """True when no resize is needed (within the resolution tolerance)."""
        return abs(self.scale - 1.0) <= RESOLUTION_TOLERANCE


def target_downsample(
    *,
    base_mpp: float | None,
    base_magnification: float | None,
    mpp: float | None = None,
    magnification: float | None = None,
    path: str | Path = "<slide>",
) -> float:
    """The level-0 downsample that gives ``mpp`` (microns per pixel) or ``magnification``
    (objective power, e.g. 20 for 20x). Exactly one of the two must be given."""
    if (mpp is None) == (magnification is None):
        raise ValueError("give exactly one of mpp= or magnification=")
    if mpp is not None:
        if mpp <= 0:
            raise ValueError(f"mpp must be positive, got {mpp}")
        if base_mpp is None:
            raise MetadataMissingError(
                path, "the slide records no microns per pixel",
                "choose a pyramid level explicitly with level=N (--level N), "
                "or a magnification if the slide records its objective power")
        return mpp / base_mpp
    assert magnification is not None
    if magnification <= 0:
        raise ValueError(f"magnification must be positive, got {magnification}")
    if base_magnification is None:
        if base_mpp is None:
            raise MetadataMissingError(
                path, "the slide records neither objective power nor microns per pixel",
                "choose a pyramid level explicitly with level=N (--level N)")
        # Convention of scanners and QuPath: 10x is about 1 um/px, so 20x about 0.5 um/px.
        base_magnification = 10.0 / base_mpp
    return base_magnification / magnification


def choose_level(
    level_downsamples: Sequence[float],
    *,
    base_mpp: float | None = None,
    base_magnification: float | None = None,
    mpp: float | None = None,
    magnification: float | None = None,
    level: int | None = None,
    path: str | Path = "<slide>",
) -> LevelChoice:
    """Pick the stored level to read for a target resolution.

    Give one of ``level`` (an explicit pyramid level), ``mpp`` (microns per pixel) or
    ``magnification`` (objective power). The chosen level is the lowest-resolution one
    that still has at least the target resolution, so pixels are only ever shrunk; a
    target finer than level 0 (beyond a 5 % tolerance) raises :class:`LevelError`.
    Missing metadata raises :class:`MetadataMissingError`, suggesting an explicit level.
    """
    given = sum(v is not None for v in (mpp, magnification, level))
    if given != 1:
        raise ValueError("give exactly one of level=, mpp= or magnification=")
    if level is not None:
        if not 0 <= level < len(level_downsamples):
            raise LevelError(path, f"level {level} does not exist",
                             f"the slide has levels 0 to {len(level_downsamples) - 1}")
        ds = float(level_downsamples[level])
        return LevelChoice(level, ds, ds, 1.0)

    wanted = target_downsample(base_mpp=base_mpp, base_magnification=base_magnification,
                               mpp=mpp, magnification=magnification, path=path)
    if wanted < 1.0 - RESOLUTION_TOLERANCE:
        what = f"{mpp} um/px" if mpp is not None else f"{magnification}x"
        have = (f"{base_mpp:.4g} um/px" if base_mpp is not None
                else f"{base_magnification:g}x")
        raise LevelError(path, f"cannot give {what}: its highest resolution is {have}",
                         "ask for a lower magnification or a larger mpp")
    best = 0
    for index, ds in enumerate(level_downsamples):
        if ds <= wanted * (1.0 + RESOLUTION_TOLERANCE):
            best = index if ds >= level_downsamples[best] else best
    ds = float(level_downsamples[best])
    scale = ds / wanted
    if abs(scale - 1.0) <= RESOLUTION_TOLERANCE:
        scale = 1.0
    return LevelChoice(best, ds, wanted, scale)
