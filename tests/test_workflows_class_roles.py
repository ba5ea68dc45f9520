"""Class semantics end to end on the bundled real slide: the class order the user gives is
kept, the positive and default class travel from ``tile`` through the model card to
``predict``/``evaluate``, and the evaluation's truth never depends on class order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

import histotile
from histotile.class_roles import card_roles, order_classes, resolve_roles
from histotile.errors import ConfigError, ModelError
from histotile.workflows.cli.main import cli

SLIDE = histotile.sample_slide()
OVERLAY = histotile.sample_overlay()
FAST = ["--epochs", "1", "--folds", "2", "--test-fraction", "0", "--max-tiles", "300",
        "--group-by", "region", "--threads", "1"]


def invoke(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def epithelium_tiles(predictions: pd.DataFrame, min_fraction: float = 0.05) -> int:
    """Tiles whose box the painted overlay (1/4 of the slide, pure green paint) covers at
    least ``min_fraction``: counted here from the overlay's pixels, not by histotile."""
    paint = np.array(Image.open(OVERLAY).convert("RGB")).astype(int)
    green = (paint[..., 1] > 200) & (paint[..., 0] < 60) & (paint[..., 2] < 60)
    count = 0
    for x, y, extent in predictions[["x", "y", "extent"]].itertuples(index=False):
        window = green[y // 4:(y + extent) // 4, x // 4:(x + extent) // 4]
        count += window.sum() / (extent / 4) ** 2 >= min_fraction
    return int(count)


def tile_and_train(root: Path, name: str, *classes_args: str) -> Path:
    invoke("tile", SLIDE, "--annotations", OVERLAY, "--out", root / f"tiles-{name}",
           "--tile-size", "64", "--level", "0", *classes_args)
    invoke("train", root / f"tiles-{name}" / "manifest.csv", "--out", root / f"model-{name}",
           *FAST)
    return root / f"model-{name}"


def predict_and_evaluate(root: Path, model: Path, name: str, *flags: str) -> dict:
    invoke("predict", SLIDE, "--model", model, "--out", root / f"pred-{name}")
    invoke("evaluate", SLIDE, "--predictions", root / f"pred-{name}", "--annotations",
           OVERLAY, "--out", root / f"eval-{name}", *flags)
    stem = SLIDE.name.split(".")[0]
    evaluation = json.loads((root / f"eval-{name}" / stem / "evaluation.json").read_text())
    evaluation["predictions"] = pd.read_csv(root / f"pred-{name}" / stem / "predictions.csv")
    return evaluation


@pytest.fixture(scope="module")
def forward(tmp_path_factory):
    root = tmp_path_factory.mktemp("roles")
    model = tile_and_train(root, "forward", "--classes", "other,epithelium=#00ff00")
    return root, model, predict_and_evaluate(root, model, "forward")


def test_roles_defaults_and_errors():
    roles = resolve_roles(["other", "tumour"])
    assert (roles.default_class, roles.positive_class) == ("other", "tumour")
    with pytest.raises(ConfigError, match="--positive-class"):
        resolve_roles(["a", "b"], positive_class="c")
    assert order_classes(["b", "c", "a"], ["c", "a", "b"]) == ["c", "a", "b"]
    assert order_classes(["b", "z", "a"], ["a"]) == ["a", "b", "z"]  # never sorted
    old = card_roles({"classes": ["epithelium", "other"]})  # a card without roles
    assert old.positive_class == "other" and len(old.assumed) == 2
    assert "assumed the last class" in old.assumed[0]
    with pytest.raises(ModelError, match="not one of the model's classes"):
        card_roles({"classes": ["a", "b"]}, positive_class="tumour")


def test_an_assumed_role_is_a_field_that_the_predictions_sidecar_keeps():
    """Which role an old card lacked travels as a :class:`Role` (issue 24), through the
    predictions' JSON too: the sentences can be reworded without changing a decision."""
    from histotile.class_roles import Role, recorded_assumptions
    from histotile.postprocess.predict import model_reference
    from histotile.workflows.tasks.roles import assumed_note, model_roles

    class Model:
        classes = ("a", "b")

        def __init__(self, **recorded):
            self.card = {"classes": list(self.classes), **recorded}

    for recorded, roles in [({}, [Role.POSITIVE, Role.DEFAULT]),
                            ({"default_class": "a"}, [Role.POSITIVE]),
                            ({"positive_class": "b"}, [Role.DEFAULT]),
                            ({"positive_class": "b", "default_class": "a"}, [])]:
        reference = json.loads(json.dumps(model_reference(Model(**recorded))))
        found = recorded_assumptions(reference)
        assert [a.role for a in found] == roles, recorded
        assert [a.note for a in found] == reference["assumed"]
    reworded = {"classes": ["a", "b"], "positive_class": "b", "default_class": None,
                "assumed": ["first note", "second note"]}
    roles = model_roles(["a", "b"], reworded)
    assert roles.assumes(Role.POSITIVE) and roles.assumes(Role.DEFAULT)
    assert assumed_note(roles, "extra") == "first note; extra"  # the default's is left out
    chosen = model_roles(["a", "b"], reworded, positive_class="b", default_class="a")
    assert chosen.assumptions == () and assumed_note(chosen) is None
    positive_only = model_roles(["a", "b"], reworded, positive_class="a")
    assert assumed_note(positive_only) is None and positive_only.assumes(Role.DEFAULT)


@pytest.mark.slow
def test_cli_keeps_class_order_and_evaluates_the_positive_class(forward):
    root, model, evaluation = forward
    sidecar = json.loads((root / "tiles-forward" / "manifest.json").read_text())
    assert (sidecar["classes"], sidecar["default_class"], sidecar["positive_class"]) == (
        ["other", "epithelium"], "other", "epithelium")
    card = json.loads((model / "model_card.json").read_text())
    assert card["classes"] == ["other", "epithelium"]
    assert (card["positive_class"], card["default_class"]) == ("epithelium", "other")
    assert evaluation["positive_class"] == "epithelium"
    assert evaluation["default_class"] == "other"
    expected = epithelium_tiles(evaluation["predictions"])
    assert 0 < expected < len(evaluation["predictions"])
    assert evaluation["TP"] + evaluation["FN"] == expected
    assert evaluation["tiles"] == len(evaluation["predictions"])


@pytest.mark.slow
def test_reversed_class_order_mirrors_the_confusion_matrix(forward, tmp_path):
    root, _, first = forward
    model = tile_and_train(tmp_path, "reversed", "--classes", "epithelium=#00ff00,other",
                           "--default-class", "other", "--positive-class", "epithelium")
    card = json.loads((model / "model_card.json").read_text())
    assert card["classes"] == ["epithelium", "other"]
    second = predict_and_evaluate(tmp_path, model, "reversed")
    assert second["positive_class"] == "epithelium"
    # The truth (rows) is the same tiles in mirrored order; never inverted.
    rows_first = np.asarray(first["confusion"]).sum(axis=1)
    rows_second = np.asarray(second["confusion"]).sum(axis=1)
    assert rows_second.tolist() == rows_first[::-1].tolist()
    assert second["TP"] + second["FN"] == first["TP"] + first["FN"]
    # The same predictions with the columns reversed give exactly the mirrored matrix.
    from histotile.postprocess import evaluate_slide, load_predictions

    stem = SLIDE.name.split(".")[0]
    saved = load_predictions(root / "pred-forward" / stem / "predictions.csv")
    mirrored = type(saved)(saved.slide_name, saved.slide_path, saved.dimensions, saved.mpp,
                           tuple(reversed(saved.classes)), saved.tiles, saved.settings,
                           saved.model)
    a = evaluate_slide(SLIDE, saved, OVERLAY, positive_class="epithelium")
    b = evaluate_slide(SLIDE, mirrored, OVERLAY, positive_class="epithelium")
    np.testing.assert_array_equal(b.confusion, a.confusion[::-1, ::-1])
    assert a.counts == b.counts


@pytest.mark.slow
def test_api_trained_model_and_explicit_override(forward, tmp_path):
    root, _, first = forward
    from histotile.tiling import read_manifest

    # Trained through the API from a DataFrame (no manifest JSON): the frac_ columns
    # carry the tiler's class order, so the last class, epithelium, is positive.
    manifest = read_manifest(root / "tiles-forward" / "manifest.csv")
    result = histotile.train(manifest, tmp_path / "api-model", histotile.TrainSettings(
        model="lenet", epochs=1, folds=0, test_fraction=0, max_tiles=300, threads=1,
        group_by="region"))
    assert result.card["classes"] == ["other", "epithelium"]
    assert result.card["positive_class"] == "epithelium"
    assert histotile.Predictor(result.model_dir).roles.positive_class == "epithelium"
    evaluation = predict_and_evaluate(tmp_path, result.model_dir, "api")
    assert evaluation["TP"] + evaluation["FN"] == first["TP"] + first["FN"]
    # An explicit class the model does not have is a clear error.
    outcome = CliRunner().invoke(cli, ["evaluate", str(SLIDE), "--predictions",
                                       str(tmp_path / "pred-api"), "--annotations",
                                       str(OVERLAY), "--out", str(tmp_path / "e2"),
                                       "--positive-class", "tumour"])
    assert outcome.exit_code == 1
    report = pd.read_csv(tmp_path / "e2" / "evaluate-report.csv")
    assert "not one of the model's classes" in report["error"][0]


@pytest.mark.slow
def test_old_model_folder_without_roles_keeps_working_and_says_what_it_assumed(forward,
                                                                               tmp_path):
    import shutil

    root, model, first = forward
    old = tmp_path / "old-model"
    shutil.copytree(model, old)
    card = json.loads((old / "model_card.json").read_text())
    for key in ("positive_class", "default_class"):
        card.pop(key)
        card["training"].pop(key)
    card["tiling"]["settings"] = None  # and no tiler settings to read the default from
    (old / "model_card.json").write_text(json.dumps(card))
    out = tmp_path / "run"
    invoke("run", SLIDE, "--model", old, "--out", out, "--annotations", OVERLAY)
    report = pd.read_csv(out / "run-report.csv", keep_default_na=False)
    assert "assumed the last class 'epithelium'" in report["warning"][0]
    assert "unannotated tiles were taken as 'other'" in report["warning"][0]
    stem = SLIDE.name.split(".")[0]
    evaluation = json.loads((out / stem / "evaluation.json").read_text())
    # The default class is the one that is not positive, never the first by order.
    assert evaluation["default_class"] == "other"
    assert evaluation["TP"] + evaluation["FN"] == epithelium_tiles(
        pd.read_csv(out / stem / "predictions.csv"))


def test_tiling_settings_resolve_their_roles_by_the_one_rule():
    from histotile.tiling import TilingSettings

    implicit = TilingSettings(classes=("stroma", "tumour", "other"), palette={})
    assert implicit.roles == resolve_roles(["stroma", "tumour", "other"])
    assert (implicit.roles.default_class, implicit.roles.positive_class) == ("stroma", "other")
    chosen = TilingSettings(classes=("stroma", "tumour", "other"), palette={},
                            default_class="other", positive_class="tumour")
    assert (chosen.roles.default_class, chosen.roles.positive_class) == ("other", "tumour")
    # The names from before the roles still answer, for existing scripts.
    assert (chosen.default_label, chosen.positive_label) == ("other", "tumour")
