"""Shared inputs for the benchmarks: the synthetic 5-gigapixel slide and its overlay,
written once and cached under ``benchmarks/_work/`` (git-ignored)."""

from __future__ import annotations

import resource
import time
from pathlib import Path

from histotile._threads import available_cores
from histotile.wsi.synthetic import Mark, write_overlay, write_synthetic_slide

WORK = Path(__file__).resolve().parent / "_work"
# The scale the issues name: 100,000 x 50,000 px (5 GP) at 0.5 um/px (20x), 30 % tissue.
BIG_SIZE = (100_000, 50_000)
TUMOUR_GREEN = (0, 255, 0)


def synthetic_slide(width: int = BIG_SIZE[0], height: int = BIG_SIZE[1], seed: int = 7,
                    name: str | None = None) -> Path:
    """A cached synthetic slide of the given size (written on first use)."""
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / (name or f"synthetic_{width}x{height}_s{seed}.tif")
    if not path.exists():
        started = time.perf_counter()
        write_synthetic_slide(path, width, height, seed=seed, mpp=0.5, tissue_fraction=0.3)
        print(f"(wrote {path.name} in {time.perf_counter() - started:.0f} s)")
    return path


def tumour_marks(width: int, height: int) -> list[Mark]:
    """Two painted tumour regions (level-0 rectangles), about 4 % of the slide."""
    return [Mark(TUMOUR_GREEN, rect=(width * 0.20, height * 0.30, width * 0.12, height * 0.2)),
            Mark(TUMOUR_GREEN, rect=(width * 0.60, height * 0.55, width * 0.08, height * 0.2))]


def synthetic_overlay(slide: Path, width: int, height: int, downsample: float = 16) -> Path:
    """A painted overlay of ``slide`` at ``1/downsample`` resolution (cached)."""
    path = slide.with_name(slide.stem + f"_overlay_ds{downsample:g}.tif")
    if not path.exists():
        write_overlay(slide, path, tumour_marks(width, height), downsample=downsample)
    return path


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory in MiB of this process (or of its largest waited-for child)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def cpu_count() -> int:
    return available_cores()
