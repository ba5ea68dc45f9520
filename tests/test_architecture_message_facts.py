"""Facts in fields, never in message text (issue 24): no code in ``histotile/`` decides
anything by searching the wording of an error, a warning or a note. An error's kind is its
exception class (or a field of it), a warning's its category, an assumed class role's its
:class:`~histotile.class_roles.Role`; the sentences are for people and may be reworded
without changing what the code does.

The check walks every module's syntax tree (:func:`text_searches`) and finds:

- ``in`` / ``not in`` / ``==`` / ``!=`` with a message on one side: ``str(error)``,
  ``error.args[...]``, ``str(warning.message)``, ``note.message`` (any name that says error,
  exception or warning, optionally lower-cased or stripped);
- a phrase (a string literal with a space in it) searched ``in`` anything: the wording of a
  sentence, whatever the variable holding it is called;
- ``.startswith`` / ``.endswith`` / ``.find`` / ``.index`` on a message, and ``re.search``,
  ``re.match``, ``re.fullmatch``, ``re.findall`` (or a compiled pattern's) over one.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "histotile"

# A name that holds an exception or a warning (or the last part of a dotted one).
_MESSAGE_NAME = re.compile(r"(^|_)(e|ex|exc|err|error|errors|exception|exceptions|failure"
                           r"|w|warning|warnings|caught)$")
_SEARCH_METHODS = {"startswith", "endswith", "find", "rfind", "index", "rindex"}
_REGEX_FUNCTIONS = {"search", "match", "fullmatch", "findall", "finditer"}
_TEXT_METHODS = {"lower", "upper", "casefold", "strip", "lstrip", "rstrip"}

# Phrases searched in text that is not histotile's own fact: (module, phrase) -> why.
ALLOWED = {
    ("models/mxnet_backend.py", "Check failed"):
        "MXNet's errors are a C++ traceback as text: this picks the line to show the user",
    ("workflows/benchmark/stage_networks.py", " INFO tiles "):
        "the benchmark quotes the train log's tile-cache sentence in its table",
}


def _last_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_message(node: ast.AST) -> bool:
    """Whether ``node`` is the text of an error or warning: ``str(error)``,
    ``error.args``/``error.args[0]``, ``warning.message``, ``str(w.message)``, each
    possibly lower-cased or stripped."""
    while (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
           and node.func.attr in _TEXT_METHODS):
        node = node.func.value
    if isinstance(node, ast.Subscript):
        node = node.value
    if isinstance(node, ast.Attribute) and node.attr in ("args", "message", "msg"):
        return True
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "str" and len(node.args) == 1):
        inner = node.args[0]
        if isinstance(inner, ast.Attribute) and inner.attr in ("message", "msg", "args"):
            return True
        name = _last_name(inner)
        return name is not None and bool(_MESSAGE_NAME.search(name))
    return False


def _is_phrase(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and " " in node.value


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _compare_search(node: ast.Compare) -> str | None:
    """The phrase searched (or ``"message"``) when ``node`` tests wording."""
    left = node.left
    for op, right in zip(node.ops, node.comparators):
        if isinstance(op, (ast.In, ast.NotIn)):
            if _is_message(right) or (_is_message(left) and _is_text(right)):
                return "message"
            if _is_phrase(left):
                return str(left.value)  # type: ignore[attr-defined]
        if isinstance(op, (ast.Eq, ast.NotEq)) and (
                (_is_message(left) and _is_text(right))
                or (_is_text(left) and _is_message(right))):
            return "message"
        left = right
    return None


def _call_search(node: ast.Call) -> bool:
    func = node.func
    if not isinstance(func, ast.Attribute):
        return False
    if func.attr in _SEARCH_METHODS and _is_message(func.value):
        return True
    return func.attr in _REGEX_FUNCTIONS and any(_is_message(a) for a in node.args)


def text_searches(source: str) -> list[tuple[int, str]]:
    """(line, what) of every place in ``source`` that searches message wording; ``what``
    is the phrase searched, or ``"message"`` for a search over an error's or warning's
    text."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare) and (what := _compare_search(node)) is not None:
            found.append((node.lineno, what))
        elif isinstance(node, ast.Call) and _call_search(node):
            found.append((node.lineno, "message"))
    return found


def test_the_checker_finds_each_way_of_reading_a_message():
    cases = [
        'if "no space" in str(error): pass',
        'if "no space" not in str(exc).lower(): pass',
        'ok = "timed out" in err.args[0]',
        'ok = "pickle" in str(w.message)',
        'ok = any("default class" in n for n in roles.assumed)',
        'ok = [n for n in notes if "positive class" not in n]',
        'ok = str(error) == "stopped"',
        'ok = str(error).startswith("rank")',
        'ok = error.args[0].endswith("(--strict)")',
        'ok = re.search(r"rank \\d+", str(error))',
        'ok = PATTERN.match(str(warning.message))',
    ]
    for case in cases:
        assert len(text_searches(case)) == 1, case


def test_the_checker_leaves_keys_types_and_formatting_alone():
    cases = [
        'ok = "tiling" in info',
        'ok = "WORLD_SIZE" not in os.environ',
        'ok = isinstance(error, ConfigError) and error.kind is Kind.MISSING',
        'ok = issubclass(w.category, AnnotationWarning)',
        'text = f"stopped ({str(error).splitlines()[0]})"',
        'ok = str(device).startswith("cuda")',
        'ok = message not in found',
        'ok = roles.assumes(Role.DEFAULT)',
    ]
    for case in cases:
        assert text_searches(case) == [], case


def test_no_code_branches_on_the_wording_of_a_message():
    found, allowed_seen = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for line, what in text_searches(path.read_text(encoding="utf-8")):
            if (module, what) in ALLOWED:
                allowed_seen.add((module, what))
            else:
                found.append(f"{module}:{line}: {what!r}")
    assert found == [], ("code searches the wording of a message; give the fact a field or "
                         "a type (an exception subclass, a warning category, an enum) and "
                         "branch on that: " + "; ".join(found))
    assert allowed_seen == set(ALLOWED), f"stale exemptions: {set(ALLOWED) - allowed_seen}"
