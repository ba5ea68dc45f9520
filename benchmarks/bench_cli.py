"""Start-up time of the command line, against a bare Python start in the same run.

Target (issue 6): ``histotile --help`` and ``histotile info SLIDE`` under 1 s.
Run: ``.venv/bin/python benchmarks/bench_cli.py [--out benchmarks/results/NAME.json]``
(``--out`` keeps the figures with the date, machine and load: ``_results.py``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import started, write

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the figures in this results file "
                        "(JSON; never replaces one)")
    args = parser.parse_args()
    start = started(args.out)
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
    write(args.out, "cli", start, {
        "repeats": REPEATS, "baseline": "python -c pass",
        "rows": [{"command": name, "median_s": seconds, "ratio": seconds / baseline,
                  "target_s": 1.0 if name.startswith("histotile") else None}
                 for name, seconds in rows]})


if __name__ == "__main__":
    main()
