"""Shared inputs for the per-stage benchmarks: the synthetic 5-gigapixel slide and its
overlay, written once and cached under ``benchmarks/_work/`` (git-ignored) by the same
code as ``histotile bench`` (so both share the cache)."""

from __future__ import annotations

import resource
from pathlib import Path

from histotile._threads import available_cores
from histotile.workflows.benchmark.inputs import TUMOUR_GREEN, BenchInput, cached_input
from histotile.workflows.benchmark.suite import FULL_SIZE

WORK = Path(__file__).resolve().parent / "_work"
# The scale the issues name: 100,000 x 50,000 px (5 GP) at 0.5 um/px (20x), 30 % tissue.
BIG_SIZE = FULL_SIZE
__all__ = ["BIG_SIZE", "TUMOUR_GREEN", "WORK", "big_input", "cpu_count", "peak_rss_mib"]


def big_input() -> BenchInput:
    """The cached 5-GP slide and its painted overlay (1/16 resolution)."""
    result = cached_input(WORK, *BIG_SIZE, seed=7)
    if result.seconds_written > 0.5:
        print(f"(wrote {result.slide.name} in {result.seconds_written:.0f} s)")
    return result


def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory in MiB of this process (or of its largest waited-for child)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def cpu_count() -> int:
    return available_cores()
