"""Each default is written once, as a dataclass field: every option of the training and
tool commands has the default of the settings field it fills (or, for the paths and
switches that are no setting, of its API function's parameter). A click option that types
its own default fails here, and so does one whose default disagrees with its field."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import click
import pytest

from histotile.models.settings import TrainSettings
from histotile.workflows import api
from histotile.workflows.benchmark.suite import BenchmarkSettings
from histotile.workflows.cli.main import cli
from histotile.workflows.demo import DemoSettings
from histotile.workflows.tasks.export import ExportSettings
from histotile.workflows.tasks.image_evaluation import ImageEvaluationSettings
from histotile.workflows.training.task import TrainPlacement

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
