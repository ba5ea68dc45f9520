"""MkDocs hook: the configuration and environment pages list what the command line takes.

Read from the click definitions at build time (and the command reference's table of
defaults tidied): the keys a configuration file may set for
each command (its option names; for ``train`` also every training setting without a flag
of its own) and the options that read an environment variable. A new option appears at
the next build.
"""

from __future__ import annotations

import dataclasses
import importlib
import re

import click

CONFIG_MARKER = "<!-- generated: config-keys -->"
ENV_MARKER = "<!-- generated: cli-envvars -->"


def _group() -> click.Group:
    from histotile.workflows.cli.main import cli

    return cli


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)
            and p.expose_value and not p.hidden and p.name not in ("help",)]


def config_keys() -> str:
    from histotile.models.settings import TrainSettings

    group = _group()
    lines = ["| command | keys |", "|---|---|"]
    for name in sorted(group.commands):
        command = group.commands[name]
        keys = [p.name.replace("_", "-") for p in _options(command)]
        lines.append(f"| [`{name}`](cli.md#histotile-{name}) | "
                     + ", ".join(f"`{k}`" for k in keys) + " |")
    flagged = {p.name for p in _options(group.commands["train"])}
    extra = [f.name for f in dataclasses.fields(TrainSettings) if f.name not in flagged]
    lines += ["", "`train` also takes these training settings, which have no flag "
              "(fields of [`TrainSettings`](api.md)):", "",
              ", ".join(f"`{k}`" for k in extra), ""]
    return "\n".join(lines)


def cli_envvars() -> str:
    group = _group()
    rows = []
    for name in sorted(group.commands):
        for option in _options(group.commands[name]):
            names = option.envvar if isinstance(option.envvar, (list, tuple)) else \
                [option.envvar] if option.envvar else []
            rows += [(var, name, option.opts[0], option.help or "") for var in names]
    lines = ["| variable | command | option | meaning |", "|---|---|---|---|"]
    lines += [f"| `{var}` | `{command}` | `{opt}` | {text} |" for var, command, opt, text in rows]
    return "\n".join(lines + [""])


# Prose that names a default reads it from the code, so it cannot drift:
# <!-- default: COMMAND --option --> is that option's click default (which the options'
# dataclasses supply), <!-- value: module:NAME --> a module constant.
_DEFAULT = re.compile(r"<!--\s*default:\s*([\w-]+)\s+(--[\w-]+)\s*-->")
_VALUE = re.compile(r"<!--\s*value:\s*([\w.]+):(\w+)\s*-->")


def option_default(command: str, flag: str) -> str:
    """The default of ``flag`` of ``histotile COMMAND`` as the docs print it."""
    found = _group().commands.get(command)
    if found is None:
        raise ValueError(f"docs: no command {command!r} for a default marker")
    option = next((p for p in _options(found) if flag in p.opts), None)
    if option is None:
        raise ValueError(f"docs: 'histotile {command}' has no option {flag}")
    value = option.get_default(click.Context(found), call=True)
    if value is None or value == ():
        raise ValueError(f"docs: 'histotile {command} {flag}' has no default to print")
    return str(value)


def constant(module: str, name: str) -> str:
    """``module.name`` as the docs print it (large whole numbers with thousands commas)."""
    value = getattr(importlib.import_module(module), name)
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def defaults(text: str) -> str:
    """``text`` with its default and value markers replaced by what the code says."""
    text = _DEFAULT.sub(lambda m: option_default(m[1], m[2]), text)
    return _VALUE.sub(lambda m: constant(m[1], m[2]), text)


def on_page_markdown(text: str, page, config, files) -> str:
    text = defaults(text)
    if CONFIG_MARKER in text:
        text = text.replace(CONFIG_MARKER, config_keys())
    if ENV_MARKER in text:
        text = text.replace(ENV_MARKER, cli_envvars())
    return text


# mkdocs-click prints a flag's unset default as click's sentinel; a flag left out is off.
_UNSET = "<td><code>Sentinel.UNSET</code></td>"


def on_page_content(html: str, page, config, files) -> str:
    return html.replace(_UNSET, "<td><code>off</code></td>")
