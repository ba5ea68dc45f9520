"""Start-up time of the command line, against a bare Python start in the same run.

Target (issue 6): ``histotile --help`` and ``histotile info SLIDE`` under 1 s.
Run: ``.venv/bin/python benchmarks/bench_cli.py``
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLIDE = ROOT / "histotile" / "data" / "CMU-1-Small-Region.svs"
HISTOTILE = [sys.executable, "-m", "histotile.workflows.cli.main"]
REPEATS = 7


def timed(command: list[str]) -> float:
    """Median wall time of ``command`` over REPEATS runs (s)."""
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    baseline = timed([sys.executable, "-c", "pass"])
    rows = [
        ("python -c pass (baseline)", baseline),
        ("import histotile", timed([sys.executable, "-c", "import histotile"])),
        ("histotile --help", timed([*HISTOTILE, "--help"])),
        ("histotile info SLIDE", timed([*HISTOTILE, "info", str(SLIDE)])),
        ("import torch (for scale)", timed([sys.executable, "-c", "import torch"])),
    ]
    print(f"| command | median of {REPEATS} (s) | x baseline | target |")
    print("| --- | --- | --- | --- |")
    for name, seconds in rows:
        target = "< 1 s" if name.startswith("histotile") else ""
        print(f"| {name} | {seconds:.3f} | {seconds / baseline:.1f} | {target} |")


if __name__ == "__main__":
    main()
