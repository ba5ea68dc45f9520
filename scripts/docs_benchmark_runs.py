"""The runs of the benchmark pages: what each results file recorded about when and where
it ran (:class:`Run`), read the same way whatever benchmark wrote it. Part of
``scripts/docs_benchmarks.py``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEMO_SUMMARY = ROOT / "docs" / "generated" / "demo-summary.json"
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Run:
    """One results file: its name, what it recorded about when and where, its figures."""

    name: str
    date: str
    machine: str
    load: str
    note: str
    data: dict[str, Any]

    def cells(self) -> str:
        """The run's own cell of a table row: its file, date, machine and load (shown on
        the first row of the run only, see ``page`` in ``docs_benchmarks.py``)."""
        return f"| `{self.name}`<br>{self.date}<br>{self.machine}<br>load {self.load} "


RUN_HEADER = "| run: file, date, machine, load average (1 min) "
RUN_RULE = "|---"


def first(data: dict, *paths: str) -> Any:
    """The first value found at one of the dotted ``paths`` (None when none is)."""
    for path in paths:
        value: Any = data
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value not in (None, "", []):
            return value
    return None


def load_average(value: Any) -> str | None:
    """The 1-minute load average of a ``getloadavg()`` triple (numbers or strings)."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    try:
        return f"{float(value):.1f}"
    except (TypeError, ValueError):
        return None


def describe(path: Path, data: dict) -> Run:
    """The run's date, machine and load as the results file recorded them; what it did not
    record says so (the date then comes from the file's name, and says that too)."""
    date = first(data, "date", "started", "machine.date")
    if date:
        date = str(date).replace("T", " ")[:16].removesuffix(" 00:00")
    else:
        date = path.name[:10] + " (file name)"
    cores = first(data, "machine.cores", "machine.cpus", "machine.threads", "cores")
    cpu = first(data, "machine.cpu")
    system = first(data, "machine.system", "machine.platform")
    machine = ", ".join(str(part) for part in (
        f"{cores} cores" if cores else None, cpu,
        system.split("-with-")[0] if system else None) if part) or NOT_RECORDED
    pipeline = first(data, "machine.load_average")  # histotile bench: [before, after]
    before = load_average(first(data, "load_before", "load_average_before", "machine.load_before")
                   or (pipeline[:1] if pipeline else None))
    after = load_average(first(data, "load_after", "load_average_after", "machine.load_after",
                         "machine.load_average_after")
                  or (pipeline[1:] if pipeline else None))
    load = ", ".join(part for part in (before and f"{before} before",
                                       after and f"{after} after") if part) or NOT_RECORDED
    return Run(path.stem, date, machine, load, str(data.get("note") or ""), data)
