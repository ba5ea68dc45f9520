"""What the ``histotile`` commands share: their examples, ``--config`` loading, the
execution options, the error handler, the typed options a command body receives
(:func:`typed`), and running a batch of slides to its report and exit code. The option
groups of the slide commands are in :mod:`histotile.workflows.cli.groups`. Light: click
only (see :mod:`histotile.workflows.cli.main`).
"""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from collections.abc import Callable
from typing import Any

import click

from histotile.errors import ConfigError, HistotileError
from histotile.workflows.cli.settings import gather
from histotile.workflows.options import Options, field_default, renamed
from histotile.workflows.slide_options import SlideOptions
from histotile.workflows.tasks.execution import Execution  # light: no dask until a cluster starts

EXAMPLES = {
    "info": "histotile info slides/*.svs\n  histotile info slides/ --json",
    "qc": ("histotile qc slides/ --out qc/\n"
           "  histotile qc slides/*.svs --out qc/ --pen-fail 0.05 --blur-tiles 0"),
    "tile": ("histotile tile slides/ --annotations marks/ --out tiles/ --tile-size 128 "
             "--magnification 20\n  histotile tile a.svs --out tiles/ --tile-size 225 "
             "--stride 112 --export-images"),
    "train": ("histotile train tiles/manifest.csv --out model/ --model lenet --folds 4\n"
              "  histotile train tiles/manifest.csv --out model/ --model resnet18 --epochs 20\n"
              "  histotile train tiles/manifest.csv --out model/ --workers 2\n"
              "  torchrun --nproc-per-node 2 -m histotile train tiles/manifest.csv --out model/\n"
              "  histotile train patches/ --out model/ --positive-class idc "
              "--operating-point sensitivity=0.9"),
    "evaluate-images": ("histotile evaluate-images model/ breakhis-test/ --out image-eval/\n"
                        "  histotile evaluate-images model/ test/ --out e/ "
                        "--target-sensitivity 0.95"),
    "predict": "histotile predict slides/ --model model/ --out predictions/",
    "heatmap": ("histotile heatmap slides/ --predictions predictions/ --out heatmaps/ "
                "--positive-class tumour --alpha 0.4"),
    "evaluate": ("histotile evaluate slides/ --predictions predictions/ --annotations marks/ "
                 "--out evaluation/"),
    "explain": ("histotile explain slides/ --model model/ --out explanations/ --top 8\n"
                "  histotile explain slides/ --model model/ --predictions results/ "
                "--out explanations/ --positive-class tumour"),
    "run": ("histotile run slides/ --model model/ --out results/\n"
            "  histotile run slides/ --model model/ --out results/ --workers 4\n"
            "  histotile run slides/ --model model/ --out results/ "
            "--scheduler tcp://scheduler:8786"),
    "watch": ("histotile watch inbox/ --model model/ --out results/\n"
              "  histotile watch /mnt/scanner --model model/ --out results/ --settle 60 --poll"),
    "demo": "histotile demo --out histotile-demo",
    "export": ("histotile export model/ --format onnx --out lenet.onnx\n"
               "  histotile export model/ --format torchscript --out lenet.pt\n"
               "  histotile export model/ --format onnx --int8 --out lenet-int8.onnx"),
    "bench": ("histotile bench --quick\n"
              "  histotile bench --work /scratch/histotile-bench --out bench.md\n"
              "  histotile bench --device cuda --train-tiles 20000"),
    "serve": ("histotile serve slides/ --results results/ --model model/\n"
              "  histotile serve slides/ --host 0.0.0.0 --token \"$SECRET\" --public-metrics\n"
              "  histotile serve slides/ --host 0.0.0.0 --port 8080 --token \"$SECRET\""),
}


def examples(command: str) -> str:
    return "\n\n\b\nExamples:\n  " + EXAMPLES[command]


# -- shared options ---------------------------------------------------------------------

