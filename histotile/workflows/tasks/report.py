"""The per-run report: one record per slide, written as CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from histotile._atomic import write_text_atomic

OK, SKIPPED, FAILED = "ok", "skipped", "failed"
# Why a slide was skipped (SlideRecord.skip_reason): its outputs were already complete;
# another histotile run held its folder; another run finished it while this one ran.
COMPLETE, BUSY, ELSEWHERE = "complete", "busy", "finished by another run"


@dataclass
class SlideRecord:
    """What happened to one slide.

    Attributes:
        slide: slide name; path: its file.
        status: ``ok``, ``skipped`` (outputs already complete) or ``failed``.
        tiles: tiles processed; class_shares: share (0-1) of those tiles per class (the
            label for ``tile``, the most probable class for ``predict`` and ``run``).
        area_fractions: fractions (0-1) of the slide's area (``qc``: tissue, pen, blur,
            fold).
        decision: slide-level decision (e.g. ``positive``/``negative``) when computed.
        seconds: wall time; error: the error message when failed; outputs: files written.
        warning: what went wrong without failing the slide (an annotation that labels
            nothing, a class role assumed for an old model); None when all is well.
        skip_reason: why a skipped slide was skipped: :data:`COMPLETE` (this run found
            its outputs complete), :data:`BUSY` (another histotile run held its folder)
            or :data:`ELSEWHERE` (another run finished it meanwhile; the record is that
            run's); None when not skipped.
    """

    slide: str
    path: str
    status: str = OK
    tiles: int = 0
    class_shares: dict[str, float] = field(default_factory=dict)
    area_fractions: dict[str, float] = field(default_factory=dict)
    decision: str | None = None
    seconds: float = 0.0
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None
    skip_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SlideRecord:
        """A record from :meth:`to_dict`'s dict, or from one written before the shares of
        tiles and the QC's area fractions had their own keys (both were
        ``class_fractions``; a ``histotile qc`` record is the one whose ``extra`` holds
        the QC's ``reasons``)."""
        data = dict(data)
        if "class_fractions" in data:
            old = data.pop("class_fractions") or {}
            qc = "reasons" in (data.get("extra") or {})
            data.setdefault("area_fractions" if qc else "class_shares", old)
        if data.get("status") == SKIPPED and data.get("skip_reason") is None:
            data["skip_reason"] = BUSY if data.get("error") else COMPLETE  # older records
        return cls(**data)

    def fractions(self) -> dict[str, float]:
        """The figures the report's ``fraction_<name>`` columns show: the class shares and
        the area fractions."""
        return {**self.class_shares, **self.area_fractions}


def write_report(records: list[SlideRecord], out_dir: str | Path,
                 name: str = "report") -> tuple[Path, Path]:
    """Write ``<out_dir>/<name>.csv`` and ``.json`` atomically; return both paths.

    Slides reported by an earlier invocation into the same folder (read back from the
    JSON) keep their latest row: the report covers every slide ever run there."""
    out_dir = Path(out_dir)
    records = merged_records(out_dir / f"{name}.json", records)
    names = sorted({c for r in records for c in r.fractions()})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["slide", "path", "status", "tiles", *[f"fraction_{c}" for c in names],
                     "decision", "seconds", "error", "warning", "skip_reason"])
    for r in records:
        writer.writerow([r.slide, r.path, r.status, r.tiles,
                         *[f"{r.fractions().get(c, 0.0):.4f}" for c in names],
                         r.decision or "", f"{r.seconds:.2f}", r.error or "",
                         r.warning or "", r.skip_reason or ""])
    csv_path = write_text_atomic(out_dir / f"{name}.csv", buffer.getvalue())
    summary = {
        "slides": len(records),
        "ok": sum(r.status == OK for r in records),
        "skipped": sum(r.status == SKIPPED for r in records),
        "failed": sum(r.status == FAILED for r in records),
        "skip_reasons": skip_counts(records),
        "records": [r.to_dict() for r in records],
    }
    json_path = write_text_atomic(out_dir / f"{name}.json", json.dumps(summary, indent=2))
    return csv_path, json_path


def merged_records(previous_json: Path, records: list[SlideRecord]) -> list[SlideRecord]:
    """The records of an earlier report (in their order), each replaced by this run's
    record of the same slide file, then this run's new slides. An unreadable earlier
    report is ignored (it is about to be replaced)."""
    try:
        earlier = json.loads(previous_json.read_text(encoding="utf-8")).get("records") or []
        old = [SlideRecord.from_dict(r) for r in earlier if isinstance(r, dict)]
    except (OSError, ValueError, TypeError, AttributeError):
        return list(records)
    latest = {r.path: r for r in records}
    merged = [latest.pop(r.path, r) for r in old]
    return merged + [r for r in records if r.path in latest]


def skip_counts(records: list[SlideRecord]) -> dict[str, int]:
    """How many slides were skipped for each reason (:data:`COMPLETE`, :data:`BUSY`,
    :data:`ELSEWHERE`)."""
    return {reason: sum(r.status == SKIPPED and r.skip_reason == reason for r in records)
            for reason in (COMPLETE, BUSY, ELSEWHERE)}


def exit_code(records: list[SlideRecord]) -> int:
    """0 when no slide failed, 1 when some did."""
    return 1 if any(r.status == FAILED for r in records) else 0
