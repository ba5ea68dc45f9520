"""The one rule every settings dataclass's ``from_dict`` follows: unknown keys are an error
that names them and lists the known ones (a typo in a YAML file or a hand-edited card must
never be silently ignored)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from histotile.errors import ConfigError


def refuse_unknown(cls: type, data: dict[str, Any], what: str) -> None:
    """Raise :class:`ConfigError` when ``data`` has keys that are not fields of the
    dataclass ``cls``; ``what`` names the settings in the message (e.g. "tiling")."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {', '.join(unknown)} (known: "
                          f"{', '.join(sorted(known))})")


T = TypeVar("T")


def required(value: T | None, what: str) -> T:
    """``value``, which a resolution step has filled in (``TrainSettings.resolved()`` fills
    every None setting; a cross-validation fold always has validation figures), typed
    without None. A None here is a bug in histotile, raised as one that names ``what``
    instead of as arithmetic on None further on."""
    if value is None:
        raise TypeError(f"{what} is None where it must have been filled in (a bug in "
                        "histotile)")
    return value
