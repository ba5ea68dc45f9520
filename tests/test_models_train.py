"""Training end to end on a small synthetic task with a real visual signal
(haematoxylin-dark vs eosin-pink tiles read from slides): every model learns it, the
model directory holds what prediction needs, and Predictor round-trips exactly."""

import dataclasses
import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from histotile.errors import DatasetError, ModelError, OutputExistsError
from histotile.models import Predictor, TrainSettings, classification_metrics, load_tiles, train
from histotile.models.synthetic import write_stain_imagefolder, write_stain_slides

FAST = {"batch_size": 16, "optimizer": "adam", "lr": 1e-3, "workers": 1, "seed": 0}


@pytest.fixture(scope="module")
def stain(tmp_path_factory):
    """6 patients x 30 tiles of 64 px; every slide holds both classes."""
    return write_stain_slides(tmp_path_factory.mktemp("stain"), patients=6, grid=(6, 5),
                              tile_size=64, seed=5)


@pytest.fixture(scope="module")
def trained(stain, tmp_path_factory):
    events: list[tuple[str, dict]] = []
    out = tmp_path_factory.mktemp("run") / "lenet_model"
    result = train(stain, out, TrainSettings(model="lenet", epochs=3, **FAST),
                   progress=lambda event, **info: events.append((event, info)))
    return result, events


def _test_tiles(model_dir, manifest):
    """The held-out test tiles, found through splits.csv."""
    splits = pd.read_csv(model_dir / "splits.csv")
    test_groups = set(splits.loc[splits["part"] == "test", "group"])
    table = load_tiles(manifest)
    rows = np.flatnonzero(table.frame["group"].isin(test_groups).to_numpy())
    reader = table.reader()
    return np.stack([reader[int(i)] for i in rows]), table.targets[rows], table.classes


def test_model_directory_and_card(trained, stain):
    result, _ = trained
    out = result.model_dir
    card = json.loads((out / "model_card.json").read_text())
    assert card == result.card
    assert card["architecture"] == "lenet" and card["backend"] == "torch"
    assert card["classes"] == ["eosin", "haematoxylin"] and card["tile_size"] == 64
    assert card["tiling"]["tile_mpp"] == pytest.approx(0.5)
    assert card["tiling"]["tile_downsample"] == pytest.approx(1.0)
    assert card["tiling"]["settings"]["source"] == "histotile.models.synthetic"
    assert card["input"]["normalisation"]["divide_by"] == 255.0
    assert card["training"]["lr"] == 1e-3 and card["training"]["folds"] == 4
    assert card["versions"]["torch"].startswith("2.")
    assert card["data"]["tiles"] == 180 and card["data"]["groups"] == 6
    assert len(card["metrics"]["folds"]) == 4 and card["final_epochs"] is None  # ensemble
    # Weights are a plain state dict that loads without unpickling arbitrary objects.
    state = torch.load(out / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    # Per-fold CSV: four folds, mean and std rows that agree with the folds, the test row.
    metrics = pd.read_csv(out / "metrics_folds.csv").set_index("part")
    threshold = card["operating_point"]["threshold"]
    assert list(metrics.index) == ["fold1", "fold2", "fold3", "fold4", "mean", "std", "test",
                                   f"test at threshold {threshold:.4f}"]
    folds = metrics.loc[["fold1", "fold2", "fold3", "fold4"]]
    for key in ("accuracy", "loss", "sensitivity", "specificity", "f1", "roc_auc"):
        assert metrics.loc["mean", key] == pytest.approx(folds[key].mean())
        assert metrics.loc["std", key] == pytest.approx(folds[key].std(ddof=1), abs=1e-9)
    assert (folds["train_tiles_per_s"] > 0).all() and (folds["train_seconds"] > 0).all()
    assert metrics.loc["test", "n"] == card["metrics"]["test"]["n"] > 0
    cm_columns = [c for c in metrics.columns if c.startswith("cm_")]
    assert folds[cm_columns].to_numpy().sum() == card["data"]["split"]["development_tiles"]
    # No group on two sides: every group sits in one part and one validation fold.
    splits = pd.read_csv(out / "splits.csv")
    per_group = splits.groupby("group")[["part", "validation_fold"]].nunique()
    assert (per_group == 1).all().all()
    assert set(splits["validation_fold"][splits["part"] == "development"]) == {1, 2, 3, 4}
    # Plots are real images with content; the log tells the story.
    for name in ("learning_curves.png", "confusion_matrix.png"):
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] > 200 and image.std() > 10
    log = (out / "train.log").read_text()
    assert "fold4 epoch" in log and "test: accuracy" in log
    history = pd.read_csv(out / "history.csv")
    # The final model is the fold ensemble (the default): no fifth training run.
    assert set(history["fold"]) == {"fold1", "fold2", "fold3", "fold4"}
    assert card["final_model"] == {"kind": "ensemble", "members": 4,
                                   "combination": "mean of the members' class probabilities"}
    assert not list(out.parent.glob(".*partial"))


