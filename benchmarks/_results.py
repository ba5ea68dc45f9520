"""The results file of a per-stage benchmark (``--out FILE``): its figures with the date, the
machine and the load average before and after the run, in the shape the other benchmarks
write and ``scripts/docs_benchmarks.py`` reads (``benchmark`` names its page).

Results are kept, never replaced: :func:`check_new` refuses an existing file before the run
starts (so a long run is not lost at its end), and :func:`write` refuses it again when it
writes, atomically (a stopped run leaves no half-written file).

    start = started(args.out)        # None without --out; the date and load before
    ...                              # the benchmark, printing its table as ever
    write(args.out, "cli", start, {"rows": rows})
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from histotile._atomic import write_text_atomic
from histotile._threads import available_cores
from histotile.errors import OutputExistsError

__all__ = ["ResultsExistError", "check_new", "machine", "started", "write"]


class ResultsExistError(SystemExit):
    """A results file exists already: results are kept, never replaced."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path}: a results file already exists (results are kept, never "
                         "replaced: give the new run another name)")
        self.path = path


def check_new(path: Path) -> Path:
    """``path``, when no file is there yet (else :class:`ResultsExistError`)."""
    if path.exists():
        raise ResultsExistError(path)
    return path


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``; the platform's word elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where the run happens: the cores it may use, the processor, the system."""
    return {"cores": available_cores(), "cpu": cpu_model(), "system": platform.platform()}


def started(out: Path | None) -> dict[str, Any] | None:
    """The run's start: its date (UTC, ISO 8601) and the machine with its load average
    (``os.getloadavg()``: 1, 5 and 15 minutes) before the run; None without ``out``."""
    if out is None:
        return None
    check_new(out)
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine() | {"load_before": list(os.getloadavg())}}


def write(out: Path | None, benchmark: str, start: dict[str, Any] | None,
          figures: dict[str, Any]) -> Path | None:
    """Write ``figures`` to ``out`` as the results of ``benchmark`` (its page's slug), with
    ``start``'s date and machine and the load average now (after the run); nothing without
    ``out``. Never replaces a file."""
    if out is None or start is None:
        return None
    record = {"benchmark": benchmark, "date": start["date"],
              "machine": start["machine"] | {"load_after": list(os.getloadavg())}} | figures
    try:
        write_text_atomic(check_new(out), json.dumps(record, indent=1) + "\n",
                          overwrite=False)
    except OutputExistsError:  # written by another run meanwhile
        raise ResultsExistError(out) from None
    print(f"written {out}")
    return out
