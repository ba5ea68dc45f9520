"""The benchmark pages are made from ``benchmarks/results/*.json`` (scripts/docs_benchmarks.py,
run by the docs build): every results file has its page, every row its date, machine and
load, and a configuration the ablation adds to a results file shows up with its own start."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location(
        "docs_benchmarks", ROOT / "scripts" / "docs_benchmarks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _rows(page: str) -> list[list[str]]:
    """The body rows of a page's tables, as cells (a run's first cell holds its file,
    date, machine and load, separated by <br>; its other rows leave that cell blank)."""
    lines = page.splitlines()
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for i, line in enumerate(lines)
            if line.startswith("|") and not line.startswith("|---")
            and not (i + 1 < len(lines) and lines[i + 1].startswith("|---"))]


def test_every_results_file_is_on_its_page_with_date_machine_and_load(generator):
    pages = generator.pages(RESULTS, demo=Path("/nonexistent"))
    files = sorted(path.stem for path in RESULTS.glob("*.json"))
    assert files, "no results files"
    for stem in files:
        holding = [name for name, text in pages.items() if f"`{stem}.json`" in text]
        assert len(holding) == 1, f"{stem}.json is on {holding} (one page expected)"
        rows = [row for row in _rows(pages[holding[0]])
                if row[0].split("<br>")[0] == f"`{stem}`"]
        assert len(rows) == 1, f"{stem}.json has {len(rows)} first rows on {holding[0]}"
        _name, date, machine, load = rows[0][0].split("<br>")
        assert date[:4].isdigit() and machine and load.startswith("load "), rows[0][0]
        assert any(cell for cell in rows[0][1:]), f"{stem}: a row without figures"


def test_the_validity_page_follows_the_results_file_as_the_ablation_extends_it(
        generator, tmp_path):
    newest = sorted(RESULTS.glob("*-validity.json"))[-1]
    results = json.loads(newest.read_text())
    defaults = results["configurations"]["defaults"]
    added = json.loads(json.dumps(defaults))
    for run in added["runs"]:
        run["operating_point"]["balanced_accuracy"] -= 0.02
    added["held_out"]["balanced_accuracy"] = 0.4321
    added |= {"flags": ["--balance", "none"], "started": "2026-12-06T16:05:00+00:00",
              "load_before": [7.25, 6.0, 5.0]}
    results["configurations"]["no class balance"] = added
    (tmp_path / newest.name).write_text(json.dumps(results))
    page = generator.pages(tmp_path, demo=Path("/nonexistent"))["benchmarks/validity.md"]
    row = next(row for row in _rows(page) if row[1].startswith("no class balance"))
    assert row[1] == "no class balance<br>2026-12-06 16:05<br>load 7.2"
    assert row[3].startswith("0.432 ± ") and row[0] == ""  # the run's cell: on its first row
    assert row[8].startswith("-0.020, +0.000"), row[8]  # against the defaults' seeds
    held = defaults["held_out"]["balanced_accuracy"]
    assert f"{held:.3f} ± " in page  # the defaults, from the file


def test_a_run_that_records_no_date_or_load_says_so(generator, tmp_path):
    source = RESULTS / "2026-11-29-2core-cpu-training-quick-loaded.json"
    data = json.loads(source.read_text())
    del data["load_before"]
    (tmp_path / "2026-01-02-x-training.json").write_text(json.dumps(data))
    row = _rows(generator.pages(tmp_path, demo=Path("/nonexistent"))
                ["benchmarks/training.md"])[0]
    assert row[0].split("<br>")[1:] == ["2026-01-02 (file name)", "2 cores",
                                        "load not recorded"]


def test_a_results_file_of_an_unknown_kind_stops_the_build(generator, tmp_path):
    shutil.copy(RESULTS / "2026-12-06-2core-cpu-watch.json", tmp_path)
    (tmp_path / "2026-12-07-new.json").write_text(json.dumps({"figures": {"x": 1}}))
    with pytest.raises(ValueError, match="2026-12-07-new.json: a results file no benchmark"):
        generator.pages(tmp_path, demo=Path("/nonexistent"))


def test_the_demo_page_shows_the_demo_summary_it_is_given(generator, tmp_path):
    committed = json.loads(generator.DEMO_SUMMARY.read_text())
    committed["figures"]["test"]["roc_auc"] = 0.4567
    committed["figures"]["cross_validation"]["accuracy"] = {"mean": 0.7654, "std": 0.0321}
    summary = tmp_path / "demo-summary.json"
    summary.write_text(json.dumps(committed))
    page = generator.pages(RESULTS, demo=summary)["benchmarks/demo.md"]
    assert "| AUC | " in page and "| 0.457 |" in page
    assert "| accuracy | 0.765 ± 0.032 |" in page
    assert f"| {committed['figures']['seconds']:.1f} |" in page
    assert committed["date"].replace("T", " ")[:16] in page


def test_a_file_that_names_its_benchmark_is_never_taken_for_another_by_its_shape(generator):
    cli = json.loads((RESULTS / "2026-12-06-2core-cpu-cli.json").read_text())
    # The keys by which older results files (written before files named their benchmark)
    # are known: a per-stage file may well hold some of them too.
    for keys in ({"tiles": {}, "size": 1}, {"measurements": {}}, {"results": {}, "folds": 2},
                 {"image_mb": 1}, {"ceiling_gflops": 1.0}, {"watch_over_run_throughput": 1}):
        assert generator.kind(cli | keys).slug == "cli", keys
    assert generator.kind(cli | {"benchmark": "no such page"}) is None


def test_the_tiling_and_heatmap_pages_show_each_step_against_its_same_run_baseline(
        generator, tmp_path):
    """The two per-stage kinds that may have no committed run yet, in the shape
    ``bench_tiling.py`` and ``bench_heatmap.py`` write (``benchmarks/_results.py``)."""
    start = json.loads((RESULTS / "2026-12-06-2core-cpu-cli.json").read_text())
    common = {"date": start["date"], "machine": start["machine"]}
    tiling = common | {"benchmark": "tiling", "slide_px": [100000, 50000], "tile": 128,
                       "workers": 2, "rows": [
                           {"step": "baseline: reads", "baseline": True, "seconds": 20.0,
                            "tiles_per_s": 4000.0, "ratio": 1.0, "peak_rss_largest_mib": 300,
                            "peak_rss_all_mib": 900},
                           {"step": "grid", "seconds": 0.5, "ratio": 0.025},
                           {"step": "whole stage", "seconds": 27.0, "tiles_per_s": 2963.0,
                            "ratio": 1.35, "peak_rss_largest_mib": 310,
                            "peak_rss_all_mib": 950}]}
    heatmap = common | {"benchmark": "heatmap", "slide": "s.tif", "tissue_tiles": 95856,
                        "rows": [
                            {"step": "baseline: read", "baseline": True, "seconds": 130.0,
                             "ratio": 1.0, "peak_rss_mib": 680},
                            {"step": "predict", "seconds": 300.0, "ratio": 2.31,
                             "peak_rss_mib": 1500, "classified": 2000, "extrapolated": True},
                            {"step": "heatmap TIFF and preview", "seconds": 107.0,
                             "ratio": 0.82, "peak_rss_mib": 1195}]}
    (tmp_path / "2026-12-06-x-tiling.json").write_text(json.dumps(tiling))
    (tmp_path / "2026-12-06-x-heatmap.json").write_text(json.dumps(heatmap))
    pages = generator.pages(tmp_path, demo=Path("/nonexistent"))
    rows = _rows(pages["benchmarks/tiling.md"])
    assert [(row[2], row[5]) for row in rows] == [
        ("baseline: reads", "1.00x"), ("grid", "0.025x"), ("whole stage", "1.35x")]
    assert rows[0][0].startswith("`2026-12-06-x-tiling`") and rows[2][6] == "310, 950"
    rows = _rows(pages["benchmarks/heatmap.md"])
    assert [(row[2], row[4]) for row in rows] == [
        ("baseline: read", "1.00x"), ("predict (extrapolated from 2,000 tiles)", "2.31x"),
        ("heatmap TIFF and preview", "0.82x")]
