"""The frame of every per-slide task: resumable output folders with fingerprints, the
record each task returns, and the identities of the inputs a fingerprint includes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histotile.workflows.tasks.inputs import slide_stem
from histotile.workflows.tasks.process import set_threads


def _record(slide_path: str, **fields: Any) -> dict[str, Any]:
    from histotile.workflows.tasks.report import SlideRecord

    path = Path(slide_path)
    return SlideRecord(slide=slide_stem(path), path=str(path), **fields).to_dict()


def _skipped(record: dict[str, Any]) -> dict[str, Any]:
    """A finished folder's stored record (any version), as skipped."""
    from histotile.workflows.tasks.report import SlideRecord

    stored = SlideRecord.from_dict(record).to_dict()
    return {**stored, "status": "skipped", "seconds": 0.0, "skip_reason": "complete"}


# -- the per-slide tasks ----------------------------------------------------------------

def resumable(kind: str, slide_path: str, out_dir: str, overwrite: bool,
               settings: dict[str, Any], work, *, model_dir: str | None = None,
               extra: dict[str, Any] | None = None, prepare=None) -> dict[str, Any]:
    """The frame of every per-slide task: skip when finished with the same fingerprint,
    ``prepare()`` (checks that must fail before the folder is claimed), claim the output
    folder, ``work(outputs, prepared)`` -> record fields, then mark it finished."""
    import time

    from histotile._files import FolderBusyError, folder_lock, remove_stale_temporaries
    from histotile.workflows.tasks.inputs import check_slide_input
    from histotile.workflows.tasks.outputs import SlideOutputs, fingerprint

    started = time.perf_counter()
    check_slide_input(Path(slide_path))
    outputs = SlideOutputs(out_dir, slide_stem(Path(slide_path)), kind)
    print_ = fingerprint(slide_path, settings, model_dir, extra=extra)
    if not overwrite and (done := outputs.completed_record(print_)) is not None:
        return _skipped(done)
    prepared = prepare() if prepare is not None else None
    try:
        with folder_lock(outputs.folder):  # one run per slide folder at a time
            outputs.begin(print_, overwrite)
            remove_stale_temporaries(outputs.folder)  # left by a killed earlier run
            set_threads()
            fields = work(outputs, prepared)
            record = _record(slide_path, seconds=time.perf_counter() - started, **fields)
            outputs.finish(print_, record)
    except FolderBusyError as busy:
        # What settle_busy needs to tell, once the batch is over, whether the other run
        # finished the slide.
        waiting = {"kind": kind, "out_dir": str(out_dir), "fingerprint": print_}
        return {**_record(slide_path), "status": "skipped", "error": str(busy),
                "skip_reason": "busy", "extra": {"busy": waiting}}
    return record


def settle_busy(records: list) -> list:
    """This batch's records (:class:`~histotile.workflows.tasks.report.SlideRecord`), each slide
    skipped because another run held its folder replaced, when that run has finished it
    since (with this batch's fingerprint), by the stored record, reported as finished by
    another run: so a report never says "another run is working" of a finished slide."""
    from histotile.workflows.tasks.outputs import SlideOutputs
    from histotile.workflows.tasks.report import BUSY, ELSEWHERE, SKIPPED, SlideRecord

    settled = []
    for record in records:
        waiting = record.extra.get("busy") if record.skip_reason == BUSY else None
        done = None if not isinstance(waiting, dict) else SlideOutputs(
            waiting["out_dir"], record.slide, waiting["kind"]).completed_record(
            waiting["fingerprint"])
        if done is not None:
            record = SlideRecord.from_dict({**done, "status": SKIPPED, "seconds": 0.0,
                                            "skip_reason": ELSEWHERE})
        settled.append(record)
    return settled


def predicted_shares(table, classes: list[str]) -> dict[str, float]:
    """Share of tiles whose most probable class is each class."""
    import numpy as np

    if len(table) == 0:
        return dict.fromkeys(classes, 0.0)
    probabilities = table[[f"prob_{c}" for c in classes]].to_numpy()
    winners = np.bincount(probabilities.argmax(axis=1), minlength=len(classes))
    return {c: float(n) / len(table) for c, n in zip(classes, winners)}


def prediction_fields(predictions, parts: int | None = None) -> dict[str, Any]:
    """Record fields of a slide's predictions; ``parts``: how many cluster tasks
    predicted it (known only where it was predicted, not when read back)."""
    return {"tiles": len(predictions),
            "class_shares": predicted_shares(predictions.tiles, list(predictions.classes)),
            "extra": {} if parts is None else {"prediction_parts": parts}}


def file_identity(path: str | None) -> list | None:
    """Name, size and modification time of an input file (None when absent)."""
    if path is None or not Path(path).exists():
        return None
    stat = Path(path).stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def engine_setting(engine: str) -> dict[str, str]:
    """The engine as part of a task's fingerprint only when it changes the results
    (int8); the float engines agree to about 1e-6, so finished slides stay finished."""
    return {"engine": engine} if engine.endswith("int8") else {}


def saved_predictions(slide_path: str, predictions_dir: str) -> str:
    """Where ``predict``/``run`` saved a slide's predictions."""
    return str(Path(predictions_dir) / slide_stem(Path(slide_path)) / "predictions.csv")
