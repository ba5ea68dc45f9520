"""Run every benchmark in turn and print their tables (``make bench``).

Each writes its inputs once under ``benchmarks/_work/`` (the 5-gigapixel synthetic slide
takes a few minutes the first time) and compares against a baseline measured in the same
run. Run them on a quiet machine: the ratios hold on a busy one, the seconds do not.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["bench_cli.py", "bench_tiling.py", "bench_models.py", "bench_heatmap.py",
         "bench_workflows.py"]


def main() -> int:
    failed = []
    for name in sys.argv[1:] or ORDER:
        print(f"\n## {name}\n", flush=True)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, str(HERE / name)], check=False)
        print(f"\n({name}: {time.perf_counter() - started:.0f} s, exit {result.returncode})")
        if result.returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
