"""The training recipe (issue: models a lab can rely on): TileNet, class balance, the
learning-rate schedule, early stopping on balanced accuracy, a collapsed fold retried, the
fold ensemble as final model, small and odd-sized patches, stain normalisation of image
folders."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from histotile.errors import ConfigError
from histotile.models import Predictor, TrainSettings, train
from histotile.models.data import load_tiles
from histotile.models.epochs import EpochTracker, FitResult, validation_scores
from histotile.models.synthetic import write_stain_imagefolder
from histotile.models.torch_backend import balanced_rows, class_weights, lr_factor
from histotile.models.torch_nets import Ensemble, build

QUICK = {"epochs": 2, "batch_size": 16, "workers": 1, "seed": 0}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes of 24 px patches from 6 patients, and three edge patches of other
    sizes (as in a folder of patches cut from slides)."""
    root = write_stain_imagefolder(tmp_path_factory.mktemp("f") / "patches", per_class=24,
                                   tile_size=24, patients=6)
    for k, (w, h) in enumerate([(24, 1), (24, 13), (9, 24)]):
        cv2.imwrite(str(root / "eosin" / f"patient0{k}__edge{k}.png"),
                    np.full((h, w, 3), 200, np.uint8))
    return root


@pytest.fixture(scope="module")
def ensemble_model(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "model"
    events: list[str] = []
    result = train(folder, out, TrainSettings(folds=3, test_fraction=0.34,
                                              positive_class="haematoxylin", **QUICK),
                   progress=lambda event, **info: events.append(event))
    return result, events


def test_schedules_start_peak_and_end_where_documented():
    steps = 100
    one = [lr_factor(s, steps, "onecycle", 0.2) for s in range(steps)]
    assert one[0] == pytest.approx(1 / 25)
    assert max(one) == pytest.approx(1.0) and int(np.argmax(one)) == 20
    assert one[-1] == pytest.approx(1e-4, abs=1e-6)
    assert all(a <= b for a, b in zip(one[:20], one[1:21]))  # warm-up rises
    assert all(a >= b for a, b in zip(one[20:], one[21:]))  # then decays
    cosine = [lr_factor(s, steps, "cosine", 0.2) for s in range(steps)]
    assert cosine[0] == 1.0 and cosine[-1] == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(5, steps, "constant", 0.2) == 1.0
    assert lr_factor(0, 1, "onecycle", 0.2) == 1.0  # a run of one step


def test_class_weights_and_the_balanced_sampler():
    targets = np.array([0] * 30 + [1] * 10)
    assert class_weights(targets, 2) == pytest.approx([40 / 60, 40 / 20])
    assert class_weights(np.array([0, 0]), 3) == pytest.approx([1.0, 0.0, 0.0])
    drawn = balanced_rows(np.arange(40), targets, np.random.default_rng(0))
    assert drawn.size == 40
    share = (targets[np.concatenate([balanced_rows(np.arange(40), targets,
                                                   np.random.default_rng(s))
                                     for s in range(50)])] == 1).mean()
    assert 0.45 < share < 0.55  # a quarter of the tiles, half of the draws


def test_early_stopping_keeps_the_best_balanced_accuracy_not_the_lowest_loss():
    targets = np.array([0, 0, 0, 1])
    confident_majority = np.array([[0.9, 0.1]] * 3 + [[0.6, 0.4]])  # low loss, BA 0.5
    balanced = np.array([[0.6, 0.4]] * 3 + [[0.4, 0.6]])  # higher loss, BA 1.0
    for monitor, kept in (("balanced_accuracy", 2), ("loss", 1)):
        tracker = EpochTracker("fold1", 2, 5, lambda *a, **k: None, monitor)
        for epoch, proba in ((1, confident_majority), (2, balanced)):
            tracker.end_epoch(epoch, loss_sum=1.0, correct=1, seen=2, seconds=0.1,
                              val_proba=proba, val_targets=targets)
        assert tracker.best_epoch == kept, monitor
        assert tracker.result(restored=True).collapsed is (kept == 1)
    scores = validation_scores(confident_majority, targets)
    assert scores["val_balanced_accuracy"] == 0.5 and scores["val_one_class"] == 1.0
    assert scores["val_auc"] == pytest.approx(1.0)


def test_a_decaying_schedule_keeps_and_stops_only_in_its_last_quarter():
    from histotile.models.torch_backend import min_kept_epoch

    assert (min_kept_epoch("onecycle", 25), min_kept_epoch("cosine", 4),
            min_kept_epoch("constant", 25)) == (19, 3, 0)
    targets = np.array([0, 1])
    good, bad = np.array([[0.9, 0.1], [0.1, 0.9]]), np.array([[0.4, 0.6], [0.6, 0.4]])
    tracker = EpochTracker("fold1", 6, 1, lambda *a, **k: None, "balanced_accuracy",
                           min_epochs=3)
    outcomes = [tracker.end_epoch(epoch, loss_sum=1.0, correct=1, seen=2, seconds=0.1,
                                  val_proba=proba, val_targets=targets)
                for epoch, proba in ((1, good), (2, bad), (3, bad), (4, bad))]
    assert outcomes == ["continue", "continue", "improved", "stop"]
    assert tracker.best_epoch == 3  # the early good epoch is not kept


def test_tilenet_takes_small_patches_and_the_ensemble_averages_probabilities():
    torch.manual_seed(0)
    for side in (16, 50, 64):
        assert build("tilenet", 2, side)(torch.zeros(2, 3, side, side)).shape == (2, 2)
    members = [build("tilenet", 3, 32).eval() for _ in range(3)]
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        mean = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)
        joint = torch.softmax(Ensemble(members).eval()(x), 1)
    assert torch.allclose(joint, mean, atol=1e-6)