def test_predictor_round_trip_gives_the_training_run_probabilities(trained, stain):
    result, _ = trained
    tiles, targets, classes = _test_tiles(result.model_dir, stain)
    predictor = Predictor(result.model_dir)
    assert predictor.classes == classes and predictor.tile_size == 64
    assert predictor.backend == "torch" and predictor.device == "cpu"
    assert predictor.tile_mpp == pytest.approx(0.5)
    proba = predictor.predict(tiles)
    assert proba.dtype == np.float32 and proba.shape == (len(tiles), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # The in-memory final model's test metrics, recomputed from the reloaded model.
    again = classification_metrics(targets, proba, classes)
    assert again["loss"] == pytest.approx(result.test["loss"], abs=1e-5)
    assert again["confusion"] == result.test["confusion"]
    # Loading twice and batching differently changes nothing.
    other = Predictor(result.model_dir, batch_size=7).predict(tiles)
    np.testing.assert_allclose(other, proba, atol=1e-6)
    assert result.test["accuracy"] > 0.8  # learned (chance is about 0.5)


def test_predictor_refuses_other_tile_sizes_and_class_lists(trained, tmp_path):
    result, _ = trained
    predictor = Predictor(result.model_dir)
    with pytest.raises(ModelError, match=r"takes 64x64 px tiles, got 32x32 px"):
        predictor.predict(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ModelError, match="uint8"):
        predictor.predict(np.zeros((2, 64, 64, 3), np.float32))
    predictor.check_compatible(classes=["eosin", "haematoxylin"], tile_size=64)
    with pytest.raises(ModelError, match=r"trained on 64 px tiles, not 128 px"):
        predictor.check_compatible(tile_size=128)
    with pytest.raises(ModelError, match=r"classes are \['eosin', 'haematoxylin'\], not"):
        predictor.check_compatible(classes=["haematoxylin", "eosin"])
    with pytest.raises(ModelError, match="no such model directory"):
        Predictor(tmp_path / "nothing")
    with pytest.raises(ModelError, match="no model_card.json"):
        Predictor(tmp_path)
    broken = tmp_path / "copy"
    shutil.copytree(result.model_dir, broken)
    (broken / "model.pt").unlink()
    with pytest.raises(ModelError, match="weights file model.pt is missing"):
        Predictor(broken)
    card = json.loads((broken / "model_card.json").read_text())
    card["tile_size"] = 96  # the card no longer matches the weights
    (broken / "model_card.json").write_text(json.dumps(card))
    shutil.copy(result.model_dir / "model.pt", broken / "model.pt")
    with pytest.raises(ModelError, match="do not fit the lenet"):
        Predictor(broken)


def test_progress_events(trained):
    _, events = trained
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "done"
    # Four folds and no fifth run: the final model is their ensemble.
    assert names.count("fold_start") == 4 and names.count("fold_end") == 4
    assert names.count("test") == 1
    epochs = [info for name, info in events if name == "epoch"]
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(epochs[0])
    batches = [info for name, info in events if name == "batch"]
    assert batches and all(1 <= b["step"] <= b["steps"] for b in batches)


@pytest.mark.slow  # trains twice: ~25 s on two busy cores
def test_same_seed_same_folds_and_metrics(stain, tmp_path):
    settings = TrainSettings(model="lenet", epochs=1, folds=2, test_fraction=0,
                             final_model=False, **FAST)
    a = train(stain, tmp_path / "a", settings)
    # Same seed, tiles streamed from the slides by worker processes instead of cached,
    # and cached in a temporary file instead of memory.
    b = train(stain, tmp_path / "b", dataclasses.replace(settings, cache_mb=0,
                                                         disk_cache=False))
    assert "streamed from the slides" in (tmp_path / "b" / "train.log").read_text()
    c = train(stain, tmp_path / "c", dataclasses.replace(settings, cache_mb=0,
                                                         cache_dir=str(tmp_path)))
    assert "cached in a temporary file" in (tmp_path / "c" / "train.log").read_text()
    for other in (b, c):
        assert [m["confusion"] for m in a.folds] == [m["confusion"] for m in other.folds]
        assert [m["loss"] for m in a.folds] == [m["loss"] for m in other.folds]
    pd.testing.assert_frame_equal(pd.read_csv(a.model_dir / "splits.csv"),
                                  pd.read_csv(b.model_dir / "splits.csv"))
    assert a.card["weights_file"] == "" and a.test is None
    with pytest.raises(ModelError, match="final_model=False"):
        Predictor(a.model_dir)


def test_existing_output_is_kept_and_failures_leave_nothing(trained, stain):
    result, _ = trained
    before = (result.model_dir / "model_card.json").read_bytes()
    with pytest.raises(OutputExistsError, match="overwrite"):
        train(stain, result.model_dir, TrainSettings(model="lenet", **FAST))
    with pytest.raises(DatasetError, match="necrosis"):
        train(stain, result.model_dir, TrainSettings(model="lenet", classes=["eosin",
                                                                             "necrosis"],
                                                     **FAST), overwrite=True)
    assert (result.model_dir / "model_card.json").read_bytes() == before
    assert not list(result.model_dir.parent.glob(".*partial"))


def test_missing_weights_file_fails_before_any_work(stain, tmp_path):
    with pytest.raises(ModelError, match=r"weights='/nonexistent/r18\.pth': no such file"):
        train(stain, tmp_path / "m", TrainSettings(model="resnet18",
                                                   weights="/nonexistent/r18.pth", **FAST))
    assert not (tmp_path / "m").exists()


def test_fold_that_would_lack_a_class(tmp_path):
    manifest = write_stain_slides(tmp_path, patients=6, grid=(4, 3), tile_size=64, seed=2,
                                  balance=0.0)  # no haematoxylin cells at all...
    frame = pd.read_csv(manifest)
    frame.loc[frame["group"] == "patient00", "label"] = "haematoxylin"  # ...but one patient
    frame.to_csv(manifest, index=False)
    with pytest.raises(DatasetError, match=r"class 'haematoxylin' occurs in 1 'group'"):
        train(manifest, tmp_path / "m", TrainSettings(model="lenet", **FAST))
    assert not (tmp_path / "m").exists()


def test_imagefolder_patchified_training(tmp_path):
    root = write_stain_imagefolder(tmp_path / "folder", per_class=8, tile_size=128,
                                   patients=4)
    result = train(root, tmp_path / "m", TrainSettings(model="lenet", epochs=1, folds=2,
                                                       test_fraction=0, tile_size=64,
                                                       patchify=True,
                                                       positive_class="haematoxylin",
                                                       **FAST))
    assert result.card["data"]["tiles"] == 2 * 8 * 4  # four 64 px patches per image
    assert result.card["tiling"]["settings"] == {"patchify": True, "tile_size": 64,
                                                 "step": 64}
    assert Predictor(result.model_dir).predict(np.zeros((1, 64, 64, 3), np.uint8)).shape == (
        1, 2)


LEARNERS = [
    # LeNet's sigmoid layers sit on a plateau for a seed-dependent number of steps.
    ("lenet", "torch", {"epochs": 6}),
    # The four larger networks train for minutes on two cores: the slow tier.
    pytest.param("squeezenet", "torch", {"lr": 3e-4}, marks=pytest.mark.slow),
    pytest.param("resnet18", "torch", {}, marks=pytest.mark.slow),
    pytest.param("alexnet", "torch", {"lr": 1e-4, "batch_size": 32}, marks=pytest.mark.slow),
    pytest.param("shufflenet_v2", "torch", {}, marks=pytest.mark.slow),
    pytest.param("lenet", "mxnet", {"epochs": 6}, marks=pytest.mark.mxnet),
]


@pytest.mark.parametrize("name, backend, extra", LEARNERS)
def test_every_model_learns_the_stain_task(stain, tmp_path, name, backend, extra):
    # The stain task's classes differ by colour alone: flips only, no colour jitter; and
    # 3 epochs test the network, not the recipe's warm-up (see test_models_recipe.py).
    settings = TrainSettings(model=name, backend=backend, folds=0, test_fraction=0.34,
                             augment=True, schedule=None if backend == "mxnet" else "constant",
                             **{"epochs": 3, **FAST, **extra})
    result = train(stain, tmp_path / name, settings)
    assert result.test["n"] >= 40
    assert result.test["accuracy"] >= 0.8, result.test
    assert result.test["roc_auc"] >= 0.9, result.test
    # Save, load and predict round-trip (both backends, same interface).
    tiles, targets, classes = _test_tiles(result.model_dir, stain)
    predictor = Predictor(result.model_dir)
    assert predictor.backend == backend
    again = classification_metrics(targets, predictor.predict(tiles), classes)
    assert again["loss"] == pytest.approx(result.test["loss"], abs=1e-4)
    assert again["confusion"] == result.test["confusion"]