def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Eager ``--config``: its values become defaults, so the command line still wins."""
    if value is None:
        return
    from histotile.workflows.cli.config import load_config, options_for

    try:
        options = options_for(load_config(value), ctx.info_name or "")
    except ConfigError as error:
        raise click.BadParameter(str(error)) from None
    known = {p.name for p in ctx.command.params}
    options = flag_keys(ctx.command, options, value)
    options = noted(renamed, options, value, known)  # old names, with a notice
    if ctx.info_name == "train":  # every training setting, flag or not
        import dataclasses

        from histotile.models.settings import TrainSettings

        fields = {f.name for f in dataclasses.fields(TrainSettings)}
        ctx.meta["histotile.train_settings"] = {k: v for k, v in options.items()
                                                if k in fields and k not in known}
        known |= fields
    unknown = sorted(set(options) - known)
    if unknown:
        raise click.BadParameter(f"{value}: unknown option(s) for '{ctx.info_name}': "
                                 f"{', '.join(unknown)}")
    _check_types(ctx, value, options)
    ctx.default_map = {**(ctx.default_map or {}), **options}


def flag_keys(command: click.Command, options: dict[str, Any], path: str) -> dict[str, Any]:
    """``options`` with keys spelled as a flag (``out`` for ``--out``, whose option is
    ``out_dir``) under the option's own name; a key that is itself an option's name
    keeps its meaning. Both spellings of one option is a usage error naming the file."""
    names = {p.name for p in command.params}
    spelled = {opt.lstrip("-").replace("-", "_"): p.name
               for p in command.params if isinstance(p, click.Option)
               for opt in p.opts if opt.startswith("--")}
    result: dict[str, Any] = {}
    for key, given in options.items():
        name = key if key in names else spelled.get(key, key)
        if name in result:
            raise click.BadParameter(f"{path}: {key} and {name} are one option (keep one)")
        result[name] = given
    return result


def _check_types(ctx: click.Context, path: str, options: dict[str, Any]) -> None:
    """Each value of a configuration file converted by its option's type now, so that a
    list, a mapping or an infinity where a number goes is a usage error naming the file
    (click converts defaults later, and some of those values escape its checks)."""
    params = {p.name: p for p in ctx.command.params}
    for name, given in options.items():
        param = params.get(name)
        if param is None or given is None:
            continue
        if isinstance(given, (list, dict)) and not param.multiple:
            raise click.BadParameter(f"{path}: {name} holds a {type(given).__name__}, "
                                     "not one value")
        try:
            param.type_cast_value(ctx, given)
        except click.BadParameter as error:
            raise click.BadParameter(f"{path}: {name}: {error.message}") from None
        except (TypeError, ValueError, OverflowError, AttributeError) as error:
            raise click.BadParameter(f"{path}: {name}: {given!r} is not a valid value "
                                     f"({error})") from None


def noted(function: Callable, *args: Any) -> Any:
    """``function(*args)``, its warnings (an old option name's deprecation) shown on
    stderr as ``warning: ...`` lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args)
    for warning in caught:
        click.secho(f"warning: {warning.message}", fg="yellow", err=True)
    return result


def option_group(*decorators: Callable) -> Callable:
    """Several options applied as one decorator, in the order given."""
    def apply(function: Callable) -> Callable:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


def option(settings: type, name: str, *declarations: str, **attributes: Any) -> Callable:
    """A click option filling field ``name`` of the dataclass ``settings`` (a group's
    field too), whose default it takes: the one place each default is written. The help
    shows it unless it is None or False."""
    default = field_default(settings, name)
    attributes.setdefault("show_default", default is not None and default is not False)
    return click.option(*declarations, name, default=default, **attributes)


config_option = click.option(
    "--config", type=click.Path(dir_okay=False), callback=_load_config, is_eager=True,
    expose_value=False, help="YAML, JSON or TOML file of option values (the command line wins).")
overwrite_option = option(SlideOptions, "overwrite", "--overwrite", is_flag=True,
                          help="Redo slides whose outputs already exist.")

execution_options = option_group(
    option(Execution, "workers", "--workers", type=click.IntRange(1),
           help="Start a local Dask cluster with this many worker processes."),
    option(Execution, "scheduler", "--scheduler",
           help="Address of a running Dask scheduler, e.g. tcp://host:8786."),
    option(Execution, "retries", "--retries", type=click.IntRange(0),
           help="Extra attempts for a slide whose worker crashed."),
    option(Execution, "region_megapixels", "--region-megapixels", type=click.FloatRange(1),
           help="On a cluster, predict slides larger than this in parts of this size on "
                "several workers."),
)
EXECUTION = ("workers", "scheduler", "retries", "region_megapixels")
"""The execution options: the fields of :class:`Execution` the command line sets."""


def execution_from(params: dict[str, Any]) -> Execution:
    """Where a command's slides run, from its execution options (taken out of
    ``params``)."""
    given = {k: params.pop(k) for k in EXECUTION if k in params}
    return Execution(**{k: v for k, v in given.items() if v is not None})


def typed(settings: type[Options]) -> Callable:
    """A command body that receives its options typed: ``options`` (``settings`` built
    by ``from_dict`` from the command's options, old names noted on stderr) and, when it
    takes it, ``execution`` (:func:`execution_from`); its other parameters (the slides,
    folders and command-only options) as given."""
    def decorate(command: Callable) -> Callable:
        takes = inspect.signature(command).parameters
        body = gather(lambda key: key not in takes,
                      lambda values: noted(settings.from_dict, values), "options")(command)
        if "execution" in takes:
            body = gather(EXECUTION.__contains__, execution_from, "execution")(body)
        return body
    return decorate


def handle_errors(function: Callable) -> Callable:
    """Print histotile errors as one clear line (exit 1) instead of a traceback."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ConfigError as error:
            raise click.UsageError(str(error)) from None
        except HistotileError as error:
            click.secho(f"error: {error}", fg="red", err=True)
            sys.exit(1)
    return wrapper


def finish(records, command: str, out_dir: str) -> int:
    from histotile.workflows.cli.console import print_summary
    from histotile.workflows.tasks.report import exit_code, write_report

    try:
        paths = write_report(records, out_dir, name=f"{command}-report")
    except HistotileError:  # e.g. disk full: show what was done, then the error
        print_summary(records, f"histotile {command}")
        raise
    print_summary(records, f"histotile {command}", paths)
    return exit_code(records)
