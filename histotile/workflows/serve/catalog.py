"""The slides a server may show: found under its roots, looked up by name only.

A request names a slide by its name as histotile's reports use it (file name up to the
first dot). Only names found by walking the roots resolve; the file's real path (links
followed) must still lie under a root when it is opened, so a link pointing out of the
roots, ``..`` or an absolute path never reaches the file system.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from histotile.workflows.tasks.inputs import expand_slides, find_annotation, slide_stem

# A name is only ever a key of the scanned names (never joined to a path), so any file name
# may be one: spaces, brackets, '#', '%', non-ASCII letters. Refused before any lookup:
# separators, control characters, a leading dot ('.', '..', hidden files), over 255 chars.
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]|^\.|^$")
_MAX_NAME = 255
_RESCAN_SECONDS = 5.0


def valid_name(name: object) -> bool:
    """True when ``name`` may name a slide: a file name's stem, no path in it."""
    return (isinstance(name, str) and len(name) <= _MAX_NAME
            and _BAD_NAME.search(name) is None)


class SlideCatalog:
    """Slide name -> file, for the slides under ``roots`` (files or folders)."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [Path(r) for r in roots]
        self._real_roots = [r.resolve() for r in self.roots]
        self._paths: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._scanned = 0.0
        self.rescan()

    def rescan(self) -> None:
        """Walk the roots again (slides added since start appear)."""
        found: dict[str, Path] = {}
        for path in expand_slides(self.roots):
            if path.is_file() and self._inside(path):
                found.setdefault(slide_stem(path), path)
        with self._lock:
            self._paths = found
            self._scanned = time.monotonic()

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._paths)

    def known(self, name: str) -> Path | None:
        """The file last found for ``name`` by a scan, without touching the file system
        (for cache lookups on the event loop; :meth:`path` before opening anything)."""
        if not valid_name(name):
            return None
        with self._lock:
            return self._paths.get(name)

    def path(self, name: str) -> Path | None:
        """The file of slide ``name``, or None (unknown, malformed, or now outside)."""
        if not valid_name(name):
            return None
        with self._lock:
            path = self._paths.get(name)
            stale = time.monotonic() - self._scanned > _RESCAN_SECONDS
        if path is None and stale:
            self.rescan()
            with self._lock:
                path = self._paths.get(name)
        if path is None or not self._inside(path):
            return None
        return path

    def annotation(self, name: str) -> Path | None:
        """The annotation beside slide ``name`` (``.geojson``, ``.overlay.*``, ``.mask.*``),
        when it lies under the roots too."""
        path = self.path(name)
        if path is None:
            return None
        found = find_annotation(path, None)
        return found if found is not None and self._inside(found) else None

    def _inside(self, path: Path) -> bool:
        """True when the real file (links followed) lies under a root."""
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return False
        return any(real == root or root in real.parents for root in self._real_roots)
