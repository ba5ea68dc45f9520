"""The batch CLI end to end on synthetic slides: tile -> train -> run, resumable runs,
a broken slide in the batch, and heatmap/evaluate from saved predictions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import openslide
import pandas as pd
import pytest
from click.testing import CliRunner

from histotile.workflows.cli.main import cli
from histotile.wsi.synthetic import Mark, write_overlay, write_synthetic_slide


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Four annotated synthetic slides, tiled, and a LeNet trained on them."""
    root = tmp_path_factory.mktemp("pipeline")
    slides = root / "slides"
    slides.mkdir()
    for index in range(4):
        path = slides / f"case{index}.tif"
        info = write_synthetic_slide(path, 1536, 1024, seed=20 + index, tile_size=256,
                                     tissue_fraction=0.5)
        # Paint the left half of the tissue as tumour, as a pathologist would.
        write_overlay(path, slides / f"case{index}.overlay.tif",
                      [Mark((0, 255, 0), rect=(0, 0, 768, 1024))], downsample=2)
        assert info.tissue_mask(16).mean() > 0.3
    code, output = invoke("tile", slides, "--out", root / "tiles", "--tile-size", "64",
                          "--classes", "normal,tumour=#00ff00", "--balance",
                          "normal=1,tumour=1")
    assert code == 0, output
    code, output = invoke("train", root / "tiles" / "manifest.csv", "--out", root / "model",
                          "--epochs", "2", "--folds", "2", "--seed", "0")
    assert code == 0, output
    return root


def test_tile_writes_balanced_manifest_with_sidecar(pipeline):
    manifest = pd.read_csv(pipeline / "tiles" / "manifest.csv")
    counts = manifest["label"].value_counts()
    assert counts["normal"] == counts["tumour"] > 0
    assert set(manifest["group"]) == {f"case{i}" for i in range(4)}
    sidecar = json.loads((pipeline / "tiles" / "manifest.json").read_text())
    assert sidecar["tiling"]["tile_size"] == 64
    card = json.loads((pipeline / "model" / "model_card.json").read_text())
    assert card["tile_size"] == 64 and sorted(card["classes"]) == ["normal", "tumour"]


def test_run_predicts_heatmaps_decides_and_evaluates(pipeline):
    out = pipeline / "results"
    code, output = invoke("run", pipeline / "slides", "--model", pipeline / "model",
                          "--out", out, "--alpha", "0.5")
    assert code == 0, output
    report = pd.read_csv(out / "run-report.csv")
    assert list(report["status"]) == ["ok"] * 4
    for row in report.itertuples():
        predictions = pd.read_csv(out / row.slide / "predictions.csv")
        assert len(predictions) == row.tiles > 0
        # The decision in the report equals the patch majority computed here, at the
        # threshold the sidecar records: the model card's operating point.
        recorded = json.loads((out / row.slide / "predictions.json").read_text())
        threshold = recorded["settings"]["threshold"]
        assert threshold["source"] == "card"
        positive = float((predictions["prob_tumour"] >= threshold["value"]).mean())
        assert row.decision.startswith("positive" if positive >= 0.5 else "negative")
        assert f"{positive:.1%}" in row.decision
        with openslide.OpenSlide(str(out / row.slide / "heatmap.tif")) as heatmap:
            assert heatmap.dimensions == (1536, 1024)
            assert float(heatmap.properties["openslide.mpp-x"]) == pytest.approx(0.5)
        evaluation = json.loads((out / row.slide / "evaluation.json").read_text())
        assert np.asarray(evaluation["confusion"]).sum() == row.tiles
        assert (out / row.slide / "side_by_side.png").stat().st_size > 1000
    overall = json.loads((out / "evaluation.json").read_text())["overall"]
    assert overall["tiles"] == report["tiles"].sum()


def test_rerun_skips_and_a_broken_slide_is_reported(pipeline, tmp_path):
    slides = tmp_path / "slides"
    shutil.copytree(pipeline / "slides", slides)
    out = tmp_path / "results"
    code, _ = invoke("run", slides / "case0.tif", slides / "case1.tif", "--model",
                     pipeline / "model", "--out", out)
    assert code == 0
    (slides / "truncated.tif").write_bytes((slides / "case2.tif").read_bytes()[:5000])
    code, output = invoke("run", slides, "--model", pipeline / "model", "--out", out)
    assert code == 1, output
    report = pd.read_csv(out / "run-report.csv").set_index("slide")
    assert report.loc["case0", "status"] == report.loc["case1", "status"] == "skipped"
    assert report.loc["case2", "status"] == report.loc["case3", "status"] == "ok"
    assert report.loc["truncated", "status"] == "failed"
    assert "truncated.tif" in report.loc["truncated", "error"]
    # Other settings over existing outputs are refused unless --overwrite.
    code, _ = invoke("run", slides / "case0.tif", "--model", pipeline / "model", "--out", out,
                     "--alpha", "0.7")
    assert code == 1
    assert "different settings" in pd.read_csv(out / "run-report.csv")["error"][0]
    code, _ = invoke("run", slides / "case0.tif", "--model", pipeline / "model", "--out", out,
                     "--alpha", "0.7", "--overwrite")
    assert code == 0


def test_heatmap_and_evaluate_from_saved_predictions(pipeline, tmp_path):
    predictions = tmp_path / "predictions"
    code, output = invoke("predict", pipeline / "slides" / "case3.tif", "--model",
                          pipeline / "model", "--out", predictions)
    assert code == 0, output
    code, output = invoke("heatmap", pipeline / "slides" / "case3.tif", "--predictions",
                          predictions, "--out", tmp_path / "heatmaps", "--mode", "continuous")
    assert code == 0, output
    assert (tmp_path / "heatmaps" / "case3" / "preview.png").exists()
    code, output = invoke("evaluate", pipeline / "slides" / "case3.tif", "--predictions",
                          predictions, "--out", tmp_path / "evaluation")
    assert code == 0, output
    table = pd.read_csv(tmp_path / "evaluation" / "evaluation.csv")
    assert list(table["slide"]) == ["case3", "overall"]
    assert table["tiles"].iloc[0] == len(pd.read_csv(predictions / "case3" / "predictions.csv"))


def test_config_file_sets_options_and_command_line_wins(pipeline, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("alpha: 0.9\nrun:\n  mode: continuous\n")
    out = tmp_path / "results"
    code, output = invoke("run", pipeline / "slides" / "case1.tif", "--model",
                          pipeline / "model", "--out", out, "--config", config,
                          "--alpha", "0.2")
    assert code == 0, output
    record = json.loads((out / "run-report.json").read_text())["records"][0]
    assert record["status"] == "ok"
    used = record["extra"]["heatmap"]
    assert used["mode"] == "continuous"  # from the config's [run] section
    assert used["alpha"] == 0.2  # the command line wins over the config's 0.9
