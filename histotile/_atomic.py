"""Atomic output files: write to a temporary name beside the target, then rename.

A crash, an exception or a killed worker never leaves a half-written output under the
final name, and an existing output is kept until the new one is complete.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from histotile._files import make_folder, match_umask, write_failure
from histotile.errors import OutputExistsError


def check_writable(path: str | Path, overwrite: bool) -> Path:
    """Return ``path`` as a Path; raise :class:`OutputExistsError` if it exists and
    ``overwrite`` is False."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path}: output already exists (pass overwrite=True / --overwrite to replace it, "
            "or choose another output path)"
        )
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The temporary file keeps the target's suffix so that writers choosing a format by
    extension (OpenCV, matplotlib) behave, and the mode a plain ``open()`` would give
    under the umask. On an exception the temporary file is removed and the target is left
    untouched; a full disk, read-only or forbidden folder raises
    :class:`~histotile._files.OutputWriteError` naming ``path``.
    """
    path = check_writable(path, overwrite)
    make_folder(path.parent)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                                        dir=path.parent)
    except OSError as error:
        raise (write_failure(path, error) or error) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        match_umask(tmp)  # mkstemp makes 0600: give what open() would under the umask
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        # Disk full, read-only or forbidden: one clear error naming the output.
        failure = write_failure(path, error)
        if failure is None:
            raise
        raise failure from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
