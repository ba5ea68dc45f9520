"""Runs one benchmark measurement in a fresh process, so that each stage's peak memory is
its own and no stage inherits another's warm caches or thread pools.

    python -m histotile.workflows.benchmark.child STAGE PARAMS_JSON

prints the result as JSON on its last line (after :data:`MARKER`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from histotile.errors import HistotileError

MARKER = "HISTOTILE-BENCH-RESULT "


def measure(stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run ``stage`` (a name in :data:`.stages.STAGES`) in a child process; returns its
    result. Raises :class:`HistotileError` with the child's last output when it fails."""
    # Idle OpenMP threads spin for a while by default, which steals the other core from
    # the tiler's and DataLoader's processes on a small machine.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    done = subprocess.run([sys.executable, "-m", __name__, stage, json.dumps(params)],
                          capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise HistotileError(f"benchmark stage {stage!r} failed (exit {done.returncode}):\n"
                             f"{tail}\nRun it alone to see everything: {sys.executable} -m "
                             f"{__name__} {stage} '{json.dumps(params)}'")
    return json.loads(lines[-1][len(MARKER):])


def main(argv: list[str]) -> int:
    from histotile.workflows.benchmark.stages import STAGES, run_stage

    if len(argv) != 2 or argv[0] not in STAGES:
        print(f"usage: python -m {__name__} {{{','.join(STAGES)}}} PARAMS_JSON",
              file=sys.stderr)
        return 2
    result = run_stage(argv[0], json.loads(argv[1]))
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
