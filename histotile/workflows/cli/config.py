"""Configuration files (YAML, JSON or TOML) whose keys are the command-line option
names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histotile.errors import ConfigError


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yml``/``.yaml``), JSON (``.json``) or TOML (``.toml``) file into a
    dict.

    Keys may use dashes or underscores (``tile-size`` or ``tile_size``); a table/mapping
    named after a subcommand (``[tile]``, ``run:``) holds options for that command only.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a text file in UTF-8 ({error.reason} at byte "
                          f"{error.start}); save the configuration as UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the configuration ({error.strerror})"
                          ) from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yml", ".yaml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix.lower() == ".json":
            import json

            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown configuration format "
                              "(use a .yaml, .yml, .json or .toml file)")
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - yaml and tomllib raise their own types
        raise ConfigError(f"{path}: cannot parse the configuration: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping of option names")
    names = [k for k in data if not isinstance(k, str)] + [
        k for v in data.values() if isinstance(v, dict) for k in v if not isinstance(k, str)]
    if names:
        raise ConfigError(f"{path}: {names[0]!r} is not an option name (option names are "
                          "text, e.g. tile-size)")
    return data


def options_for(config: dict[str, Any], command: str) -> dict[str, Any]:
    """The options of ``config`` that apply to ``command``: top-level keys, overridden by
    a section named after the command. Keys are normalised to Python names."""
    merged: dict[str, Any] = {}
    for key, value in config.items():
        if not isinstance(value, dict):
            merged[key.replace("-", "_")] = value
    section = config.get(command)
    if isinstance(section, dict):
        merged.update({k.replace("-", "_"): v for k, v in section.items()})
    return merged
