"""MkDocs hook: the errors page lists every error histotile raises on purpose.

The source under ``histotile/`` is read (not imported): every class that derives from
``HistotileError`` is an error a user can meet, and every ``raise`` of one of them is a
row: its message with the run-time parts shown as ``<name>``, and what to do (the
message's closing bracket, or a slide error's hint). A new ``raise`` appears at the next
build; nothing on the page is typed by hand but the introduction.
"""

from __future__ import annotations

import ast
import html
from dataclasses import dataclass
from pathlib import Path

MARKER = "<!-- generated: errors -->"
ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "histotile"
BASE = "HistotileError"
# Errors whose arguments are (path, cause, hint): the message is "path: cause (hint)".
SLIDE_BASE = "SlideError"


# The first word of "problem: what to do" when the advice follows a colon.
ADVICE = {"add", "check", "choose", "export", "give", "install", "lower", "pass", "pip",
          "rename", "run", "set", "tile", "use"}


@dataclass(frozen=True)
class Raised:
    """One ``raise`` of a histotile error."""

    error: str  # the class raised
    problem: str  # the message without its closing "(what to do)"
    fix: str  # what to do; "" when the message says none
    where: str  # "histotile/x/y.py:LINE"


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(encoding="utf-8"), str(path))
            for path in sorted(PACKAGE.rglob("*.py"))}


def error_classes(trees: dict[Path, ast.Module]) -> dict[str, ast.ClassDef]:
    """Every class deriving (through any chain) from ``HistotileError``, by name."""
    classes = {node.name: node for tree in trees.values() for node in ast.walk(tree)
               if isinstance(node, ast.ClassDef)}
    found = {BASE: classes[BASE]}
    grown = True
    while grown:
        grown = False
        for name, node in classes.items():
            if name not in found and any(_name(b) in found for b in node.bases):
                found[name] = node
                grown = True
    return found


def _descends(name: str, ancestor: str, classes: dict[str, ast.ClassDef]) -> bool:
    while name != ancestor:
        bases = [_name(b) for b in classes[name].bases if _name(b) in classes]
        if not bases:
            return False
        name = bases[0]
    return True


def _placeholder(node: ast.AST) -> str:
    """How a run-time part of a message is shown: ``<path>``, ``<level>``, ``<...>``."""
    while isinstance(node, ast.Subscript):
        node = node.value
    name = _name(node)
    return f"<{name.strip('_')}>" if name else "<...>"


def text(node: ast.AST | None) -> str | None:
    """A message expression as text, or None when it is not built from strings here."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else
                       _placeholder(part.value) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = text(node.left), text(node.right)
        return None if left is None or right is None else left + right
    if node is not None and not isinstance(node, ast.Constant):
        return _placeholder(node)
    return None


def _split(message: str) -> tuple[str, str]:
    """(problem, what to do): the closing bracket of "file: problem (what to do)", else
    what follows the last "; " of "file: problem; what to do"."""
    message = message.strip()
    if message.endswith(")"):
        depth = 0
        for i in range(len(message) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(message[i], 0)
            if depth == 0:
                if i > 0 and message[i - 1] == " ":
                    return message[:i].rstrip(), message[i + 1:-1]
                break
    problem, _, fix = message.rpartition("; ")
    if problem:
        return problem, fix
    problem, _, fix = message.rpartition(": ")  # "file: problem: use ..."
    if problem and fix.split(" ", 1)[0] in ADVICE:
        return problem, fix
    return message, ""


def raised() -> list[Raised]:
    """Every raise of a histotile error under ``histotile/``, in file and line order."""
    trees = _trees()
    classes = error_classes(trees)
    rows = []
    for path, tree in trees.items():
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            error = _name(node.exc.func)
            if error not in classes:
                continue
            args = node.exc.args
            if _descends(error, SLIDE_BASE, classes) and len(args) >= 2:
                problem = f"<path>: {text(args[1]) or '<...>'}"
                fix = text(args[2]) if len(args) > 2 else ""
            else:
                built = [a for a in args if isinstance(a, (ast.Constant, ast.JoinedStr, ast.BinOp))]
                message = text(built[0] if built else args[0] if args else None) or ""
                problem, fix = _split(message)
            rows.append(Raised(error, problem, fix or "", f"{where}:{node.lineno}"))
    return sorted(rows, key=lambda r: (r.where.split(":")[0], int(r.where.split(":")[1])))


def _cell(value: str, code: bool = True) -> str:
    """A table cell: the message as code, the advice as escaped plain text."""
    value = " ".join(value.split()).replace("|", "\\|").replace("`", "'")
    if not code:
        return html.escape(value, quote=False).replace("*", "\\*").replace("_", "\\_")
    return f"`{value}`" if value else ""


def markdown() -> str:
    trees = _trees()
    classes = error_classes(trees)
    rows = raised()
    order = sorted(classes, key=lambda n: (n != BASE, not _descends(n, SLIDE_BASE, classes), n))
    lines = [f"{len(rows)} places in the code raise one of these {len(classes)} errors.", ""]
    for name in order:
        mine = [r for r in rows if r.error == name]
        doc = " ".join((ast.get_docstring(classes[name]) or "").split("\n\n")[0].split())
        parents = [_name(b) for b in classes[name].bases]
        lines += [f"## {name}", "", doc.replace(":class:", ""), ""]
        if name != BASE:
            lines += [f"A kind of `{parents[0]}`.", ""]
        if not mine:
            lines += ["Raised through its kinds below, not on its own.", ""]
            continue
        lines += ["| message | what to do | raised in |", "|---|---|---|"]
        lines += [f"| {_cell(r.problem)} | {_cell(r.fix, code=False) or 'see the message'} | "
                  f"`{r.where}` |" for r in mine]
        lines.append("")
    return "\n".join(lines)


def on_page_markdown(text_: str, page, config, files) -> str:
    if MARKER in text_:
        text_ = text_.replace(MARKER, markdown())
    return text_
