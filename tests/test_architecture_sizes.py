"""Module and function sizes inside ``histotile/``: no module over 400 lines, no function
over 80 (the measures of issue 13: one job per module, functions a reader can hold)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "histotile"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(name, lines) of every function or method in ``source`` longer than ``limit`` lines
    (from ``def`` to its last line, docstring included, decorators not)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found.append((node.name, lines))
    return found


def test_the_checker_finds_a_long_function_and_a_long_method():
    body = "".join(f"    x{i} = {i}\n" for i in range(80))  # 81 lines with the def
    source = ("def long():\n" + body + "class A:\n    def method(self):\n"
              + body.replace("    ", "        "))
    assert {name for name, _ in long_functions(source)} == {"long", "method"}
    assert long_functions("def short():\n    return 1\n") == []


def test_no_module_is_longer_than_400_lines():
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"


def test_no_function_is_longer_than_80_lines():
    long = {f"{path.relative_to(PACKAGE)}:{name}": n for path in PACKAGE.rglob("*.py")
            for name, n in long_functions(path.read_text(encoding="utf-8"))}
    assert long == {}, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