def test_odd_sizes_skipped_and_small_tiles_resized_for_the_network(folder):
    table = load_tiles(folder)
    assert table.tile_size == 24 and len(table.frame) == 48
    assert any("3 image(s) not of the folder's 24x24 px size skipped" in n for n in table.notes)
    resized = load_tiles(folder, min_tile_size=64)
    assert resized.tile_size == 64
    assert resized.reader()[0].shape == (64, 64, 3)
    assert any("resized to 64 px" in n for n in resized.notes)


def test_the_fold_ensemble_is_the_final_model(ensemble_model, folder):
    result, events = ensemble_model
    card = result.card
    assert card["architecture"] == "tilenet" and card["tile_size"] == 24
    assert card["final_model"]["kind"] == "ensemble" and card["final_model"]["members"] == 3
    training = card["training"]
    assert (training["balance"], training["schedule"], training["monitor"],
            training["augment"]) == ("weights", "onecycle", "balanced_accuracy",
                                     "flip,colour")
    assert "fold_end" in events and "test" in events
    # The predictor (one network, one file) gives the test probabilities of the run.
    frame = pd.read_csv(result.model_dir / "predictions_oof.csv")
    test = frame[frame["part"] == "test"]
    tiles = np.stack([cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in test["path"]])
    predicted = Predictor(result.model_dir).predict(tiles)
    assert predicted[:, 1] == pytest.approx(test["prob_haematoxylin"].to_numpy(), abs=1e-5)
    state = torch.load(result.model_dir / "model.pt", weights_only=True)
    assert {k.split(".")[1] for k in state} == {"0", "1", "2"}


def test_retrain_gives_one_network(folder, tmp_path):
    result = train(folder, tmp_path / "m", TrainSettings(
        folds=2, test_fraction=0, final="retrain", positive_class="haematoxylin", **QUICK))
    assert result.card["final_model"] == {"kind": "retrain",
                                          "epochs": result.card["final_epochs"]}
    state = torch.load(result.model_dir / "model.pt", weights_only=True)
    assert not any(k.startswith("members.") for k in state)


def test_a_collapsed_fold_is_reported_and_trained_again_at_a_lower_rate(folder, tmp_path,
                                                                       monkeypatch):
    from histotile.models import torch_backend

    real_fit, calls = torch_backend.fit, []

    def fit(*args, **kwargs):
        fitted = real_fit(*args, **kwargs)
        calls.append(args[6].lr)
        return FitResult(**{**fitted.__dict__, "collapsed": len(calls) == 1})

    monkeypatch.setattr(torch_backend, "fit", fit)
    events: list[tuple[str, dict]] = []
    result = train(folder, tmp_path / "m", TrainSettings(
        folds=2, test_fraction=0, final_model=False, positive_class="haematoxylin", lr=0.01,
        **QUICK), progress=lambda event, **info: events.append((event, info)))
    assert calls == [0.01, pytest.approx(0.001), 0.01]
    assert [m["lr"] for m in result.folds] == [pytest.approx(0.001), 0.01]
    collapse = [info for event, info in events if event == "collapse"]
    assert collapse == [{"tag": "fold1", "lr": 0.01, "retry_lr": pytest.approx(0.001)}]
    assert "fold1 collapsed" in (result.model_dir / "train.log").read_text()
    # The console summary says so, and names the images the folder's size left out.
    from histotile.workflows.cli.console import training_summary

    caption = str(training_summary(result).caption)
    assert "fold 1 collapsed to one class at lr 0.01 and was trained again at lr 0.001" in (
        caption)
    assert "3 image(s) not of the folder's 24x24 px size skipped" in caption


def test_stain_normalisation_of_an_image_folder(folder, tmp_path):
    result = train(folder, tmp_path / "m", TrainSettings(
        folds=0, test_fraction=0, stain="reinhard", positive_class="haematoxylin",
        **QUICK))
    stain = json.loads((result.model_dir / "model_card.json").read_text())["stain_normaliser"]
    assert stain["method"] == "reinhard" and "mosaic of 48" in stain["reference"]
    assert Predictor(result.model_dir).normaliser is not None


def test_stain_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="stain_reference"):
        TrainSettings(stain_reference="ref.png").resolved()
    with pytest.raises(ConfigError, match="macenko or reinhard"):
        TrainSettings(stain="vahadane").resolved()
    with pytest.raises(ConfigError, match="final"):
        TrainSettings(model="lenet", backend="mxnet", final="ensemble").resolved()


def test_every_recipe_flag_reaches_the_card(folder, tmp_path):
    from click.testing import CliRunner

    from histotile.workflows.cli.main import cli

    out = tmp_path / "m"
    result = CliRunner().invoke(cli, [
        "train", str(folder), "--out", str(out), "--positive-class", "haematoxylin",
        "--epochs", "1", "--folds", "2", "--test-fraction", "0", "--batch-size", "16",
        "--balance", "sampler", "--schedule", "cosine", "--warmup", "0.1", "--monitor",
        "auc", "--final", "retrain", "--augment", "flip,blur"])
    assert result.exit_code == 0, result.output
    training = json.loads((out / "model_card.json").read_text())["training"]
    assert (training["balance"], training["schedule"], training["warmup"],
            training["monitor"], training["final"], training["augment"]) == (
        "sampler", "cosine", 0.1, "auc", "retrain", "flip,blur")
    assert "3 image(s) not of the folder's 24x24 px size skipped" in result.output
