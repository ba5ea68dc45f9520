"""The operating point chosen on known scores, metrics at a threshold, temperature
scaling, where a stage's threshold comes from, and no silent positive-class guess
(numbers only: no training here)."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from histotile.class_roles import require_positive_class
from histotile.errors import ConfigError
from histotile.models.calibration import apply_temperature, card_temperature, fit_temperature
from histotile.models.metrics import classification_metrics
from histotile.models.operating_choice import choose_on_validation
from histotile.models.operating_point import (
    SOURCE_CARD,
    SOURCE_DEFAULT,
    SOURCE_FLAG,
    OperatingRule,
    card_threshold,
    choose_threshold,
    operating_point,
    tile_threshold,
)
from histotile.models.settings import TrainSettings

# Ten tiles, four positive. Calling "score >= t" positive, by threshold:
#   t=0.9: sens 1/4, spec 6/6   t=0.8: 2/4, 6/6   t=0.7: 2/4, 5/6   t=0.6: 3/4, 5/6
#   t=0.5: 3/4, 4/6             t=0.4: 4/4, 4/6   t=0.3: 4/4, 3/6 ...
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
TRUTH = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 0], bool)


def test_balanced_and_youden_pick_the_maximum_of_balanced_accuracy():
    # Balanced accuracy is highest (5/6) at t = 0.4: all 4 positives, 4 of 6 negatives.
    # The threshold lies halfway to the next lower score: (0.4 + 0.3) / 2.
    for rule in ("balanced", "youden"):
        assert choose_threshold(TRUTH, SCORES, OperatingRule.parse(rule)) == pytest.approx(0.35)
    best = max(balanced_accuracy_score(TRUTH, SCORES >= t) for t in SCORES)
    assert balanced_accuracy_score(TRUTH, SCORES >= 0.35) == pytest.approx(best)


def test_sensitivity_and_specificity_targets():
    # sensitivity >= 0.7: first reached at t = 0.6 (3/4), the highest such threshold.
    assert choose_threshold(TRUTH, SCORES, OperatingRule.parse("sensitivity=0.7")
                            ) == pytest.approx(0.55)
    # sensitivity >= 0.9 needs all four positives: t = 0.4.
    assert choose_threshold(TRUTH, SCORES, OperatingRule.parse("sensitivity=0.9")
                            ) == pytest.approx(0.35)
    # specificity >= 0.8 (5/6): the lowest threshold keeping it is t = 0.6.
    assert choose_threshold(TRUTH, SCORES, OperatingRule.parse("specificity=0.8")
                            ) == pytest.approx(0.55)
    assert choose_threshold(TRUTH, SCORES, OperatingRule.parse("0.3")) == 0.3


def test_the_recorded_point_and_its_curve():
    point = operating_point(TRUTH, SCORES, OperatingRule.parse("balanced"),
                            positive_class="idc", fitted_on="pooled out-of-fold predictions")
    assert point["positive_class"] == "idc" and point["rule"] == "balanced"
    assert point["sensitivity"] == 1.0 and point["specificity"] == pytest.approx(4 / 6)
    assert point["balanced_accuracy"] == pytest.approx(5 / 6)
    curve = point["curve"]
    assert len(curve["threshold"]) == len(curve["sensitivity"]) == SCORES.size
    assert curve["threshold"] == sorted(curve["threshold"], reverse=True)
    # A long curve is downsampled to about 100 points, its ends kept.
    rng = np.random.default_rng(0)
    scores = rng.random(5000)
    long = operating_point(scores > 0.5, scores, OperatingRule(), positive_class="idc",
                           fitted_on="x")["curve"]
    assert 90 <= len(long["threshold"]) <= 100
    assert long["sensitivity"][-1] == 1.0 and long["threshold"][0] == pytest.approx(scores.max())


@pytest.mark.parametrize("text", ["best", "sensitivity=", "sensitivity=1.5", "1.5", "nan"])
def test_bad_rules_are_config_errors_naming_the_setting(text):
    with pytest.raises(ConfigError, match="operating_point=.*balanced, youden"):
        OperatingRule.parse(text)
    with pytest.raises(ConfigError, match="operating_point"):
        TrainSettings(operating_point=text).resolved()


def test_metrics_at_a_threshold():
    proba = np.stack([1 - SCORES, SCORES], axis=1)
    at_half = classification_metrics(TRUTH.astype(int), proba, ["other", "idc"])
    at_point = classification_metrics(TRUTH.astype(int), proba, ["other", "idc"],
                                      threshold=0.35)
    assert at_half["sensitivity"] == 0.75 and at_point["sensitivity"] == 1.0
    assert at_point["specificity"] == pytest.approx(4 / 6)
    assert at_point["roc_auc"] == at_half["roc_auc"]  # the threshold leaves the AUC alone
    # The positive class may be the first column.
    flipped = classification_metrics((~TRUTH).astype(int), proba[:, ::-1], ["idc", "other"],
                                     positive_class="idc", threshold=0.35)
    assert flipped["sensitivity"] == 1.0 and flipped["confusion"] == [[4, 0], [2, 4]]


def test_temperature_scaling_lowers_the_likelihood_and_keeps_the_order():
    rng = np.random.default_rng(1)
    truth = rng.random(400) < 0.4
    # Over-confident scores: right 75 % of the time, but always at 0.99.
    right = rng.random(400) < 0.75
    p = np.where(truth == right, 0.99, 0.01)
    proba = np.stack([1 - p, p], axis=1)
    fitted = fit_temperature(truth.astype(int), proba, fitted_on="test")
    assert fitted["temperature"] > 1.5 and fitted["nll_after"] < fitted["nll_before"]
    calibrated = apply_temperature(proba, fitted["temperature"])
    assert calibrated[:, 1].max() == pytest.approx(0.75, abs=0.05)  # near the accuracy
    assert np.allclose(calibrated.sum(axis=1), 1, atol=1e-6)
    assert card_temperature({"calibration": fitted}) == fitted["temperature"]
    assert card_temperature({}) is None


def test_choice_on_validation_records_threshold_calibration_and_test_at_it():
    proba = np.stack([1 - SCORES, SCORES], axis=1)
    targets = TRUTH.astype(int)
    chosen = choose_on_validation("balanced", True, ["other", "idc"], "idc",
                                  [(targets[:5], proba[:5]), (targets[5:], proba[5:])],
                                  (targets, proba))
    assert chosen["calibration"]["method"] == "temperature"
    point = chosen["operating_point"]
    assert point["fitted_on"] == "pooled out-of-fold predictions (10 tiles)"
    test = chosen["test_at_operating_point"]
    assert test["threshold"] == point["threshold"] and test["sensitivity"] == 1.0
    # Several classes: argmax, no threshold; folds=0: only a fixed threshold is recorded.
    assert choose_on_validation("balanced", False, ["a", "b", "c"], None, [], None
                                )["operating_point"] is None
    fixed = choose_on_validation("0.3", False, ["other", "idc"], "idc", [], None)
    assert fixed["operating_point"]["threshold"] == 0.3
    assert choose_on_validation("balanced", False, ["other", "idc"], "idc", [], None
                                )["operating_point"] is None


def test_where_a_threshold_comes_from():
    card = {"operating_point": {"threshold": 0.23, "positive_class": "idc"}}
    assert card_threshold(card).to_dict() == {"value": 0.23, "source": SOURCE_CARD}
    assert tile_threshold(card, 0.7).to_dict() == {"value": 0.7, "source": SOURCE_FLAG}
    old = card_threshold({"classes": ["a", "b"]})  # a card from before operating points
    assert old.value == 0.5
    assert old.source == SOURCE_DEFAULT == "default 0.5 (the card records none)"
    other = card_threshold(card, positive_class="stroma")  # the threshold is about idc only
    assert other.value == 0.5 and "about 'idc', not 'stroma'" in other.source


def test_a_binary_order_nobody_chose_needs_a_positive_class():
    with pytest.raises(ConfigError) as error:
        require_positive_class(["idc", "non_idc"], guessed_order=True, positive_class=None,
                               where="patches/")
    message = str(error.value)
    assert "'idc' and 'non_idc'" in message and "--positive-class" in message
    require_positive_class(["idc", "non_idc"], guessed_order=True, positive_class="idc",
                           where="patches/")
    require_positive_class(["normal", "tumour"], guessed_order=False, positive_class=None,
                           where="manifest.csv")
    require_positive_class(["a", "b", "c"], guessed_order=True, positive_class=None,
                           where="patches/")
