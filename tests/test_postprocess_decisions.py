"""Patch-majority decisions and the threshold sweep against hand-computed counts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from histotile.errors import ConfigError, DatasetError, ModelError
from histotile.postprocess import (
    SlidePredictions,
    slide_decision,
    threshold_sweep,
)


def predictions(name: str, tumour: list[float]) -> SlidePredictions:
    p = np.asarray(tumour)
    table = pd.DataFrame({"x": np.arange(p.size) * 64, "y": 0, "extent": 64,
                          "prob_benign": 1 - p, "prob_malignant": p})
    return SlidePredictions(name, "", (64 * max(p.size, 1), 64), 0.5,
                            ("benign", "malignant"), table)


def test_decision_counts_tiles_at_or_above_tile_threshold():
    # 15 patches as in BreakHis: 6 at or above 0.5 (0.5 itself counts) -> 6/15 = 0.4.
    probs = [0.9, 0.8, 0.5, 0.7, 0.6, 0.55, 0.49, 0.1, 0.2, 0.3, 0.0, 0.05, 0.4, 0.45, 0.01]
    decision = slide_decision(predictions("img", probs), "malignant")
    assert (decision.tiles, decision.positive_tiles) == (15, 6)
    assert decision.fraction == pytest.approx(0.4)
    assert decision.positive is False  # 0.4 does not reach 0.5
    assert slide_decision(predictions("img", probs), "malignant",
                          fraction_threshold=0.25).positive is True
    # Raising the tile threshold to 0.75 leaves 2 positive patches.
    strict = slide_decision(predictions("img", probs), "malignant", tile_threshold=0.75)
    assert strict.positive_tiles == 2 and strict.fraction == pytest.approx(2 / 15)


def test_decision_needs_fraction_at_or_above_threshold():
    # The rule is ">= t", shared with the threshold table (called_positive).
    decision = slide_decision([0.9, 0.9, 0.1, 0.1], fraction_threshold=0.5)
    assert decision.fraction == 0.5 and decision.positive is True
    assert slide_decision([0.9, 0.1, 0.1, 0.1]).positive is False
    six_of_fifteen = slide_decision([0.9] * 6 + [0.1] * 9, fraction_threshold=0.4)
    assert six_of_fifteen.positive is True


def test_decision_accepts_table_and_array_alike():
    preds = predictions("s", [0.2, 0.7, 0.9])
    from_table = slide_decision(preds.tiles, "malignant")
    from_array = slide_decision(preds.probabilities("malignant"))
    assert from_table.fraction == from_array.fraction == pytest.approx(2 / 3)


def test_decision_of_slide_without_tiles_is_negative():
    decision = slide_decision(predictions("empty", []), "malignant")
    assert (decision.tiles, decision.fraction, decision.positive) == (0, 0.0, False)


def test_unknown_positive_class_is_refused():
    with pytest.raises(ModelError, match="tumour.*benign, malignant"):
        slide_decision(predictions("s", [0.5]), "tumour")
    with pytest.raises(ModelError, match="tumour"):
        slide_decision(predictions("s", [0.5]).tiles, "tumour")
    with pytest.raises(ConfigError, match="fraction_threshold"):
        slide_decision([0.5], fraction_threshold=1.5)


# Six slides: positive fractions and truth, and the counts worked out by hand below.
FRACTIONS = [0.05, 0.20, 0.30, 0.60, 0.80, 0.95]
TRUTH = [False, False, True, False, True, True]
# threshold: (TN, FP, FN, TP)
EXPECTED = {0.10: (1, 2, 0, 3), 0.25: (2, 1, 0, 3), 0.50: (2, 1, 1, 2),
            0.75: (3, 0, 1, 2), 0.90: (3, 0, 2, 1)}


def test_sweep_counts_and_rates_equal_hand_computed_values():
    items = [(f"s{i}", f, t) for i, (f, t) in enumerate(zip(FRACTIONS, TRUTH))]
    result = threshold_sweep(items)
    assert list(result.table["threshold"]) == [0.10, 0.25, 0.50, 0.75, 0.90]
    for row in result.table.itertuples(index=False):
        tn, fp, fn, tp = EXPECTED[row.threshold]
        assert (row.TN, row.FP, row.FN, row.TP) == (tn, fp, fn, tp)
        assert row.sensitivity == pytest.approx(tp / (tp + fn))
        assert row.specificity == pytest.approx(tn / (tn + fp))
        assert row.precision_positive == pytest.approx(tp / (tp + fp))
        assert row.precision_negative == pytest.approx(tn / (tn + fn))
        assert row.accuracy == pytest.approx((tp + tn) / 6)
    # Sensitivity 1.0 holds up to 0.25; the most specific of those is named.
    assert result.thresholds_reaching_target == [0.10, 0.25]
    assert result.chosen_threshold == 0.25
    assert "0.25" in result.to_markdown().splitlines()[-1]
    assert threshold_sweep(items, target_sensitivity=0.6).chosen_threshold == 0.75


def test_sweep_from_predictions_matches_sweep_from_fractions():
    # Slides with 20 tiles each whose positive fraction equals FRACTIONS (k/20).
    items = []
    for i, (fraction, truth) in enumerate(zip(FRACTIONS, TRUTH)):
        k = round(fraction * 20)
        items.append((predictions(f"slide{i}", [0.9] * k + [0.1] * (20 - k)), truth))
    result = threshold_sweep(items, positive_class="malignant")
    assert list(result.items["name"]) == [f"slide{i}" for i in range(6)]
    np.testing.assert_allclose(result.items["fraction"], FRACTIONS)
    expected = threshold_sweep(list(zip(FRACTIONS, TRUTH)))
    pd.testing.assert_frame_equal(result.table, expected.table)


def test_sweep_without_any_threshold_reaching_target():
    result = threshold_sweep([(0.05, True), (0.5, False)], thresholds=(0.1, 0.6))
    assert result.chosen_threshold is None
    assert "none of the thresholds" in result.to_markdown()
    # No negative slides: specificity is undefined rather than a made-up number.
    only_positive = threshold_sweep([(0.9, True)], thresholds=(0.5,))
    assert math.isnan(only_positive.table["specificity"][0])


def test_sweep_rejects_bad_items(tmp_path):
    with pytest.raises(DatasetError, match="truth"):
        threshold_sweep([(0.3, "yes")])
    with pytest.raises(DatasetError, match="no slides"):
        threshold_sweep([])
    result = threshold_sweep([(0.3, True)])
    out = tmp_path / "sweep.csv"
    result.save(out)
    assert pd.read_csv(out)["TP"].tolist() == [1, 1, 0, 0, 0]
