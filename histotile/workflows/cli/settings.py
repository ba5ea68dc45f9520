"""Options typed at the edge: :func:`settings_option` gathers a command's options named
like the fields of a settings dataclass into one instance of it, so the command's
function takes that dataclass (checked, frozen) instead of loose option values. For the
commands whose options fill settings of their own stage (``train``: ``TrainSettings`` and
``TrainPlacement``; ``evaluate-images``, ``export``, ``demo``, ``bench``), several to a
command when need be; the slide commands' ``Options`` (groups of options with flat
names, old spellings) go through :func:`histotile.workflows.cli.options.typed`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def field_names(cls: type) -> tuple[str, ...]:
    """The fields of the dataclass ``cls``, in order."""
    return tuple(f.name for f in dataclasses.fields(cls))


def gather(select: Callable[[str], bool], make: Callable[[dict[str, Any]], Any],
           name: str) -> Callable[[F], F]:
    """Decorate a click command's function: the option values whose names ``select``
    accepts become one object, ``make(values)``, passed as the keyword argument
    ``name``. The one way options become typed settings (:func:`settings_option` and
    :func:`histotile.workflows.cli.options.typed` are made of it)."""
    def decorate(function: F) -> F:
        @functools.wraps(function)
        def command(*args: Any, **given: Any) -> Any:
            values = {key: given.pop(key) for key in list(given) if select(key)}
            given[name] = make(values)
            return function(*args, **given)

        # functools.wraps keeps the signature, which the type checker cannot see.
        return command  # type: ignore[return-value]

    return decorate


def settings_option(cls: type[Any], name: str = "settings",
                    build: Callable[[dict[str, Any]], Any] | None = None,
                    fields: tuple[str, ...] | None = None) -> Callable[[F], F]:
    """Decorate a click command's function (below its ``@click.option`` lines and
    ``handle_errors``): the option values whose names are fields of the dataclass ``cls``
    (or are in ``fields``) become one ``cls`` instance, passed as the keyword argument
    ``name``. ``build`` makes it from those values (default: ``cls.from_dict``, which
    refuses unknown names and checks the values, so a bad value is the command's usage
    error)."""
    names = frozenset(field_names(cls) if fields is None else fields)
    return gather(names.__contains__, build or cls.from_dict, name)
