"""histotile's import graph, computed from the source with ast: no cycle inside the package,
no module importing another's private (underscore-prefixed) names, and the stage order of
ARCHITECTURE.md (wsi -> tiling -> models -> postprocess -> workflows: no stage imports a
later one; the shared leaves at the top import no stage).

Every import counts, function-level (lazy) ones included: a lazy import still ties the two
modules together, and a cycle means neither can be understood or changed alone. A private
name used from another module is a public one in disguise: it gets a public name where it
belongs."""

from __future__ import annotations

import ast
from pathlib import Path

import histotile

ROOT = Path(histotile.__file__).parent


def _module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement may refer to (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the histotile modules it imports (anywhere in its source)."""
    modules = _module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            for target in _imported(node, name, path.name == "__init__.py"):
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def private_imports(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """``"from X import _name"`` for each underscore-prefixed (not dunder) name that ``tree``
    imports from another histotile module (relative imports resolved)."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _imported(node, module, is_package)[0]
        if not source.startswith("histotile") or source == module:
            continue
        found += [f"from {source} import {alias.name}" for alias in node.names
                  if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "histotile.wsi" in graph and "histotile.tiling.extract" in graph
    assert graph["histotile.tiling.extract"], "tiling.extract imports other histotile modules"


def test_histotile_has_no_import_cycle():
    found = cycles(import_graph())
    assert found == [], "import cycles inside histotile/: " + "; ".join(
        " <-> ".join(component) for component in found)


def test_the_private_import_finder_finds_absolute_lazy_and_relative_imports():
    source = ("from histotile.tiling.artefacts import FALLBACK_MPP, _frame\n"
              "def f():\n    from histotile.workflows.tasks.batch import _hidden\n"
              "from .batch import _run\n"
              "from histotile.tiling._boxes import box_sums\n"
              "from histotile import __version__\n"
              "from os.path import _get_sep\n")
    found = private_imports(ast.parse(source), "histotile.workflows.tasks.qc", False)
    assert sorted(found) == ["from histotile.tiling.artefacts import _frame",
                             "from histotile.workflows.tasks.batch import _hidden",
                             "from histotile.workflows.tasks.batch import _run"]


def test_no_module_imports_another_modules_private_names():
    found = {name: private for name, path in _module_names().items()
             if (private := private_imports(ast.parse(path.read_text(encoding="utf-8")), name,
                                            path.name == "__init__.py"))}
    assert found == {}, ("private names imported across histotile modules (give them a "
                         f"public name where they are defined): {found}")


STAGES = ("wsi", "tiling", "models", "postprocess", "workflows")
FRONT_DOORS = {"histotile", "histotile.__main__"}  # the lazy public API and python -m


def stage(module: str) -> int | None:
    """The stage a module belongs to (its index in :data:`STAGES`); None for the shared
    leaves at the top of the package."""
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else None


def against_the_order(graph: dict[str, set[str]]) -> list[str]:
    """Every import against the stage order, as 'importer (its stage) imports imported
    (its stage)'."""
    found = []
    for module in sorted(set(graph) - FRONT_DOORS):
        own = stage(module)
        for target in sorted(graph[module]):
            theirs = stage(target)
            if theirs is not None and (own is None or theirs > own):
                found.append(f"{module} ({'a shared leaf' if own is None else STAGES[own]}) "
                             f"imports {target} ({STAGES[theirs]})")
    return found


def test_the_stage_rule_finds_imports_of_later_stages():
    graph = {"histotile.tiling.plan": {"histotile.models.specs", "histotile.wsi.slide",
                                       "histotile.errors"},
             "histotile.models.specs": {"histotile.errors"},
             "histotile.postprocess.maps": {"histotile.workflows.options"},
             "histotile.errors": {"histotile.wsi.slide"},
             "histotile.wsi.slide": set(), "histotile.workflows.options": set(),
             "histotile": {"histotile.workflows.api"}}
    assert against_the_order(graph) == [
        "histotile.errors (a shared leaf) imports histotile.wsi.slide (wsi)",
        "histotile.postprocess.maps (postprocess) imports histotile.workflows.options "
        "(workflows)",
        "histotile.tiling.plan (tiling) imports histotile.models.specs (models)"]


def test_no_stage_imports_a_later_stage():
    found = against_the_order(import_graph())
    assert found == [], ("imports against the stage order of ARCHITECTURE.md (move the "
                         "code to the stage that owns it, or pass the value in): "
                         + "; ".join(found))
