"""Metrics equal scikit-learn's on known predictions; fold summaries are mean +- std."""

import numpy as np
import pytest
from sklearn import metrics as skm

from histotile.models.metrics import (
    classification_metrics,
    confusion_matrix,
    roc_auc,
    summarise,
)


def _proba_for(y_pred: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Probabilities whose argmax is y_pred, with varied (tied and untied) scores."""
    proba = rng.uniform(0.1, 1.0, (y_pred.size, num_classes))
    proba[np.arange(y_pred.size), y_pred] += num_classes
    proba = np.round(proba, 1)  # creates ties for the AUC
    return proba / proba.sum(axis=1, keepdims=True)


def test_binary_metrics_match_sklearn_on_known_confusion():
    # Known confusion (rows true, columns predicted): TN=40, FP=10, FN=5, TP=45.
    y_true = np.array([0] * 50 + [1] * 50)
    y_pred = np.array([0] * 40 + [1] * 10 + [0] * 5 + [1] * 45)
    proba = _proba_for(y_pred, 2, np.random.default_rng(0))
    m = classification_metrics(y_true, proba, ["benign", "tumour"])
    assert m["confusion"] == [[40, 10], [5, 45]]
    assert m["positive_class"] == "tumour"
    assert m["sensitivity"] == pytest.approx(45 / 50)
    assert m["specificity"] == pytest.approx(40 / 50)
    assert m["precision"] == pytest.approx(skm.precision_score(y_true, y_pred))
    assert m["f1"] == pytest.approx(skm.f1_score(y_true, y_pred))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true, proba[:, 1]))
    assert m["loss"] == pytest.approx(skm.log_loss(y_true, proba))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))


def test_positive_class_setting_swaps_sensitivity_and_specificity():
    y_true = np.array([0] * 50 + [1] * 50)
    y_pred = np.array([0] * 40 + [1] * 10 + [0] * 5 + [1] * 45)
    proba = _proba_for(y_pred, 2, np.random.default_rng(1))
    m = classification_metrics(y_true, proba, ["benign", "tumour"], positive_class="benign")
    assert m["sensitivity"] == pytest.approx(40 / 50)
    assert m["specificity"] == pytest.approx(45 / 50)
    assert m["precision"] == pytest.approx(skm.precision_score(y_true, y_pred, pos_label=0))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true == 0, proba[:, 0]))


def test_multiclass_per_class_and_macro_match_sklearn():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 4, 300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 4, 300))
    y_pred[y_true == 3] = np.where(rng.random((y_true == 3).sum()) < 0.5, 2, 3)
    proba = _proba_for(y_pred, 4, rng)
    classes = ["stroma", "tumour", "necrosis", "fat"]
    m = classification_metrics(y_true, proba, classes)
    np.testing.assert_array_equal(np.array(m["confusion"]),
                                  skm.confusion_matrix(y_true, y_pred, labels=range(4)))
    recall = skm.recall_score(y_true, y_pred, average=None)
    precision = skm.precision_score(y_true, y_pred, average=None, zero_division=0)
    f1 = skm.f1_score(y_true, y_pred, average=None)
    for k, name in enumerate(classes):
        pc = m["per_class"][name]
        assert pc["sensitivity"] == pytest.approx(recall[k])
        assert pc["precision"] == pytest.approx(precision[k])
        assert pc["f1"] == pytest.approx(f1[k])
        # specificity = recall of the negative class in one-vs-rest
        assert pc["specificity"] == pytest.approx(
            skm.recall_score(y_true != k, y_pred != k))
        assert pc["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true == k, proba[:, k]))
        assert pc["support"] == int((y_true == k).sum())
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y_true, y_pred, average="macro"))
    assert m["precision"] == pytest.approx(
        skm.precision_score(y_true, y_pred, average="macro", zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert m["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro"))
    assert m["loss"] == pytest.approx(skm.log_loss(y_true, proba))
    assert m["positive_class"] is None


def test_undefined_ratios_are_zero_like_sklearn_zero_division():
    y_true = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1]] * 4)  # never predicts class 1
    m = classification_metrics(y_true, proba, ["a", "b"])
    assert m["precision"] == 0.0 == skm.precision_score(y_true, [0] * 4, zero_division=0)
    assert m["f1"] == 0.0
    assert m["roc_auc"] == pytest.approx(0.5)


def test_auc_is_nan_with_one_class_and_confusion_counts():
    assert np.isnan(roc_auc(np.array([True, True]), np.array([0.2, 0.4])))
    cm = confusion_matrix(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 1]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]


def test_summarise_mean_and_sample_std():
    folds = [{"accuracy": 0.8, "loss": 0.5}, {"accuracy": 0.9, "loss": 0.3},
             {"accuracy": 0.7, "loss": None}]
    s = summarise(folds, keys=("accuracy", "loss", "f1"))
    assert s["accuracy"]["mean"] == pytest.approx(0.8)
    assert s["accuracy"]["std"] == pytest.approx(np.std([0.8, 0.9, 0.7], ddof=1))
    assert s["loss"]["mean"] == pytest.approx(0.4)  # the missing value is left out
    assert s["f1"] == {"mean": None, "std": None}
