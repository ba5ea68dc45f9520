"""The pathologists' outputs end to end through the CLI: QuPath GeoJSON from run and
predict (and --no-geojson), the probability TIFF, montages and the explain gallery."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from histotile.workflows.cli import cli
from histotile.wsi.synthetic import Mark, write_overlay, write_synthetic_slide


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Three annotated synthetic slides, tiled, and a LeNet trained on them (one epoch)."""
    root = tmp_path_factory.mktemp("explain")
    slides = root / "slides"
    slides.mkdir()
    for index in range(3):
        path = slides / f"case{index}.tif"
        write_synthetic_slide(path, 1024, 768, seed=30 + index, tile_size=256,
                              tissue_fraction=0.6)
        write_overlay(path, slides / f"case{index}.overlay.tif",
                      [Mark((0, 255, 0), rect=(0, 0, 512, 768))], downsample=2)
    code, output = invoke("tile", slides, "--out", root / "tiles", "--tile-size", "64",
                          "--classes", "normal,tumour=#00ff00")
    assert code == 0, output
    code, output = invoke("train", root / "tiles" / "manifest.csv", "--out", root / "model",
                          "--epochs", "1", "--folds", "2", "--seed", "0")
    assert code == 0, output
    return root


def test_run_writes_qupath_files(pipeline):
    out = pipeline / "results"
    code, output = invoke("run", pipeline / "slides" / "case0.tif", "--model",
                          pipeline / "model", "--out", out)
    assert code == 0, output
    table = pd.read_csv(out / "case0" / "predictions.csv")
    tiles = json.loads((out / "case0" / "predictions.geojson").read_text())["features"]
    assert len(tiles) == len(table) > 0
    first = tiles[0]["properties"]["measurements"]
    assert first["tumour probability"] == pytest.approx(table["prob_tumour"][0], abs=1e-5)
    regions = json.loads((out / "case0" / "regions.geojson").read_text())["features"]
    assert all(shapely.geometry.shape(f["geometry"]).is_valid for f in regions)
    assert bool(regions) == bool((table["prob_tumour"] >= 0.5).any())


def test_predict_no_geojson_skips_qupath_files(pipeline):
    out = pipeline / "predicted"
    code, output = invoke("predict", pipeline / "slides" / "case1.tif", "--model",
                          pipeline / "model", "--out", out, "--no-geojson")
    assert code == 0, output
    assert (out / "case1" / "predictions.csv").exists()
    assert not (out / "case1" / "predictions.geojson").exists()
    code, output = invoke("predict", pipeline / "slides" / "case1.tif", "--model",
                          pipeline / "model", "--out", out / "with")
    assert code == 0, output
    assert (out / "with" / "case1" / "predictions.geojson").exists()
    assert np.isfinite(pd.read_csv(out / "with" / "case1" / "predictions.csv")["x"]).all()


def test_heatmap_probability_tiff_opens_in_openslide(pipeline):
    import openslide

    predictions = pipeline / "results"
    out = pipeline / "heatmaps"
    code, output = invoke("heatmap", pipeline / "slides" / "case0.tif", "--predictions",
                          predictions, "--out", out, "--probability-tiff")
    assert code == 0, output
    with openslide.OpenSlide(str(out / "case0" / "probability.tif")) as slide:
        assert slide.dimensions[0] < 1024
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(
            0.5 * 1024 / slide.dimensions[0])


def test_heatmap_continuous_viridis_with_montage(pipeline):
    out = pipeline / "continuous"
    code, output = invoke("heatmap", pipeline / "slides" / "case1.tif", "--predictions",
                          pipeline / "predicted" / "with", "--out", out, "--mode",
                          "continuous", "--colormap", "cividis", "--floor", "0.2")
    assert code == 0, output
    record = json.loads((out / "heatmap-report.json").read_text())["records"][0]
    assert record["outputs"]["montage"].endswith("montage.png")
    assert (out / "case1" / "montage.png").stat().st_size > 1000
    code, output = invoke("heatmap", pipeline / "slides" / "case1.tif", "--predictions",
                          pipeline / "predicted" / "with", "--out", out / "bad", "--mode",
                          "continuous", "--colormap", "rainbow-unicorn")
    assert code != 0 and "colormap" in output
