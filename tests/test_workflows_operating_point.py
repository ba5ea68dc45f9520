"""Issue 22 end to end on a tiny image folder named as a lab would (``idc/``,
``non_idc/``): no silent positive class, the operating point chosen on out-of-fold
predictions and recorded, used by predict / heatmap / evaluate-images unless
``--threshold`` overrides it (the JSON says which), calibration and test-time
augmentation applied by the Predictor, and a card from before all this still working."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from histotile.models import Predictor
from histotile.models.calibration import apply_temperature
from histotile.models.operating_point import SOURCE_DEFAULT
from histotile.models.predict import dihedral_views
from histotile.models.synthetic import write_stain_imagefolder, write_stain_slides
from histotile.workflows.cli.main import cli

TRAIN = ["--epochs", "1", "--folds", "2", "--test-fraction", "0.34", "--threads", "1",
         "--batch-size", "16", "--seed", "1"]


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    """6 patients x 2 tiles per class, in folders ``idc`` and ``non_idc`` (sorted, the
    last is non_idc: the wrong positive class for a lab)."""
    root = write_stain_imagefolder(tmp_path_factory.mktemp("idc") / "patches", per_class=12,
                                   tile_size=64, patients=6, seed=3)
    (root / "haematoxylin").rename(root / "idc")
    (root / "eosin").rename(root / "non_idc")
    return root


@pytest.fixture(scope="module")
def model(patches, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model"
    code, output = run("train", patches, "--out", out, "--positive-class", "idc",
                       "--calibrate", *TRAIN)
    assert code == 0, output
    return out, output


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    manifest = write_stain_slides(tmp_path_factory.mktemp("slide"), patients=1, grid=(3, 2),
                                  tile_size=64, seed=4)
    return next(manifest.parent.glob("*.tif"))


def test_two_sorted_folders_without_a_positive_class_exit_2(patches, tmp_path):
    code, output = run("train", patches, "--out", tmp_path / "m", *TRAIN)
    assert code == 2
    assert "'idc' and 'non_idc'" in output and "--positive-class" in output
    assert not (tmp_path / "m").exists()


def test_card_console_and_reports_name_the_positive_class(model):
    out, output = model
    card = json.loads((out / "model_card.json").read_text())
    assert card["positive_class"] == "idc" and card["classes"] == ["idc", "non_idc"]
    point = card["operating_point"]
    assert point["positive_class"] == "idc" and point["rule"] == "balanced"
    assert 0 < point["threshold"] < 1 and point["fitted_on"].startswith("pooled out-of-fold")
    assert set(point["curve"]) == {"threshold", "sensitivity", "specificity"}
    assert card["calibration"]["method"] == "temperature" and card["calibration"]["temperature"] > 0
    at_point = card["metrics"]["test_at_operating_point"]
    assert at_point["threshold"] == point["threshold"] and at_point["positive_class"] == "idc"
    # The console: the class each rate is about, balanced accuracy and AUC, both thresholds.
    for text in ("sensitivity (idc)", "specificity (idc)", "precision (idc)",
                 "balanced accuracy", "AUC (idc)", "test (threshold 0.5)",
                 f"test (threshold {point['threshold']:.3f})"):
        assert text in output, text
    metrics = pd.read_csv(out / "metrics_folds.csv").set_index("part")
    assert (metrics.loc[["fold1", "fold2", "test"], "positive_class"] == "idc").all()
    assert f"test at threshold {point['threshold']:.4f}" in metrics.index
    log = (out / "train.log").read_text()
    assert "sensitivity (idc)" in log and "operating point (balanced): idc probability >=" in log


def test_tta_is_the_mean_of_the_eight_views_then_calibrated(model, patches):
    out, _ = model
    tiles = np.stack([np.asarray(__import__("cv2").imread(str(p)))[..., ::-1]
                      for p in sorted((patches / "idc").glob("*.png"))[:3]])
    plain = Predictor(out)
    temperature = plain.temperature
    assert temperature is not None  # trained with --calibrate: the Predictor applies it
    plain.temperature = None
    raw = plain.predict(tiles)
    assert np.allclose(Predictor(out).predict(tiles), apply_temperature(raw, temperature),
                       atol=1e-6)
    expected = apply_temperature(np.mean([plain.predict(v) for v in dihedral_views(tiles)],
                                         axis=0), temperature)
    tta = Predictor(out, tta=True)
    assert np.allclose(tta.predict(tiles), expected, atol=1e-6)
    turned = np.ascontiguousarray(np.rot90(tiles, 1, axes=(1, 2))[:, :, ::-1])
    assert np.allclose(tta.predict(turned), tta.predict(tiles), atol=1e-5)
    assert not np.allclose(raw, plain.predict(turned), atol=1e-5)  # the net alone is not


def test_predict_and_heatmap_use_the_card_threshold_unless_a_flag_says(model, slide,
                                                                       tmp_path):
    from histotile.postprocess import load_predictions
    from histotile.workflows.slide_options import HeatmapOptions
    from histotile.workflows.tasks.slide import heatmap_task

    out, _ = model
    threshold = json.loads((out / "model_card.json").read_text())["operating_point"]["threshold"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an image-folder model: tiles cut at level 0
        code, output = run("predict", slide, "--model", out, "--out", tmp_path / "p",
                           "--tta")
        assert code == 0, output
        code, output = run("predict", slide, "--model", out, "--out", tmp_path / "q",
                           "--threshold", "0.8")
        assert code == 0, output
    sidecar = json.loads(next((tmp_path / "p").glob("*/predictions.json")).read_text())
    assert sidecar["settings"]["threshold"] == {"value": threshold, "source": "card"}
    assert sidecar["settings"]["tta"] is True
    flagged = json.loads(next((tmp_path / "q").glob("*/predictions.json")).read_text())
    assert flagged["settings"]["threshold"] == {"value": 0.8, "source": "flag"}
    assert flagged["settings"]["tta"] is False
    record = heatmap_task(str(slide), str(tmp_path / "h"), str(tmp_path / "p"))
    assert record["status"] == "ok", record
    used = record["extra"]["heatmap"]
    assert used["threshold"] == pytest.approx(threshold) and used["threshold_source"] == "card"
    record = heatmap_task(str(slide), str(tmp_path / "h2"), str(tmp_path / "p"),
                          HeatmapOptions(threshold=0.9))
    assert record["extra"]["heatmap"]["threshold_source"] == "flag"
    predictions = load_predictions(next((tmp_path / "p").glob("*/predictions.csv")))
    assert predictions.model["positive_class"] == "idc"


def test_evaluate_images_threshold_from_card_and_flag(model, patches, tmp_path):
    from histotile.workflows.tasks.image_evaluation import evaluate_images

    out, _ = model
    predictor = Predictor(out)
    from_card = evaluate_images(predictor, patches, tmp_path / "a")
    assert from_card.tile_threshold == predictor.threshold.to_dict()
    assert from_card.tile_threshold["source"] == "card"
    assert "threshold from the card" in (tmp_path / "a" / "thresholds.md").read_text()
    code, output = run("evaluate-images", out, patches, "--out", tmp_path / "b",
                       "--threshold", "0.7")
    assert code == 0, output
    assert "idc probability is >= 0.7 (threshold from the flag)" in output


def test_a_card_from_before_operating_points_predicts_at_0_5_and_says_so(model, slide,
                                                                          tmp_path):
    out, _ = model
    old = tmp_path / "old-model"
    shutil.copytree(out, old)
    card = json.loads((old / "model_card.json").read_text())
    for key in ("operating_point", "calibration"):
        del card[key]
    del card["metrics"]["test_at_operating_point"]
    del card["training"]["operating_point"], card["training"]["calibrate"]
    (old / "model_card.json").write_text(json.dumps(card))
    predictor = Predictor(old)
    assert predictor.threshold.value == 0.5 and predictor.threshold.source == SOURCE_DEFAULT
    assert predictor.temperature is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, output = run("predict", slide, "--model", old, "--out", tmp_path / "p")
    assert code == 0, output
    sidecar = json.loads(next((tmp_path / "p").glob("*/predictions.json")).read_text())
    assert sidecar["settings"]["threshold"] == {
        "value": 0.5, "source": "default 0.5 (the card records none)"}
