"""The benchmark suite: ``--quick`` runs end to end and writes its table; the table's
arithmetic (ratios, extrapolations, the scaling fit) is checked on known numbers."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from histotile.errors import HistotileError
from histotile.workflows.benchmark.child import measure
from histotile.workflows.benchmark.tables import duration, scaling_fit, stage_rows
from histotile.workflows.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["tissue detection", "tiling + labelling + white-tile filter",
          "training: 1 LeNet epoch, every kept tile", "prediction: LeNet, every tissue tile",
          "prediction: ResNet18, every tissue tile", "heatmap TIFF + PNG preview"]


def _table_rows(markdown: str) -> dict[str, list[str]]:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in STAGES:
            rows[cells[0]] = cells
    return rows


def _number(cell: str) -> float:
    return float(cell.rstrip("*x").replace(",", ""))


@pytest.mark.slow
def test_quick_benchmark_runs_end_to_end_and_writes_its_table(tmp_path):
    work = tmp_path / "bench"
    # The quick run on a smaller slide (12,000 px a side, 0.14 GP), a 512-tile epoch and
    # 64 ResNet18 tiles: every stage, the scaling and the table, in half the time.
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick",
                           "--work", str(work), "--size", "12000x12000",
                           "--train-tiles", "512", "--resnet-tiles", "64"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    table_path = work / "benchmark-quick.md"
    markdown = table_path.read_text()
    assert markdown in done.stdout  # printed as well as written
    figures = json.loads(table_path.with_suffix(".json").read_text())
    m = figures["measurements"]

    rows = _table_rows(markdown)
    assert list(rows) == STAGES
    # Each ratio is histotile / baseline of the figures in the JSON.
    tiling = rows["tiling + labelling + white-tile filter"]
    assert _number(tiling[1]) == pytest.approx(m["tiling"]["seconds"], abs=0.051)
    assert _number(tiling[2]) == pytest.approx(m["tiling_baseline"]["seconds"], abs=0.051)
    assert _number(tiling[3]) == pytest.approx(
        m["tiling"]["seconds"] / m["tiling_baseline"]["seconds"], abs=0.006)
    heat = rows["heatmap TIFF + PNG preview"]
    assert _number(heat[3]) == pytest.approx(
        m["heatmap"]["seconds"] / m["heatmap_baseline"]["seconds"], abs=0.006)
    # The sampled and extrapolated figures are marked; measured ones are not.
    assert rows["prediction: ResNet18, every tissue tile"][1].endswith("*")
    assert rows["training: 1 LeNet epoch, every kept tile"][1].endswith("*")
    assert not rows["prediction: LeNet, every tissue tile"][1].endswith("*")

    # The stages agree with each other: prediction classifies exactly the tiler's tissue
    # tiles, the heatmap draws them, the sampled epoch is a 512-tile sample of the kept.
    assert m["predict_lenet"]["tiles"] == m["tiling"]["tissue_tiles"] > 1000
    assert m["heatmap"]["tiles"] == m["predict_lenet"]["tiles"]
    assert 450 < m["train"]["tiles"] <= 512 < m["tiling"]["tiles_kept"]
    assert m["tiling"]["labels"]["tumour"] > 0 and m["tiling"]["labels"]["normal"] > 0
    assert m["predict_resnet18"]["tiles"] < m["predict_lenet"]["tiles"]
    assert m["tiling_baseline"]["tiles_read"] >= m["tiling"]["tissue_tiles"]
    for result in m.values():
        assert result["seconds"] > 0 and result["peak_rss_mib"] > 50
    assert (work / "quick" / "heatmap.tif").stat().st_size > 1_000_000
    assert figures["machine"]["network_devices"] == ["cpu"]

    # Scaling: three sizes, 1/16, 1/4 and all of the area; tissue grows with the area.
    scaling = figures["scaling"]
    assert [(r["width"], r["height"]) for r in scaling] == [
        (3000, 3000), (6000, 6000), (12000, 12000)]
    tiles = [r["tissue_tiles"] for r in scaling]
    assert 3.0 < tiles[1] / tiles[0] < 5.0 and 3.0 < tiles[2] / tiles[1] < 5.0
    assert "Tiling stage at three slide sizes" in markdown
    assert re.search(r"R\^2 \d\.\d{4}", markdown)

    # The JSON holds every figure the table needs: re-rendering it gives the same table.
    again = CliRunner().invoke(cli, ["bench", "--from-json",
                                     str(table_path.with_suffix(".json"))])
    assert again.exit_code == 0, again.output
    assert again.output.startswith(markdown)
    assert table_path.read_text() == markdown


def _fake_measurements() -> dict:
    base = {"cpu_seconds": 1.0, "peak_rss_mib": 100.0, "peak_rss_children_mib": 0.0}
    return {
        "tissue": {**base, "seconds": 0.5, "mask_width": 100, "mask_height": 50,
                   "downsample": 32.0, "tissue_area_fraction": 0.3},
        "tissue_baseline": {**base, "seconds": 0.25},
        "tiling": {**base, "seconds": 30.0, "tiles_kept": 10_000, "tissue_tiles": 9_800,
                   "labels": {"normal": 9_000, "tumour": 1_000}},
        "tiling_baseline": {**base, "seconds": 20.0, "grid_tiles": 40_000,
                            "tiles_read": 12_000},
        # 1,000 of the 10,000 kept tiles: 50 s, 40 of them training steps.
        "train": {**base, "seconds": 50.0, "tiles": 1_000, "epoch_seconds": 40.0,
                  "device": "cpu"},
        "train_baseline": {**base, "seconds": 3.0, "rate": 25.0},
        "predict_lenet": {**base, "seconds": 49.0, "tiles": 9_800, "device": "cpu",
                          "batch_size": 64},
        "predict_lenet_baseline": {**base, "seconds": 3.0, "rate": 245.0},
        # 200 tiles in 5 s, then 100 tiles/s.
        "predict_resnet18": {**base, "seconds": 5.0, "tiles": 200, "steady_rate": 100.0,
                             "device": "cpu", "batch_size": 64},
        "predict_resnet18_baseline": {**base, "seconds": 3.0, "rate": 120.0},
        "heatmap": {**base, "seconds": 12.0, "tiles": 9_800, "levels": 8,
                    "megapixels_written": 1000.0, "bytes": 2**20, "tiles_coloured": 4_900},
        "heatmap_baseline": {**base, "seconds": 10.0},
    }


def test_stage_rows_extrapolate_samples_and_divide_by_the_baseline():
    rows = {r["key"]: r for r in stage_rows(_fake_measurements())}
    assert rows["tiling"]["ratio"] == pytest.approx(1.5)
    assert rows["tiling"]["tiles_per_s"] == pytest.approx(12_000 / 30)
    # Training steps scale by kept / sampled tiles; the fixed part (10 s) is paid once.
    assert rows["train"]["seconds"] == pytest.approx(10 + 40 * 10)
    assert rows["train"]["extrapolated"]
    assert rows["train"]["baseline_seconds"] == pytest.approx(10_000 / 25)
    assert rows["predict_lenet"]["baseline_seconds"] == pytest.approx(40.0)
    assert rows["predict_lenet"]["ratio"] == pytest.approx(49 / 40)
    assert not rows["predict_lenet"].get("extrapolated")
    # ResNet18: the measured sample plus the other 9,600 tiles at the steady rate.
    assert rows["predict_resnet18"]["seconds"] == pytest.approx(5 + 9_600 / 100)
    assert rows["predict_resnet18"]["cpu_seconds"] is None  # not measured for all tiles
    assert rows["heatmap"]["ratio"] == pytest.approx(1.2)
    assert rows["heatmap"]["original_seconds"] == 17 * 60 + 27


def test_scaling_fit_recovers_a_line_and_its_fixed_cost():
    rows = [{"tissue_tiles": n, "seconds": 0.8 + 0.0005 * n} for n in (500, 2_000, 8_000)]
    fixed, per_tile, r2 = scaling_fit(rows)
    assert fixed == pytest.approx(0.8) and per_tile == pytest.approx(0.0005)
    assert r2 == pytest.approx(1.0)
    curved = [{"tissue_tiles": n, "seconds": 1e-7 * n**2} for n in (500, 2_000, 8_000)]
    assert scaling_fit(curved)[2] < 0.999
    assert scaling_fit(rows[:2]) is None


def test_duration_reads_like_the_original_table():
    assert duration(12.34) == "12.3 s"
    assert duration(245) == "4 min 05 s"
    assert duration(3 * 3600 + 45 * 60) == "3 h 45 min"
    # Rounding carries into the next unit instead of printing 60.
    assert duration(119.6) == "2 min 00 s"
    assert duration(59.97) == "1 min 00 s"
    assert duration(2 * 3600 - 10) == "2 h 00 min"


def test_a_failing_stage_names_itself_and_its_input(tmp_path):
    missing = tmp_path / "missing.tif"
    with pytest.raises(HistotileError, match=r"stage 'tissue' failed[\s\S]*missing\.tif"):
        measure("tissue", {"slide": str(missing)})


def test_bench_from_json_names_a_file_that_is_not_a_benchmark(tmp_path):
    bogus = tmp_path / "other.json"
    bogus.write_text('{"rows": []}')
    result = CliRunner().invoke(cli, ["bench", "--from-json", str(bogus)])
    assert result.exit_code != 0
    assert "other.json: not a benchmark JSON" in result.output
    assert not (tmp_path / "other.md").exists()


def test_bench_rejects_a_malformed_size(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "--size", "big", "--work", str(tmp_path)])
    assert result.exit_code == 2
    assert "WIDTHxHEIGHT" in result.output
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_full_size_table_sums_the_paths_against_the_original_workflow():
    from histotile.workflows.benchmark.suite import BenchmarkResult
    from histotile.workflows.benchmark.tables import render_markdown

    machine = {"cpu": "test CPU", "cores": 2, "memory_gib": 8.0, "system": "Linux",
               "python": "3.11", "torch": "2", "histotile": "0", "network_devices": ["cpu"],
               "gpus": [], "load_average": [0.1, 0.2]}
    result = BenchmarkResult(machine=machine,
                             settings={"size": [100_000, 50_000], "quick": False, "workers": 2},
                             inputs=[], measurements=_fake_measurements(), scaling=[])
    markdown = render_markdown(result)
    # Tissue 0.5 s + tiling 30 s against 12 s + 3 h 58 min 22 s; prediction 49 s + heatmap
    # 12 s against 4 min + 17 min 27 s.
    assert "tiles (tissue detection + tiling): 30.5 s**, against 3 h 59 min" in markdown
    assert f"**{(12 + 14_302) / 30.5:,.0f}x faster**" in markdown
    assert f"**{(240 + 1_047) / 61:,.0f}x faster**" in markdown
    assert "test CPU, 2 cores" in markdown and "n/a (quick)" not in markdown
