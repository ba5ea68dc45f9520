"""Evaluation against annotations: confusion matrices equal independent counts; the
side-by-side PNG."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest

from histotile.errors import DatasetError, ModelError, OutputExistsError
from histotile.postprocess import (
    SlidePredictions,
    evaluate_slide,
    evaluate_slides,
    evaluate_tiles,
    write_side_by_side,
)
from histotile.postprocess.legend import LEGEND_HEIGHT, TITLE_HEIGHT
from histotile.wsi.synthetic import Mark, write_overlay, write_synthetic_slide

WIDTH, HEIGHT, TILE = 1280, 768, 128
# The tumour region: whole tiles plus strips of partial coverage (for the labelling rule).
# x, y, w, h level-0: columns covered 1/4, 1, 1, 1, 1/4; rows 1/4, 1, 1.
TUMOUR = (224, 96, 448, 288)


def grid_predictions(name: str, p: np.ndarray, classes=("normal", "tumour")):
    xs, ys = np.meshgrid(np.arange(0, WIDTH, TILE), np.arange(0, HEIGHT, TILE))
    table = pd.DataFrame({"x": xs.ravel(), "y": ys.ravel(), "extent": TILE})
    table[f"prob_{classes[0]}"] = 1 - p
    table[f"prob_{classes[1]}"] = p
    return SlidePredictions(name, "", (WIDTH, HEIGHT), 0.5, classes, table)


def covered_fraction(x: int, y: int) -> float:
    """Fraction of the tile at (x, y) inside TUMOUR, by rectangle intersection."""
    rx, ry, rw, rh = TUMOUR
    dx = max(0, min(x + TILE, rx + rw) - max(x, rx))
    dy = max(0, min(y + TILE, ry + rh) - max(y, ry))
    return dx * dy / TILE**2


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluation")
    slide = folder / "case-3.tif"
    write_synthetic_slide(slide, WIDTH, HEIGHT, seed=2, tissue_fraction=0.9)
    overlay = folder / "case-3-overlay.tif"
    write_overlay(slide, overlay, [Mark((0, 255, 0), rect=TUMOUR)], downsample=1)
    geojson = folder / "case-3.geojson"
    x, y, w, h = TUMOUR
    ring = [[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"classification": {"name": "Tumour"}}}]}))
    rng = np.random.default_rng(9)
    probabilities = rng.random((HEIGHT // TILE) * (WIDTH // TILE))
    return slide, overlay, geojson, grid_predictions("case-3", probabilities)


def independent_counts(predictions, min_fraction: float, threshold: float):
    counts = {"TN": 0, "FP": 0, "FN": 0, "TP": 0}
    for x, y, p in predictions.tiles[["x", "y", "prob_tumour"]].itertuples(index=False):
        truth = covered_fraction(x, y) >= min_fraction
        called = p >= threshold
        key = ("T" if truth == called else "F") + ("P" if called else "N")
        counts[key] += 1
    return counts


def test_tile_confusion_matrix_equals_independent_count():
    rng = np.random.default_rng(0)
    p = rng.random(40)
    truth = np.where(rng.random(40) > 0.6, "tumour", "normal")
    preds = grid_predictions("s", np.resize(p, (HEIGHT // TILE) * (WIDTH // TILE)))
    preds.tiles = preds.tiles.iloc[:40].reset_index(drop=True)
    result = evaluate_tiles(preds, truth, positive_class="tumour", tile_threshold=0.3)
    expected = np.zeros((2, 2), int)
    for t, q in zip(truth, p):
        expected[int(t == "tumour"), int(q >= 0.3)] += 1
    np.testing.assert_array_equal(result.confusion, expected)
    tn, fp, fn, tp = expected.ravel()
    assert result.counts == {"TN": tn, "FP": fp, "FN": fn, "TP": tp}
    assert result.sensitivity == pytest.approx(tp / (tp + fn))
    assert result.specificity == pytest.approx(tn / (tn + fp))
    assert result.confusion_frame().loc["true tumour", "predicted normal"] == fn


def test_three_classes_positive_against_the_rest():
    table = pd.DataFrame({"x": [0, 64, 128, 192], "y": 0, "extent": 64,
                          "prob_a": [0.7, 0.1, 0.2, 0.5], "prob_b": [0.2, 0.3, 0.7, 0.1],
                          "prob_c": [0.1, 0.6, 0.1, 0.4]})
    preds = SlidePredictions("s", "", (256, 64), None, ("a", "b", "c"), table)
    # c at >= 0.4 wins tiles 2 and 4; otherwise the likelier of a and b.
    result = evaluate_tiles(preds, ["a", "c", "b", "a"], positive_class="c",
                            tile_threshold=0.4)
    assert result.predicted.tolist() == [0, 2, 1, 2]
    np.testing.assert_array_equal(result.confusion, [[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    assert result.counts == {"TN": 2, "FP": 1, "FN": 0, "TP": 1}


@pytest.mark.parametrize("kind", ["overlay", "geojson"])
@pytest.mark.parametrize("min_fraction", [0.05, 0.5])
def test_slide_evaluation_against_annotation_equals_geometry(case, kind, min_fraction):
    slide, overlay, geojson, preds = case
    annotation = overlay if kind == "overlay" else geojson
    result = evaluate_slide(slide, preds, annotation, positive_class="tumour",
                            min_label_fraction=min_fraction)
    assert result.counts == independent_counts(preds, min_fraction, 0.5)
    # 0.05 labels the partly covered border tiles tumour too: more tumour tiles.
    truth_tiles = sum(covered_fraction(x, y) >= min_fraction
                      for x, y in preds.tiles[["x", "y"]].itertuples(index=False))
    assert int((result.truth == 1).sum()) == truth_tiles == (15 if min_fraction < 0.1
                                                             else 6)


def test_overall_evaluation_sums_slides(case):
    slide, overlay, _, preds = case
    first = evaluate_slide(slide, preds, overlay, positive_class="tumour")
    second = evaluate_slide(slide, preds, overlay, positive_class="tumour",
                            tile_threshold=0.8)
    summary = evaluate_slides([first, second])
    np.testing.assert_array_equal(summary.confusion, first.confusion + second.confusion)
    overall = summary.overall
    a, b = independent_counts(preds, 0.05, 0.5), independent_counts(preds, 0.05, 0.8)
    assert {k: overall[k] for k in a} == {k: a[k] + b[k] for k in a}
    assert overall["sensitivity"] == pytest.approx(
        (a["TP"] + b["TP"]) / (a["TP"] + b["TP"] + a["FN"] + b["FN"]))
    assert list(summary.table["slide"]) == ["case-3", "case-3", "overall"]
    assert "| overall |" in summary.to_markdown()


def test_side_by_side_png(case, tmp_path):
    slide, overlay, _, preds = case
    out = tmp_path / "side.png"
    evaluation = evaluate_slide(slide, preds, overlay, positive_class="tumour")
    write_side_by_side(slide, preds, overlay, out, positive_class="tumour", size=320,
                       evaluation=evaluation)
    image = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    panel_w, panel_h = 320, 192  # 1280 x 768 at a quarter
    assert image.shape == (TITLE_HEIGHT + panel_h + LEGEND_HEIGHT, 2 * panel_w + 12, 3)
    left = image[TITLE_HEIGHT:TITLE_HEIGHT + panel_h, :panel_w].astype(int)
    # Inside the annotated rectangle the left panel is tinted green, outside it is not.
    inside = left[24 + 10:24 + 60, 56 + 10:56 + 100]
    outside = left[140:180, 220:300]
    assert (inside[..., 1] - inside[..., 0]).mean() > 30
    assert (outside[..., 1] - outside[..., 0]).mean() < 0
    with pytest.raises(OutputExistsError):
        write_side_by_side(slide, preds, overlay, out, positive_class="tumour")


def test_bad_evaluation_inputs(case, tmp_path):
    slide, overlay, _, preds = case
    with pytest.raises(ModelError, match="mitosis"):
        evaluate_slide(slide, preds, overlay, positive_class="mitosis")
    wrong = grid_predictions("another-slide", preds.probabilities("tumour"))
    with pytest.raises(DatasetError, match="another-slide"):
        evaluate_slide(slide, wrong, overlay, positive_class="tumour")
    with pytest.raises(DatasetError, match="one label per tile"):
        evaluate_tiles(preds, ["tumour"], positive_class="tumour")
    with pytest.raises(DatasetError, match="stroma"):
        evaluate_tiles(preds, ["stroma"] * len(preds), positive_class="tumour")
    with pytest.raises(DatasetError, match="no slide evaluations"):
        evaluate_slides([])
