"""The benchmark suite (``histotile bench``, ``benchmarks/run.py``): every pipeline stage on
a synthetic slide against a same-run baseline, as a Markdown table next to the original
workflow's published times. A tool, not a test: it never fails on a number."""

from histotile.workflows.benchmark.suite import (
    BenchmarkResult,
    BenchmarkSettings,
    run_benchmark,
)

__all__ = ["BenchmarkResult", "BenchmarkSettings", "run_benchmark"]
