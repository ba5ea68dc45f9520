"""ARCHITECTURE.md names every module under histotile/, in its package's section, and names
none that is gone: a module added without its line, or removed with its line left, fails.

The form it checks: a heading ``### `histotile/PACKAGE/` ...`` per package, under which
each module is named as ``NAME.py`` in backticks (``__init__.py`` only when it does more
than gather the package's names)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "histotile"
SECTION = re.compile(r"^### `histotile/((?:[\w]+/)*)`", re.M)
NAMED = re.compile(r"`(\w+\.py)`")


def sections(text: str) -> dict[str, set[str]]:
    """Package folder (``""``, ``"tiling/"``...) -> the module files its section names."""
    found: dict[str, set[str]] = {}
    marks = list(SECTION.finditer(text))
    for mark, following in zip(marks, marks[1:] + [None]):
        end = following.start() if following else len(text)
        body = text[mark.end():end].split("\n## ", 1)[0]  # a section ends at the next ##
        found.setdefault(mark.group(1), set()).update(NAMED.findall(body))
    return found


def modules(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Package folder -> its module files (``__init__.py`` left out)."""
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        folder = path.parent.relative_to(root).as_posix()
        folder = "" if folder == "." else folder + "/"
        if path.name != "__init__.py" and "static" not in path.parts:
            found.setdefault(folder, set()).add(path.name)
    return found


def unnamed_and_stale(text: str, root: Path = PACKAGE) -> tuple[list[str], list[str]]:
    """(modules ARCHITECTURE.md does not name, names it gives that are no module)."""
    named, present = sections(text), modules(root)
    unnamed = sorted(f"histotile/{folder}{name}" for folder, names in present.items()
                     for name in names - named.get(folder, set()))
    stale = sorted(f"histotile/{folder}{name}" for folder, names in named.items()
                   for name in names - present.get(folder, set())
                   if not (name == "__init__.py" and (root / folder / name).is_file()))
    return unnamed, stale


def test_architecture_names_every_module_and_no_missing_one():
    unnamed, stale = unnamed_and_stale((ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    assert not unnamed, ("modules ARCHITECTURE.md does not name (a line each, with its one "
                         "job, under its package's ### heading): " + ", ".join(unnamed))
    assert not stale, "ARCHITECTURE.md names modules that do not exist: " + ", ".join(stale)


def test_a_module_added_without_its_line_is_found(tmp_path):
    (tmp_path / "tiling").mkdir()
    for name in ("__init__.py", "plan.py", "grid.py"):
        (tmp_path / "tiling" / name).write_text("")
    (tmp_path / "errors.py").write_text("")
    text = ("### `histotile/` shared leaves\n\n- `errors.py`: errors\n\n"
            "### `histotile/tiling/` tiles\n\n- `plan.py`: the plan; `gone.py`: removed\n\n"
            "## How data flows\n\n`grid.py` is named here, outside its section\n")
    assert unnamed_and_stale(text, tmp_path) == (["histotile/tiling/grid.py"],
                                                 ["histotile/tiling/gone.py"])
