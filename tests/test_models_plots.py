"""ROC and precision-recall curves: the AUC agrees with the metrics, and training writes
the plot for cross-validation and test next to the confusion matrix."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from histotile.models import TrainSettings, train
from histotile.models.metrics import roc_auc
from histotile.models.plots import curve_points, roc_pr_curves
from histotile.models.synthetic import write_stain_slides


def test_curve_points_and_auc(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.random(400) < 0.4
    score = np.clip(truth * 0.3 + rng.random(400) * 0.7, 0, 1)
    points = curve_points(truth, score)
    assert points["roc_auc"] == pytest.approx(roc_auc(truth, score))
    assert 0.5 < points["roc_auc"] < 1.0
    assert points["fpr"][0] == 0 and points["tpr"][-1] == 1
    perfect = curve_points(truth, truth.astype(float))
    assert perfect["roc_auc"] == 1.0 and perfect["average_precision"] == 1.0
    assert curve_points(np.ones(5, bool), np.linspace(0, 1, 5))["roc_auc"] is None
    figures = roc_pr_curves({"a": (truth, score), "b": (truth, 1 - score)}, "tumour",
                            tmp_path / "roc.png")
    assert figures["b"]["roc_auc"] == pytest.approx(1 - figures["a"]["roc_auc"])
    assert cv2.imread(str(tmp_path / "roc.png")).shape[1] == 1000


def test_training_writes_roc_and_pr_curves(tmp_path):
    manifest = write_stain_slides(tmp_path / "stain", patients=5, grid=(4, 4), tile_size=64,
                                  seed=2)
    result = train(manifest, tmp_path / "model",
                   TrainSettings(model="lenet", epochs=1, folds=2, batch_size=16,
                                 optimizer="adam", lr=1e-3, workers=1, seed=0))
    image = cv2.imread(str(result.model_dir / "roc_pr_curves.png"))
    assert image is not None and image.shape[:2] == (440, 1000)
    assert (result.model_dir / "confusion_matrix.png").exists()
