"""File-system helpers behind histotile's outputs: the permissions an ordinary ``open()``
would give, stale temporaries of histotile's own naming, and one lock per output folder.

Python's ``tempfile`` creates files 0600 and folders 0700 whatever the umask; an output
renamed from such a temporary would be unreadable by anyone else (a pathologist opening
heatmaps, Dask workers running as another account). :func:`match_umask` gives it the
mode ``open()``/``mkdir()`` would have given under the current umask.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from histotile.errors import HistotileError

_UMASK_LOCK = threading.Lock()
# ``atomic_path``'s temporaries: ``.<stem>.<8 random chars>.tmp<suffix>`` (tempfile.mkstemp).
_TEMPORARY = re.compile(r"^\..*\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
LOCK_NAME = ".histotile.lock"


class FolderBusyError(HistotileError):
    """Another histotile process holds the lock of an output folder."""


class OutputWriteError(HistotileError):
    """An output could not be written (disk full, read-only, permission denied)."""


def current_umask() -> int:
    """The process umask (read without changing it where Linux allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it: keep others out meanwhile
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def match_umask(path: str | Path, directory: bool = False) -> None:
    """Give ``path`` the mode a plain ``open()`` (0666) or ``mkdir()`` (0777) would have."""
    base = 0o777 if directory else 0o666
    os.chmod(path, base & ~current_umask())


def write_failure(path: str | Path, error: OSError) -> HistotileError | None:
    """A clear :class:`OutputWriteError` for OSErrors that mean "cannot write here"
    (disk full, quota, read-only file system, permission denied); None for others."""
    hints = {errno.ENOSPC: ("the disk is full", "free some space or choose another --out"),
             errno.EDQUOT: ("the disk quota is exhausted",
                            "free some space or choose another --out"),
             errno.EROFS: ("the file system is read-only", "choose another --out"),
             errno.EACCES: ("permission denied",
                            "make the folder writable or choose another --out"),
             errno.EPERM: ("permission denied",
                           "make the folder writable or choose another --out"),
             errno.EFBIG: ("the file is too large for this file system",
                           "choose another --out")}
    if error.errno not in hints:
        return None
    problem, hint = hints[error.errno]
    return OutputWriteError(f"{path}: cannot write: {problem} ({hint}); nothing was left "
                            "half-written")


def make_folder(folder: str | Path) -> Path:
    """``folder`` and its parents, created as needed; a folder that cannot be made (a
    read-only file system, no permission, a full disk) is an :class:`OutputWriteError`
    naming it, not a traceback."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        failure = write_failure(folder, error)
        if failure is None:
            raise
        raise failure from None
    return folder


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove histotile's own temporaries (``.<name>.XXXXXXXX.tmp.<ext>`` files, and
    ``.<name>.XXXXXXXX.partial`` training folders) that a killed run left in ``folder``.

    Call only while holding the folder's lock (:func:`folder_lock`), so that no live
    writer's temporary is removed. Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if entry.is_file() and _TEMPORARY.match(entry.name):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def remove_stale_staging(folder: str | Path, name: str) -> list[Path]:
    """Remove ``.<name>.*.partial`` staging folders of a killed ``train`` beside its output
    (call while holding the lock of ``folder``)."""
    removed = []
    for entry in Path(folder).glob(f".{glob.escape(name)}.*.partial"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def folder_lock(folder: str | Path, name: str = LOCK_NAME,
                wait: float = 0.0) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (a ``.histotile.lock`` file in it) or raise
    :class:`FolderBusyError` when another process (or another open in this one) holds it
    at once, or still after ``wait`` seconds. The lock goes with the process: a killed run
    never leaves it held. The file is removed when the lock is released, so finished
    folders hold no lock file."""
    import fcntl
    import time

    folder = make_folder(folder)
    path = folder / name
    deadline = time.monotonic() + wait
    while True:
        handle = open(path, "a+b")  # held open for the lock's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.close()
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            if time.monotonic() < deadline:  # a short holder (a manifest being combined)
                time.sleep(0.05)
                continue
            raise FolderBusyError(
                f"{folder}: another histotile run is working in this folder (it holds "
                f"{path}); skipped here: run the command again once it has finished") from None
        # The holder before us may have removed the file between our open and our lock:
        # then we hold a lock on a file nobody else can find, so open the path again.
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)  # while still locked: the next holder makes its own
        handle.close()
