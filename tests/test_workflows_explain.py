"""The pathologists' outputs end to end through the CLI: QuPath GeoJSON from run and
predict (and --no-geojson), the probability TIFF, montages and the explain gallery."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from histotile.workflows.cli.main import cli
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
    evaluation = json.loads((out / "case0" / "evaluation.json").read_text())
    assert (out / "case0" / "roc_pr.png").stat().st_size > 1000
    from histotile.models.metrics import roc_auc
    from histotile.postprocess import evaluate_slide, load_predictions

    saved = load_predictions(out / "case0" / "predictions.csv")
    truth = evaluate_slide(pipeline / "slides" / "case0.tif", saved,
                           pipeline / "slides" / "case0.overlay.tif",
                           positive_class="tumour").truth == 1
    assert 0 < truth.sum() < truth.size
    # The saved table rounds probabilities to 6 digits, which can break a few ties.
    assert evaluation["roc_auc"] == pytest.approx(
        roc_auc(truth, saved.probabilities("tumour")), abs=2e-3)
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


def test_explain_gallery_and_page_with_mistakes(pipeline):
    out = pipeline / "explained"
    code, output = invoke("explain", pipeline / "slides" / "case0.tif", "--model",
                          pipeline / "model", "--predictions", pipeline / "results", "--out",
                          out, "--top", "3")
    assert code == 0, output
    page = (out / "case0" / "explanations.html").read_text()
    for title in ("most confidently tumour", "most confidently not tumour",
                  "most uncertain"):
        assert title in page
    table = pd.read_csv(pipeline / "results" / "case0" / "predictions.csv")
    best = table.sort_values("prob_tumour", ascending=False, kind="stable").iloc[0]
    assert f'data-x="{best.x}" data-y="{best.y}"' in page
    assert f"tumour: {best.prob_tumour:.3f}" in page or \
        f"tumour: {best.prob_tumour:.2f}" in page  # read again from the slide
    assert page.count("<figure") >= 9 and "http" not in page  # nothing fetched
    # The overlay beside each slide supplies the truth: the mistakes are shown too.
    mistakes = ("worst false positives" in page) or ("worst false negatives" in page)
    record = json.loads((out / "explain-report.json").read_text())["records"][0]
    assert record["extra"]["annotation"] is not None and mistakes
    import cv2

    gallery = cv2.imread(str(out / "case0" / "explanations.png"))
    assert gallery.shape[1] >= 3 * 2 * 128


def test_explain_api_on_any_tiles(pipeline):
    from histotile.models import Predictor
    from histotile.postprocess import load_predictions
    from histotile.postprocess.explain import explain_tiles

    predictions = load_predictions(pipeline / "results" / "case0" / "predictions.csv")
    predictor = Predictor(pipeline / "model")
    explained = explain_tiles(pipeline / "slides" / "case0.tif", predictions, predictor,
                              [0, 2, 5], "tumour")
    assert explained.tiles.shape == (3, 64, 64, 3)
    assert explained.maps.shape == (3, 64, 64)
    assert 0 <= explained.maps.min() and explained.maps.max() <= 1
    # The tiles read for explaining are the tiles predicted: same probabilities.
    expected = predictions.probability_matrix()[[0, 2, 5]]
    np.testing.assert_allclose(explained.probabilities, expected, atol=2e-3)


def test_explanations_page_renders_in_a_browser(pipeline):
    sync_api = pytest.importorskip("playwright.sync_api")
    page_path = pipeline / "explained" / "case0" / "explanations.html"
    if not page_path.exists():
        pytest.skip("the explain test did not run")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        try:
            page = browser.new_page()
            page.goto(page_path.as_uri())
            sizes = page.eval_on_selector_all(
                "img", "images => images.map(i => [i.complete, i.naturalWidth])")
            headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
        finally:
            browser.close()
    assert sizes and all(done and width == 64 for done, width in sizes)
    assert "most confidently tumour" in headings
