"""Each default is written once, as a dataclass field: every option of the commands below
has the default of the field it fills (found by name in the command's dataclasses, their
groups included). A click option that types its own default fails here, and so does one
whose default disagrees with its field.

Other commands join by adding an entry to ``COMMANDS``: the command's name, the
dataclasses its options fill, and the options that fill none (with the reason).

The training and tool commands (train, evaluate-images, export, demo, bench) are in
``TYPED_COMMANDS`` below: their options fill the commands' settings dataclasses, or
their API function's parameters."""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest

from histotile.models.settings import TrainSettings
from histotile.workflows import api
from histotile.workflows.benchmark.suite import BenchmarkSettings
from histotile.workflows.cli.main import cli
from histotile.workflows.demo import DemoSettings
from histotile.workflows.options import NEGATED, RENAMED, groups
from histotile.workflows.serve.settings import ServeSettings
from histotile.workflows.slide_options import (
    EvaluateOptions,
    ExplainOptions,
    HeatmapOptions,
    PredictOptions,
    QCOptions,
    RunOptions,
    TileOptions,
)
from histotile.workflows.tasks.execution import Execution
from histotile.workflows.tasks.export import ExportSettings
from histotile.workflows.tasks.image_evaluation import ImageEvaluationSettings
from histotile.workflows.training.task import TrainPlacement
from histotile.workflows.watch import WatchSettings

PATHS = ("slides", "inbox", "paths", "model_dir", "out_dir", "predictions_dir")
"""Arguments and required options: the inputs and outputs, which have no default (unless
a field holds one: explain's optional --predictions)."""


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
    Command("explain", (ExplainOptions, Execution)),
    Command("watch", (WatchSettings,)),
    Command("serve", (ServeSettings,), {"model_dir": "optional: ServeSettings.model"}),
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


def defaulted(command: Command, name: str) -> bool:
    """Option ``name`` fills a field that has a default (a path that may be left out)."""
    found = owner(command, name)
    if found is None:
        return False
    item = flat_fields(found[0])[found[1]]
    return (item.default is not dataclasses.MISSING
            or item.default_factory is not dataclasses.MISSING)


def params(command: Command) -> list[click.Parameter]:
    return [p for p in cli.commands[command.name].params
            if p.expose_value and p.name not in command.cli_only
            and (p.name not in PATHS or defaulted(command, p.name))]


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
            if (param.name in PATHS and param.name not in command.cli_only
                    and not defaulted(command, param.name)):
                assert param.required, (command.name, param.name)


def test_a_default_typed_in_the_cli_is_found(monkeypatch):
    """The check itself: a click option whose default differs from its field fails."""
    command = COMMANDS[0]
    alpha = next(p for p in cli.commands["run"].params if p.name == "alpha")
    monkeypatch.setattr(alpha, "default", 0.5)
    with pytest.raises(AssertionError, match="--alpha: CLI default 0.5"):
        test_every_cli_default_is_its_dataclass_default(command)


# -- the training and tool commands ----------------------------------------------------

TYPED_COMMANDS = {
    # command: (its dataclasses, first one holding a name wins; its API function)
    "train": ((TrainPlacement, TrainSettings), api.train_model),
    "evaluate-images": ((ImageEvaluationSettings,), api.evaluate_images),
    "export": ((ExportSettings,), api.export_model),
    "demo": ((DemoSettings,), api.run_demo),
    "bench": ((BenchmarkSettings,), api.run_benchmark),
}
"""The commands whose options are typed in one settings dataclass each (``train``: the
placement first, since its ``--workers`` are Dask's, not the DataLoader's)."""

NO_DEFAULT = {"data", "model_dir", "folder", "out_dir", "out_path"}
"""Arguments and required options: the inputs and outputs, which have no default (the
demo's ``--out`` has ``run_demo``'s)."""

SWITCHES = {
    "no_augment": ("train", False, "the same as --augment none"),
    "from_json": ("bench", None, "reprints an earlier run's table; measures nothing"),
}
"""Options that fill no field: the command, their default, and why."""


def _field_default(settings: type, name: str):
    item = {f.name: f for f in dataclasses.fields(settings)}[name]
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return item.default


def _expected(command: str, name: str):
    """Where option ``name`` of ``command`` takes its default from, and that default."""
    classes, function = TYPED_COMMANDS[command]
    for settings in classes:
        if name in {f.name for f in dataclasses.fields(settings)}:
            return f"{settings.__name__}.{name}", _field_default(settings, name)
    parameter = inspect.signature(function).parameters.get(name)
    if parameter is not None and parameter.default is not inspect.Parameter.empty:
        return f"{function.__name__}({name}=)", parameter.default
    if name in SWITCHES and SWITCHES[name][0] == command:
        return "a switch", SWITCHES[name][1]
    return None, None


@pytest.mark.parametrize("command", sorted(TYPED_COMMANDS))
def test_training_and_tool_defaults_are_their_dataclass_defaults(command):
    wrong = []
    context = click.Context(cli.commands[command])
    for param in cli.commands[command].params:
        if not param.expose_value:
            continue  # --config
        where, default = _expected(command, param.name)
        given = param.get_default(context)  # what the command gets (a bare flag: False)
        if where is None:
            if param.name not in NO_DEFAULT or (given is not None and not param.required):
                wrong.append(f"--{param.name}: fills no field (add one, or list it)")
            continue
        if given != default and not (isinstance(default, Path) and given == str(default)):
            wrong.append(f"--{param.name}: CLI default {given!r}, {where} {default!r}")
    assert not wrong, "\n".join(wrong)


def test_a_default_typed_in_a_training_option_is_found(monkeypatch):
    """The check itself: a click option whose default differs from its field fails."""
    patience = next(p for p in cli.commands["train"].params if p.name == "patience")
    monkeypatch.setattr(patience, "default", 7)
    with pytest.raises(AssertionError, match="--patience: CLI default 7, "
                                             "TrainSettings.patience 5"):
        test_training_and_tool_defaults_are_their_dataclass_defaults("train")
