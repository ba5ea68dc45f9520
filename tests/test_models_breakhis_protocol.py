"""The BreakHis protocol from the command line: overlapping patches of small images,
folds and the test split grouped by the patient parsed from BreakHis file names, and the
audit trail (every tile's split, out-of-fold predictions, image- and patient-level
results)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from histotile.errors import ConfigError
from histotile.models import TrainSettings, load_tiles, make_splits, train
from histotile.models.groups import BREAKHIS, compile_pattern, name_group
from histotile.models.splits import check_disjoint
from histotile.workflows.cli.main import cli


@pytest.fixture(scope="module")
def breakhis(tmp_path_factory):
    """8 patients (4 benign, 4 malignant), 3 images of 700x460 each, one tiny image."""
    root = tmp_path_factory.mktemp("breakhis")
    rng = np.random.default_rng(0)
    for number in range(8):
        kind, folder = ("B", "benign") if number < 4 else ("M", "malignant")
        (root / folder).mkdir(exist_ok=True)
        colour = (200, 120, 200) if kind == "B" else (120, 60, 160)
        for image in range(3):
            pixels = np.clip(rng.normal(colour, 25, (460, 700, 3)), 0, 255).astype(np.uint8)
            name = f"SOB_{kind}_A-14-{22540 + number}AB-40-{image + 1:03d}.png"
            cv2.imwrite(str(root / folder / name), pixels)
    cv2.imwrite(str(root / "benign" / "SOB_B_A-14-22540AB-40-099.png"),
                np.zeros((100, 100, 3), np.uint8))
    return root


def test_breakhis_names_and_patterns():
    assert name_group("SOB_B_A-14-22549AB-40-001", BREAKHIS) == "14-22549AB"
    assert name_group("SOB_M_DC-14-2523-400-010", BREAKHIS) == "14-2523"
    assert name_group("patient7_0003", compile_pattern(r"^(?P<group>[^_]+)_")) == "patient7"
    with pytest.raises(ConfigError, match="named group"):
        compile_pattern(r"^([^_]+)_")


def test_fifteen_overlapping_patches_per_image_grouped_by_patient(breakhis):
    table = load_tiles(breakhis, patchify=True, patch_size=225, patch_stride=117,
                       tile_size=64, group_by="patient")
    per_image = table.frame.groupby("path").size()
    assert len(per_image) == 24 and (per_image == 15).all()  # 3 rows x 5 columns
    assert sorted(table.frame["group"].unique()) == [f"14-{22540 + n}AB" for n in range(8)]
    assert any("1 image(s) smaller than one 225 px patch skipped" in n for n in table.notes)
    assert table.classes == ["benign", "malignant"]  # the folders' order
    # Without --patch-stride: no overlap, 3 x 2 patches of a 700x460 image.
    plain = load_tiles(breakhis, patchify=True, patch_size=225, tile_size=64)
    assert (plain.frame.groupby("path").size() == 6).all()


def test_tile_size_is_checked_before_any_image_is_opened(tmp_path):
    # An input side asked for below the network's minimum is refused before any read
    # (patches of 50 px without --tile-size are resized up to the minimum instead).
    with pytest.raises(ConfigError, match="64 px"):
        train(tmp_path / "does-not-exist", tmp_path / "m",
              TrainSettings(model="resnet18", patchify=True, patch_size=50, tile_size=32))


def test_grouped_test_split_draws_close_to_the_requested_tile_fraction():
    rng = np.random.default_rng(3)
    sizes = rng.integers(5, 400, 80)  # patients of very different sizes
    groups = np.repeat(np.arange(80), sizes)
    labels = np.repeat(rng.integers(0, 2, 80), sizes)
    for seed in range(5):
        splits = make_splits(labels, groups, ["b", "m"], folds=4, test_fraction=0.2,
                             seed=seed)
        check_disjoint(splits, groups)
        assert abs(splits.test.size / labels.size - 0.2) < 0.03
        for k in (0, 1):  # stratified: each class near 20 % in the test split
            share = np.isin(np.flatnonzero(labels == k), splits.test).mean()
            assert abs(share - 0.2) < 0.05


@pytest.mark.slow
def test_cli_train_keeps_patients_apart_and_writes_the_audit_trail(breakhis, tmp_path):
    out = tmp_path / "model"
    config = tmp_path / "train.toml"  # settings without a flag go through --config
    config.write_text("momentum = 0.5\nweight_decay = 0.001\nepochs = 3\n")
    result = CliRunner().invoke(cli, [
        "train", str(breakhis), "--out", str(out), "--patchify", "225", "--patch-stride",
        "117", "--tile-size", "64", "--group-by", "patient", "--folds", "2", "--epochs",
        "1", "--test-fraction", "0.25", "--threads", "1", "--positive-class", "malignant",
        "--config", str(config)],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "smaller than one 225 px patch skipped" in result.output
    assert "fold2 epoch 1/1" in result.output  # one line per epoch without a terminal
    training = json.loads((out / "model_card.json").read_text())["training"]
    assert (training["momentum"], training["weight_decay"]) == (0.5, 0.001)
    assert training["epochs"] == 1  # the command line wins over the file
    assert (training["patch_size"], training["patch_stride"]) == (225, 117)
    splits = pd.read_csv(out / "splits.csv")
    assert len(splits) == 24 * 15 and splits["tile"].is_unique
    # No patient in two folds, nor in development and test.
    assert (splits.groupby("group")[["part", "validation_fold"]].nunique() == 1).all().all()
    assert set(splits.loc[splits["part"] == "test", "group"]).isdisjoint(
        splits.loc[splits["part"] == "development", "group"])
    oof = pd.read_csv(out / "predictions_oof.csv")
    validated = splits.loc[splits["validation_fold"] > 0, "tile"]
    assert sorted(oof.loc[oof["part"] != "test", "tile"]) == sorted(validated)
    assert sorted(oof.loc[oof["part"] == "test", "tile"]) == sorted(
        splits.loc[splits["part"] == "test", "tile"])
    assert np.allclose(oof[["prob_benign", "prob_malignant"]].sum(axis=1), 1, atol=1e-4)
    images = pd.read_csv(out / "image_level.csv")
    assert set(images["level"]) == {"image", "group"}
    assert (images.loc[images["level"] == "image", "tiles"] == 15).all()
