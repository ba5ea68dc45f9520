"""``histotile/__init__.pyi`` names exactly the lazy exports of ``histotile/__init__.py``,
each from the module (and under the name) that ``_EXPORTS`` loads it from, so editors and
type checkers see what ``import histotile as ht; ht.<name>`` gives at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import histotile

STUB = Path(histotile.__file__).with_name("__init__.pyi")


def stub_exports(source: str) -> dict[str, tuple[str, str]]:
    """name -> (module, attribute) of every histotile import in a stub's source."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("histotile"):
            for alias in node.names:
                found[alias.asname or alias.name] = (str(node.module), alias.name)
    return found


def stub_functions(source: str) -> set[str]:
    return {node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}


def stub_all(source: str) -> list[str]:
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "__all__"):
            return list(ast.literal_eval(node.value))
    raise AssertionError("the stub has no __all__ list")


def lazy_exports() -> dict[str, tuple[str, str]]:
    return {name: target if isinstance(target, tuple) else (target, name)
            for name, target in histotile._EXPORTS.items()}


def test_the_stub_names_each_lazy_export_from_its_module():
    source = STUB.read_text(encoding="utf-8")
    assert stub_exports(source) == lazy_exports(), (
        "histotile/__init__.pyi and _EXPORTS in histotile/__init__.py differ: add, move or "
        "remove the stub's `from MODULE import NAME as NAME` line with the export")


def test_the_stub_lists_the_same_public_names():
    source = STUB.read_text(encoding="utf-8")
    assert stub_all(source) == histotile.__all__
    eager = {n for n in histotile.__all__ if n not in histotile._EXPORTS and n != "__version__"}
    assert eager <= stub_functions(source)


def test_a_new_export_without_a_stub_line_is_found(monkeypatch):
    monkeypatch.setitem(histotile._EXPORTS, "new_thing", "histotile.tiling")
    assert stub_exports(STUB.read_text(encoding="utf-8")) != lazy_exports()
