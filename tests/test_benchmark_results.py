"""The per-stage benchmarks' results files (``benchmarks/_results.py``, their ``--out``):
the date, the machine and the load before and after are recorded with the figures, and a
results file is never replaced. No benchmark runs here; the load average is the test's."""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import datetime
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def results(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("_results", ROOT / "benchmarks" / "_results.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    loads = iter([(1.5, 2.5, 3.5), (4.25, 5.0, 6.0)])  # before, then after
    monkeypatch.setattr(module.os, "getloadavg", lambda: next(loads))
    return module


def test_a_results_file_records_the_date_machine_and_load_with_the_figures(results, tmp_path):
    out = tmp_path / "2026-12-06-x-cli.json"
    start = results.started(out)
    assert not out.exists()  # nothing is written before the run has its figures
    assert results.write(out, "cli", start, {"rows": [{"ratio": 1.0}]}) == out
    record = json.loads(out.read_text())
    assert record["benchmark"] == "cli" and record["rows"] == [{"ratio": 1.0}]
    assert datetime.fromisoformat(record["date"]).tzinfo is not None
    machine = record["machine"]
    assert machine["load_before"] == [1.5, 2.5, 3.5]
    assert machine["load_after"] == [4.25, 5.0, 6.0]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["system"]
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


def test_a_results_file_is_never_replaced(results, tmp_path):
    kept = tmp_path / "kept.json"
    kept.write_text('{"benchmark": "cli"}\n')
    with pytest.raises(results.ResultsExistError, match="kept.json: a results file already"):
        results.started(kept)  # refused before the run starts
    late = tmp_path / "late.json"
    start = results.started(late)
    late.write_text('{"benchmark": "stain"}\n')  # another run wrote it meanwhile
    with pytest.raises(results.ResultsExistError, match="late.json: a results file already"):
        results.write(late, "cli", start, {"rows": []})
    assert kept.read_text() == '{"benchmark": "cli"}\n'
    assert late.read_text() == '{"benchmark": "stain"}\n'


def test_without_out_a_benchmark_only_prints(results, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert results.started(None) is None
    assert results.write(None, "cli", None, {"rows": []}) is None
    assert list(tmp_path.iterdir()) == []
