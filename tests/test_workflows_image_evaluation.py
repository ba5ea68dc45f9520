"""``histotile evaluate-images``: image-level decisions by patch majority and the
threshold table, checked against a hand computation."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from histotile.postprocess import slide_decision
from histotile.workflows.cli.main import cli
from histotile.workflows.tasks.image_evaluation import THRESHOLDS, evaluate_images

DARK, BRIGHT = 20, 200
# Positive fraction (of 5 patch columns) per image: benign, then malignant.
FRACTIONS = {"benign": [0, 1, 2, 3], "malignant": [2, 3, 4, 5]}


def striped(bright_pairs: int) -> np.ndarray:
    """300 x 200 px of six 50-px stripes; 100-px patches at stride 50 cover stripe pairs
    (k, k+1), k = 0..4; the first ``bright_pairs`` pairs are both bright."""
    stripes = [BRIGHT if bright_pairs and k <= bright_pairs else DARK for k in range(6)]
    row = np.repeat(np.array(stripes, np.uint8), 50)
    return np.repeat(np.repeat(row[None, :, None], 200, axis=0), 3, axis=2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for label, pairs in FRACTIONS.items():
        (root / label).mkdir()
        for index, count in enumerate(pairs):
            cv2.imwrite(str(root / label / f"{label}{index}.png"), striped(count))
    return root


class BrightnessModel:
    """A TilePredictor whose malignant probability is a tile's mean brightness / 255."""

    classes = ("benign", "malignant")
    tile_size = 64
    card = {"classes": ["benign", "malignant"], "positive_class": "malignant",
            "default_class": "benign",
            "tiling": {"settings": {"patchify": True, "tile_size": 64, "patch_size": 100,
                                    "step": 50}}}

    def predict(self, tiles):
        p = tiles.reshape(len(tiles), -1).mean(axis=1) / 255.0
        return np.stack([1 - p, p], axis=1).astype(np.float32)


def test_threshold_row_equals_hand_computation(folder, tmp_path):
    result = evaluate_images(BrightnessModel(), folder, tmp_path / "out")
    images = result.images.set_index("image")
    assert (images["patches"] == 15).all()  # 3 rows x 5 columns of 100 px at stride 50
    for label, pairs in FRACTIONS.items():
        for index, count in enumerate(pairs):
            assert images.loc[f"{label}{index}.png", "positive_fraction"] == pytest.approx(
                count / 5)
    table = pd.read_csv(tmp_path / "out" / "thresholds.csv").set_index("threshold")
    assert list(table.index) == pytest.approx(list(THRESHOLDS))
    for t in THRESHOLDS:  # "positive when at least t of its patches are"
        tp = sum(c / 5 >= t - 1e-12 for c in FRACTIONS["malignant"])
        fp = sum(c / 5 >= t - 1e-12 for c in FRACTIONS["benign"])
        fn, tn = 4 - tp, 4 - fp
        row = table.loc[t]
        assert (row.TP, row.FP, row.FN, row.TN) == (tp, fp, fn, tn)
        assert row.sensitivity == pytest.approx(tp / 4)
        assert row.specificity == pytest.approx(tn / 4)
        assert row.accuracy == pytest.approx((tp + tn) / 8)
    # At t = 0.4 by hand: malignant 0.4 .. 1.0 all called, benign 0.4 and 0.6 called.
    assert (table.loc[0.4, "TP"], table.loc[0.4, "FP"]) == (4, 2)
    # Sensitivity 1 holds up to t = 0.4; the most specific such t is chosen.
    assert result.sweep.chosen_threshold == pytest.approx(0.4)
    # slide_decision applies the same rule: 2 of 5 positive at t = 0.4 is positive.
    assert slide_decision([0.9, 0.9, 0.1, 0.1, 0.1], fraction_threshold=0.4).positive
    markdown = (tmp_path / "out" / "thresholds.md").read_text()
    assert "at least t of its tiles are (fraction >= t)" in markdown
    assert (tmp_path / "out" / "thresholds.png").stat().st_size > 5000


@pytest.mark.slow
def test_cli_evaluate_images_with_a_trained_model(folder, tmp_path):
    from histotile.models import TrainSettings, train

    result = train(folder, tmp_path / "model", TrainSettings(
        model="lenet", epochs=1, folds=0, test_fraction=0, patchify=True, patch_size=100,
        patch_stride=50, tile_size=64, threads=1, positive_class="malignant"))
    assert result.card["positive_class"] == "malignant"
    outcome = CliRunner().invoke(cli, ["evaluate-images", str(tmp_path / "model"),
                                       str(folder), "--out", str(tmp_path / "eval"),
                                       "--target-sensitivity", "0.75"],
                                 catch_exceptions=False)
    assert outcome.exit_code == 0, outcome.output
    images = pd.read_csv(tmp_path / "eval" / "images.csv")
    assert len(images) == 8 and (images["patches"] == 15).all()
    assert len(pd.read_csv(tmp_path / "eval" / "thresholds.csv")) == 9
    assert "Chosen fraction threshold for sensitivity >= 0.75" in outcome.output
