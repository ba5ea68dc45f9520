"""The benchmark suite in one command: every pipeline stage on a synthetic 5-gigapixel
slide (or ``--quick``: 20,000 x 20,000 px) against its same-run baseline and the original
workflow's published times, printed as a Markdown table and written to
``benchmarks/_work/benchmark.md`` (and ``.json``).

    .venv/bin/python benchmarks/run.py [--quick] [--device cuda] [histotile bench options]

The same as ``histotile bench --work benchmarks/_work``, so the synthetic slides are
shared with the other benchmarks' cache. A tool, not a test: it never fails on a number.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

WORK = Path(__file__).resolve().parent / "_work"

if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from histotile.workflows.cli.main import cli

    arguments = sys.argv[1:]
    if not any(a == "--work" or a.startswith("--work=") for a in arguments):
        arguments = ["--work", str(WORK), *arguments]
    cli(["bench", *arguments], prog_name="benchmarks/run.py")
