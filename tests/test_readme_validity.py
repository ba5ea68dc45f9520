"""The README's table of held-out figures is the newest ``bench_validity`` result, as the
benchmark writes it: no typed figure, no stale one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_validity", ROOT / "benchmarks" / "bench_validity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_holds_the_newest_validity_results():
    bench = _bench()
    results = sorted((ROOT / "benchmarks" / "results").glob("*-validity.json"))
    assert results, "no benchmarks/results/*-validity.json: run bench_validity.py --readme"
    newest = results[-1]
    block = bench.readme_block(json.loads(newest.read_text()),
                               newest.relative_to(ROOT).as_posix())
    assert block in (ROOT / "README.md").read_text(), (
        f"README's validity table is not {newest.name}'s: run "
        "benchmarks/bench_validity.py --readme")


def test_the_block_is_the_table_of_its_results(tmp_path):
    bench = _bench()
    results = {"table": "| a | b |", "started": "2026-12-06T14:00:00+00:00",
               "machine": {"cpus": 2, "load_before": [1.5, 1.0, 0.5]},
               "data_patches": 5088}
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench.BEGIN}\nold figures\n{bench.END}\nrest\n")
    bench.write_readme(results, "benchmarks/results/x.json", readme)
    text = readme.read_text()
    assert "old figures" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert "| a | b |" in text and "2026-12-06, 2 CPU cores, load 1.5" in text
