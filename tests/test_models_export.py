"""histotile export: ONNX and TorchScript files with their card, loadable by Predictor and
by plain onnxruntime with the documented recipe; int8 quantisation calibrated on the
training tiles, with its accuracy against float32 on the test split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from engine_fixtures import make_model, tiles

from histotile.errors import ModelError
from histotile.models import Predictor
from histotile.workflows.cli.main import cli

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


def invoke(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("architecture", ["lenet", "resnet18"])
def test_onnx_file_runs_in_plain_onnxruntime_with_the_documented_recipe(tmp_path,
                                                                         architecture):
    import onnxruntime as ort

    model = make_model(tmp_path / "m", architecture)
    out = tmp_path / "model.onnx"
    printed = invoke("export", model, "--format", "onnx", "--out", out)
    assert "positive: tumour" in printed
    card = json.loads((tmp_path / "model.onnx.card.json").read_text())
    assert card["classes"] == ["normal", "tumour"] and card["tile_size"] == 64
    assert card["export"]["positive_class"] == "tumour"
    assert card["export"]["normalisation_in_graph"] == card["input"]["normalisation"]
    assert card["export"]["input"] == {"name": "tiles", "dtype": "uint8",
                                       "shape": ["N", 64, 64, 3], "layout": "NHWC",
                                       "channel_order": "RGB"}
    # The README's recipe: uint8 RGB tiles in, probabilities out, nothing else.
    batch = tiles(4)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    plain = session.run(["probabilities"], {"tiles": batch})[0]
    reference = Predictor(model, device="cpu", engine="torch").predict(batch)
    np.testing.assert_allclose(plain, reference, atol=1e-4, rtol=0)
    embedded = json.loads(session.get_modelmeta().custom_metadata_map["histotile_model_card"])
    assert embedded == card
    # Predictor loads the file alone (card inside it), even without the folder.
    shutil.rmtree(model)
    loaded = Predictor(out, device="cpu")
    assert loaded.engine == "onnxruntime" and loaded.classes == ["normal", "tumour"]
    np.testing.assert_allclose(loaded.predict(batch), plain, atol=1e-6)
    with pytest.raises(ModelError, match="runs on onnxruntime"):
        Predictor(out, device="cpu", engine="torch")
    with pytest.raises(ModelError, match="no framework network"):
        _ = loaded.network


def test_torchscript_file_loads_in_predictor_and_plain_torch(tmp_path):
    import torch

    model = make_model(tmp_path / "m", "squeezenet")
    out = tmp_path / "model.pt"
    invoke("export", model, "--format", "torchscript", "--out", out)
    batch = tiles(3)
    reference = Predictor(model, device="cpu", engine="torch").predict(batch)
    loaded = Predictor(out, device="cpu")
    assert loaded.engine == "torchscript"
    np.testing.assert_allclose(loaded.predict(batch), reference, atol=1e-5)
    plain = torch.jit.load(str(out))(torch.from_numpy(batch)).detach().numpy()
    np.testing.assert_allclose(plain, reference, atol=1e-5)
    assert json.loads((tmp_path / "model.pt.card.json").read_text())["export"]["format"] == \
        "torchscript"


def test_export_refuses_existing_files_and_bad_options(tmp_path):
    model = make_model(tmp_path / "m")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"keep")
    result = CliRunner().invoke(cli, ["export", str(model), "--out", str(out)])
    assert result.exit_code != 0 and "already exists" in result.output
    assert out.read_bytes() == b"keep"
    from histotile.models.export import export_model

    with pytest.raises(ModelError, match="--format onnx"):
        export_model(model, tmp_path / "x.pt", "torchscript", int8=True)


# -- int8 ---------------------------------------------------------------------------------

def _image_folder(root: Path) -> Path:
    """Two visibly different classes (pale pink, dark purple noise), 6 patients each."""
    import cv2

    rng = np.random.default_rng(0)
    colours = {"normal": (235, 200, 215), "tumour": (90, 40, 120)}
    for name, colour in colours.items():
        (root / name).mkdir(parents=True)
        for patient in range(6):
            for i in range(6):
                image = np.clip(rng.normal(colour, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(root / name / f"p{patient}__{i}.png"), image[..., ::-1])
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from histotile.models import TrainSettings, train

    root = tmp_path_factory.mktemp("int8")
    data = _image_folder(root / "data")
    result = train(data, root / "model", TrainSettings(
        model="lenet", epochs=2, folds=2, tile_size=64, batch_size=16, device="cpu",
        workers=0, seed=0, positive_class="tumour"))
    return result.model_dir, data


@pytest.mark.slow
def test_int8_engine_calibrates_on_training_tiles_and_reports_test_accuracy(trained,
                                                                            tmp_path):
    model, _data = trained
    batch = tiles(8)
    full = Predictor(model, device="cpu", engine="onnxruntime").predict(batch)
    small = Predictor(model, device="cpu", engine="onnxruntime-int8")
    assert small.engine == "onnxruntime-int8"
    assert np.abs(small.predict(batch) - full).max() < 0.1
    # auto never picks int8
    assert Predictor(model, device="cpu").engine == "onnxruntime"
    out = tmp_path / "int8.onnx"
    printed = invoke("export", model, "--int8", "--out", out)
    report = json.loads((tmp_path / "int8.onnx.card.json").read_text())["export"][
        "quantisation"]
    card = json.loads((model / "model_card.json").read_text())
    assert report["measured_on"] == "the cross-validation's held-out test split"
    assert report["tiles"] == card["data"]["split"]["test_tiles"] > 0
    assert report["calibration_tiles"] == card["data"]["split"]["development_tiles"]
    assert report["accuracy_float32"] == pytest.approx(card["metrics"]["test"]["accuracy"])
    assert abs(report["accuracy_int8"] - report["accuracy_float32"]) <= 0.1
    assert "accuracy" in printed
    loaded = Predictor(out, device="cpu")
    assert loaded.engine == "onnxruntime-int8"
    assert np.abs(loaded.predict(batch) - full).max() < 0.1


@pytest.mark.slow
def test_int8_without_training_tiles_needs_calibration(trained, tmp_path):
    model, data = trained
    moved = tmp_path / "elsewhere"
    # (without the engines/ cache, where an int8 model quantised earlier would be reused)
    shutil.copytree(model, tmp_path / "copy", ignore=shutil.ignore_patterns("engines"))
    shutil.copytree(data, moved)
    card_path = tmp_path / "copy" / "model_card.json"
    card = json.loads(card_path.read_text())
    card["data"]["source"] = str(tmp_path / "gone")
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not at hand"):
        Predictor(tmp_path / "copy", device="cpu", engine="onnxruntime-int8")
    out = tmp_path / "int8.onnx"
    invoke("export", tmp_path / "copy", "--int8", "--calibration", moved, "--out", out)
    report = json.loads((tmp_path / "int8.onnx.card.json").read_text())["export"][
        "quantisation"]
    assert "not held out" in report["measured_on"] and report["tiles"] == 72
