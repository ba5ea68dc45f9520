"""The Python API can do everything the command line can: every option of each command
below is a parameter of its API function or a field (by name, groups included) of a
dataclass that function takes. Only the options in ``CLI_ONLY`` (about the terminal, not
the work) have none."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing

import pytest

from histotile.workflows import api, watch
from histotile.workflows.cli.main import cli
from histotile.workflows.options import RENAMED, option_names
from histotile.workflows.tasks import inputs

CLI_ONLY = {
    "as_json": "info prints a table or JSON; slide_info returns the data",
}
"""Options with no API counterpart, and why. (``--config`` and ``--verbose`` fill no
parameter: click reads them.)"""

API = {
    "run": api.run_batch,
    "predict": api.predict_batch,
    "heatmap": api.heatmap_batch,
    "evaluate": api.evaluate_batch,
    "tile": api.tile_batch,
    "qc": api.qc_batch,
    "watch": watch.watch_folder,
    "info": inputs.slide_info,
}
"""Each command's API function (other commands join with an entry here)."""

SAME_INPUT = {"slides": "path"}
"""A CLI argument under another name in the API (info's slides: one path per call)."""


def dataclasses_taken(function) -> list[type]:
    """The dataclasses among ``function``'s parameter types (``X | None`` included)."""
    found = []
    for hint in typing.get_type_hints(function).values():
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) or \
            typing.get_origin(hint) is typing.Union else (hint,)
        found.extend(t for t in options if dataclasses.is_dataclass(t))
    return found


def api_names(function) -> set[str]:
    """Every name the API function takes: its parameters and its dataclasses' options."""
    names = set(inspect.signature(function).parameters)
    for settings in dataclasses_taken(function):
        names |= set(option_names(settings))
    return names


@pytest.mark.parametrize("command", sorted(API))
def test_every_cli_option_has_an_api_field(command):
    names = api_names(API[command])
    missing = [p.name for p in cli.commands[command].params
               if p.expose_value and p.name not in CLI_ONLY
               and RENAMED.get(p.name, p.name) not in names
               and SAME_INPUT.get(p.name) not in names]
    assert not missing, f"{command}: no API field for {missing}"


def test_every_in_scope_command_is_covered():
    slide_commands = {"run", "predict", "heatmap", "evaluate", "tile", "qc", "info", "watch"}
    assert slide_commands <= set(API)


def test_an_option_without_a_field_is_found(monkeypatch):
    """The check itself: a flag the API does not take fails."""
    import click

    extra = click.Option(["--sharpen"], is_flag=True)
    monkeypatch.setattr(cli.commands["run"], "params", [*cli.commands["run"].params, extra])
    with pytest.raises(AssertionError, match="sharpen"):
        test_every_cli_option_has_an_api_field("run")
