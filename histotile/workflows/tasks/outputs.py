"""Resumable per-slide output folders.

Each slide's outputs live in ``OUT/<slide>/`` beside a small state file recording a
fingerprint of the inputs (slide file size and modification time, settings, model card)
and whether the work finished. A rerun skips a slide whose outputs are complete and whose
fingerprint matches, resumes one that was interrupted with the same settings, and refuses
to overwrite outputs made with other settings (or by something else) unless told to.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from histotile._atomic import write_text_atomic
from histotile.errors import OutputExistsError

STATE_NAME = ".histotile-{kind}.json"


def fingerprint(slide_path: str | Path, settings: dict[str, Any],
                model_dir: str | Path | None = None, extra: dict[str, Any] | None = None) -> str:
    """A hash of everything that determines a slide's outputs."""
    stat = Path(slide_path).stat()
    payload: dict[str, Any] = {"slide": [stat.st_size, stat.st_mtime_ns],
                               "settings": settings, "extra": extra or {}}
    if model_dir is not None:
        card = Path(model_dir) / "model_card.json"
        payload["model"] = hashlib.sha256(card.read_bytes()).hexdigest() if card.exists() else ""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SlideOutputs:
    """The output folder of one slide for one kind of work (``run``, ``predict``...)."""

    def __init__(self, out_dir: str | Path, slide_name: str, kind: str) -> None:
        self.folder = Path(out_dir) / slide_name
        self.kind = kind
        self.state_path = self.folder / STATE_NAME.format(kind=kind)

    def path(self, name: str) -> Path:
        return self.folder / name

    def _state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def completed_record(self, print_: str) -> dict[str, Any] | None:
        """The stored record when the work finished with fingerprint ``print_`` and every
        output it listed still exists; else None."""
        state = self._state()
        if not state or state.get("fingerprint") != print_:
            return None
        return self.finished_record()

    def finished_record(self, check_outputs: bool = True) -> dict[str, Any] | None:
        """The stored record when the work finished (with any settings) and, with
        ``check_outputs``, every output it listed still exists; else None."""
        state = self._state()
        if not isinstance(state, dict) or state.get("state") != "done":
            return None
        record = state.get("record")
        if not isinstance(record, dict):
            return None
        if check_outputs and not all(Path(p).exists()
                                     for p in (record.get("outputs") or {}).values()):
            return None
        return record

    def begin(self, print_: str, overwrite: bool) -> None:
        """Claim the folder for work with fingerprint ``print_``.

        Raises :class:`OutputExistsError` when it holds outputs of other settings or of
        unknown origin, unless ``overwrite``."""
        state = self._state()
        has_files = self.folder.is_dir() and any(
            p.name != self.state_path.name and not p.name.startswith(".")
            for p in self.folder.iterdir())
        if not overwrite and has_files:
            if state is None:
                raise OutputExistsError(
                    f"{self.folder}: holds files that histotile did not write for "
                    f"'{self.kind}' (pass --overwrite to replace them, or choose another --out)")
            if state.get("fingerprint") != print_:
                raise OutputExistsError(
                    f"{self.folder}: outputs exist from different settings, model or slide "
                    "version (pass --overwrite to redo them, or choose another --out)")
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.state_path, json.dumps({"fingerprint": print_,
                                                       "state": "started"}))

    def finish(self, print_: str, record: dict[str, Any]) -> None:
        write_text_atomic(self.state_path, json.dumps(
            {"fingerprint": print_, "state": "done", "record": record}, indent=2, default=str))
