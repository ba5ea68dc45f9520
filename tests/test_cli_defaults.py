"""Each default is written once, as a dataclass field: every option of the commands below
has the default of the field it fills (found by name in the command's dataclasses, their
groups included). A click option that types its own default fails here, and so does one
whose default disagrees with its field.

Other commands join by adding an entry to ``COMMANDS``: the command's name, the
dataclasses its options fill, and the options that fill none (with the reason)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import click
import pytest

from histotile.workflows.cli.main import cli
from histotile.workflows.options import NEGATED, RENAMED, groups
from histotile.workflows.slide_options import (
    EvaluateOptions,
    HeatmapOptions,
    PredictOptions,
    QCOptions,
    RunOptions,
    TileOptions,
)
from histotile.workflows.tasks.execution import Execution
from histotile.workflows.watch import WatchSettings

PATHS = ("slides", "inbox", "model_dir", "out_dir", "predictions_dir")
"""Arguments and required options: the inputs and outputs, which have no default."""


@dataclass(frozen=True)
class Command:
    """A command, the dataclasses its options fill (in order: the first one with a field
    of an option's name holds its default), and its options that fill no field."""

    name: str
    settings: tuple[type, ...]
    cli_only: dict[str, str] = field(default_factory=dict)  # option -> why


COMMANDS = [
    Command("run", (RunOptions, Execution)),
    Command("predict", (PredictOptions, Execution)),
    Command("heatmap", (HeatmapOptions, Execution)),
    Command("evaluate", (EvaluateOptions, Execution)),
    Command("tile", (TileOptions, Execution)),
    Command("qc", (QCOptions, Execution)),
    Command("watch", (WatchSettings,)),
    Command("info", (), {"as_json": "how the metadata is printed"}),
]


def flat_fields(settings: type) -> dict[str, dataclasses.Field]:
    """The fields of a dataclass by name, its groups' fields (dataclass-valued fields)
    flattened in."""
    nested = groups(settings)
    found: dict[str, dataclasses.Field] = {}
    for item in dataclasses.fields(settings):
        found.update(flat_fields(nested[item.name]) if item.name in nested
                     else {item.name: item})
    return found


def field_default(item: dataclasses.Field):
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def owner(command: Command, name: str) -> tuple[type, str] | None:
    """The dataclass whose field holds option ``name``'s default, and the field's name
    (an old spelling of :data:`RENAMED` / :data:`NEGATED` stands for today's)."""
    name = RENAMED.get(name, name)
    for settings in command.settings:
        if name in flat_fields(settings):
            return settings, name
    return None


def same_default(settings: type, name: str, value) -> bool:
    """``value`` (the CLI's default) is the field's default: equal, or, for a value the
    dataclass parses (the CLI's text of a class list), the same options when given."""
    default = field_default(flat_fields(settings)[name])
    if value == default:
        return True
    if value is None or not hasattr(settings, "from_dict"):
        return False
    return settings.from_dict({name: value}) == settings.from_dict({})


def params(command: Command) -> list[click.Parameter]:
    return [p for p in cli.commands[command.name].params
            if p.expose_value and p.name not in PATHS and p.name not in command.cli_only]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_every_cli_default_is_its_dataclass_default(command):
    wrong = []
    for param in params(command):
        found = owner(command, param.name)
        if found is None:
            wrong.append(f"--{param.name}: no field (add one, or list it as CLI-only)")
            continue
        settings, name = found
        default = param.default
        if param.name in NEGATED:  # an old negative switch: its default is the inverse
            default = not default
        if not same_default(settings, name, default):
            wrong.append(f"--{param.name}: CLI default {param.default!r}, "
                         f"{settings.__name__}.{name} "
                         f"{field_default(flat_fields(settings)[name])!r}")
    assert not wrong, "\n".join(wrong)


def test_paths_are_required():
    """The inputs and outputs left out above have no default to compare: they are
    required (``slides`` one or more)."""
    for command in COMMANDS:
        for param in cli.commands[command.name].params:
            if param.name in PATHS:
                assert param.required, (command.name, param.name)


def test_a_default_typed_in_the_cli_is_found(monkeypatch):
    """The check itself: a click option whose default differs from its field fails."""
    command = COMMANDS[0]
    alpha = next(p for p in cli.commands["run"].params if p.name == "alpha")
    monkeypatch.setattr(alpha, "default", 0.5)
    with pytest.raises(AssertionError, match="--alpha: CLI default 0.5"):
        test_every_cli_default_is_its_dataclass_default(command)
