"""Old names of the Python API, still accepted with a :class:`DeprecationWarning` naming
today's: a keyword argument of a public function (:func:`renamed_keywords`) and an
attribute of a result it returns (:class:`RenamedAttribute`). Options in configuration
files and ``from_dict`` keys take their own path, ``histotile.workflows.options.renamed``,
whose warnings :func:`warn_renamed` writes too (the flag added as a hint)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

from histotile.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def warn_renamed(what: str, old: str, new: str, stacklevel: int = 3,
                 hint: str = "") -> None:
    """The :class:`DeprecationWarning` for ``old`` used where ``new`` is today's name
    (``hint``, e.g. the flag, in brackets after it), pointing ``stacklevel`` frames up
    (3: the caller of the function that calls this)."""
    warnings.warn(f"{what}: {old!r} is deprecated, use {new!r}" + (f" ({hint})" if hint else ""),
                  DeprecationWarning, stacklevel=stacklevel)


def renamed_keywords(**renames: str) -> Callable[[F], F]:
    """A decorator: the function also takes each old keyword (``old="new"`` in
    ``renames``), passed on as ``new`` with a :class:`DeprecationWarning`; giving both is
    a :class:`ConfigError`. Signatures (``inspect``, type checkers, the docs) show only
    today's names."""
    def decorate(function: F) -> F:
        what = f"{function.__name__}()"

        @functools.wraps(function)
        def accepting_old_names(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise ConfigError(f"{what}: {old} and {new} are one argument (give "
                                      f"only {new})")
                warn_renamed(what, old, new)
                kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        return cast(F, accepting_old_names)
    return decorate


class RenamedAttribute:
    """A class attribute reading today's attribute ``new`` under its old name, with a
    :class:`DeprecationWarning` (in a dataclass it is no field: ``class_name =
    RenamedAttribute("positive_class")``)."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.old = self.what = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.old, self.what = name, owner.__name__

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        warn_renamed(self.what, self.old, self.new, stacklevel=3)
        return getattr(instance, self.new)
