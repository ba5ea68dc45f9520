"""The benchmark's inputs: synthetic slides with a painted tumour overlay, written once
and cached in the work folder (the 5-gigapixel slide takes a few minutes to write)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from histotile.wsi.synthetic import Mark, write_overlay, write_synthetic_slide

TUMOUR_GREEN = (0, 255, 0)
CLASSES = ("normal", "tumour")
SLIDE_MPP = 0.5  # 20x
TISSUE_FRACTION = 0.3
OVERLAY_DOWNSAMPLE = 16
TILE = 128
"""Tile side (pixels) of every stage."""


def tiling_settings():
    """The tiling settings of every stage (the overlay's green is the tumour)."""
    from histotile.tiling import TilingSettings

    return TilingSettings(tile_size=TILE, classes=CLASSES, palette={"tumour": TUMOUR_GREEN})


@dataclass(frozen=True)
class BenchInput:
    """A cached synthetic slide and its painted overlay (1/16 resolution).

    Attributes:
        slide, overlay: the two files.
        width, height: level-0 size in pixels.
        seconds_written: time spent writing them in this run (0 when cached).
    """

    slide: Path
    overlay: Path
    width: int
    height: int
    seconds_written: float

    @property
    def gigapixels(self) -> float:
        return self.width * self.height / 1e9


def tumour_marks(width: int, height: int) -> list[Mark]:
    """Two painted tumour rectangles (level-0 pixels), about 4 % of the slide's area."""
    return [Mark(TUMOUR_GREEN, rect=(width * 0.20, height * 0.30, width * 0.12, height * 0.2)),
            Mark(TUMOUR_GREEN, rect=(width * 0.60, height * 0.55, width * 0.08, height * 0.2))]


def cached_input(work: str | Path, width: int, height: int, seed: int = 7) -> BenchInput:
    """The synthetic slide of ``width`` x ``height`` level-0 pixels (0.5 um/px, 30 %
    tissue, ``seed``) and its overlay under ``work``, written on first use. Both writers
    publish by rename, so an interrupted run never leaves a half-written cache entry."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    slide = work / f"synthetic_{width}x{height}_s{seed}.tif"
    overlay = slide.with_name(slide.stem + f"_overlay_ds{OVERLAY_DOWNSAMPLE}.tif")
    started = time.perf_counter()
    if not slide.exists():
        write_synthetic_slide(slide, width, height, seed=seed, mpp=SLIDE_MPP,
                              tissue_fraction=TISSUE_FRACTION)
    if not overlay.exists():
        write_overlay(slide, overlay, tumour_marks(width, height),
                      downsample=OVERLAY_DOWNSAMPLE)
    return BenchInput(slide, overlay, width, height, time.perf_counter() - started)
