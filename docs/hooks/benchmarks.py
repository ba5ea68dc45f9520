"""MkDocs hook: the benchmark pages, generated at build time from ``benchmarks/results/*.json``
(and the demo's committed summary) by ``scripts/docs_benchmarks.py``; never typed, never
stored in ``docs/``. ``mkdocs serve`` rebuilds them when a results file changes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "docs_benchmarks", ROOT / "scripts" / "docs_benchmarks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def on_files(files, config):
    for name, text in _generator().pages().items():
        if files.get_file_from_path(name) is not None:
            raise ValueError(f"docs/{name}: a typed page where a benchmark page is generated "
                             "(delete it: scripts/docs_benchmarks.py makes it)")
        files.append(File.generated(config, name, content=text))
    return files


def on_serve(server, config, builder):
    server.watch(str(ROOT / "benchmarks" / "results"))
    for script in ("docs_benchmarks.py", "docs_benchmark_runs.py", "docs_benchmark_tables.py"):
        server.watch(str(ROOT / "scripts" / script))
    return server
