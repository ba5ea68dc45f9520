"""Names that become file or folder names (class labels, slide names): refused when they
would leave the folder meant for them (``..``, path separators) or be hidden."""

from __future__ import annotations

import os

from histotile.errors import ConfigError


def check_folder_name(name: str, what: str, error: type[Exception] = ConfigError) -> str:
    """Return ``name`` when it is safe as one folder name inside another; raise ``error``
    (naming ``what``, e.g. "class 'x' of --classes") otherwise."""
    separators = {"/", "\\", os.sep, os.altsep or "/", "\0"}
    if name in ("", ".", "..") or any(s in name for s in separators):
        raise error(f"{what}: {name!r} cannot be a folder name (it is empty, '.' or '..', or "
                    "holds a path separator), so its tiles would be written outside their "
                    "folder; rename the class")
    return name
