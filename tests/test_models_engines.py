"""Inference engines behind Predictor: onnxruntime agrees with torch on every registry
model, auto's choice, clear errors instead of fallbacks, the export cache, and the engine
recorded in the predictions' JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from engine_fixtures import CLASSES, SIDE, make_model, tiles

from histotile.errors import ModelError
from histotile.models import Predictor, available_models, engines, export, runtimes


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch):
    """Keep every cache file of these tests under the test's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


@pytest.mark.parametrize("architecture", available_models("torch"))
def test_onnxruntime_agrees_with_torch_on_every_registry_model(tmp_path, architecture):
    model = make_model(tmp_path / architecture, architecture)
    reference = Predictor(model, device="cpu", engine="torch")
    fast = Predictor(model, device="cpu", engine="onnxruntime", batch_size=2)
    batch = tiles()
    expected = reference.predict(batch)
    got = fast.predict(batch)  # batch_size 2: the graph takes any batch size
    assert fast.engine == "onnxruntime" and reference.engine == "torch"
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_auto_picks_the_fastest_installed_engine(tmp_path, monkeypatch):
    model = make_model(tmp_path / "m")
    assert engines.FASTEST["cpu"]["lenet"] == "onnxruntime"
    assert Predictor(model, device="cpu").engine == "onnxruntime"
    # Without the onnx extra auto runs torch; asking for onnxruntime is an error, never a
    # silent switch to another engine.
    monkeypatch.setattr(engines, "onnx_installed", lambda: False)
    assert Predictor(model, device="cpu").engine == "torch"
    with pytest.raises(ModelError, match=r"histotile\[onnx\]"):
        Predictor(model, device="cpu", engine="onnxruntime")


def test_unknown_or_mismatched_engine_is_a_clear_error(tmp_path):
    model = make_model(tmp_path / "m")
    with pytest.raises(ModelError, match="unknown engine"):
        Predictor(model, device="cpu", engine="tensorrt")
    with pytest.raises(ModelError, match="trained with torch"):
        Predictor(model, device="cpu", engine="mxnet")


def test_cuda_provider_absent_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        runtimes._providers("cuda:0", ["CPUExecutionProvider"])
    providers, device = runtimes._providers("cuda:1", ["CUDAExecutionProvider",
                                                      "CPUExecutionProvider"])
    assert device == "cuda:1" and providers[0] == ("CUDAExecutionProvider", {"device_id": 1})


def test_export_is_cached_by_weights_hash_in_the_model_folder(tmp_path, monkeypatch):
    model = make_model(tmp_path / "m")
    Predictor(model, device="cpu", engine="onnxruntime")
    cached = sorted((model / export.CACHE_FOLDER).glob("*.onnx"))
    assert len(cached) == 1 and export.cache_key(json.loads(
        (model / "model_card.json").read_text()), model) in cached[0].name
    assert not list((model / export.CACHE_FOLDER).glob(".*"))  # no temporary left over

    def no_export(*_args, **_kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(export, "write_onnx", no_export)
    assert Predictor(model, device="cpu", engine="onnxruntime").engine == "onnxruntime"
    # New weights: a new key, so the stale file is never used.
    make_model(model, seed=5)
    with pytest.raises(AssertionError, match="exported again"):
        Predictor(model, device="cpu", engine="onnxruntime")


def test_read_only_model_folder_caches_in_the_user_cache(tmp_path, monkeypatch):
    model = make_model(tmp_path / "m")
    writable = export._writable
    monkeypatch.setattr(export, "_writable",
                        lambda folder: folder != model / export.CACHE_FOLDER and writable(folder))
    predictor = Predictor(model, device="cpu", engine="onnxruntime")
    assert predictor.engine == "onnxruntime"
    assert not (model / export.CACHE_FOLDER).exists() or not list(
        (model / export.CACHE_FOLDER).glob("*.onnx"))
    assert len(list((tmp_path / "user-cache" / "histotile" / "engines").glob("*.onnx"))) == 1


def test_network_and_to_input_stay_available_with_onnxruntime(tmp_path):
    import torch

    model = make_model(tmp_path / "m")
    predictor = Predictor(model, device="cpu", engine="onnxruntime")
    batch = tiles(3)
    with torch.inference_mode():
        logits = predictor.network(predictor.to_input(batch))
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), predictor.predict(batch),
                               atol=1e-4)


def test_predictions_json_records_the_engine(tmp_path, synthetic_pyramid):
    from click.testing import CliRunner

    from histotile.workflows.cli.main import cli

    model = make_model(tmp_path / "m")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["predict", str(synthetic_pyramid), "--model",
                                      str(model), "--out", str(out), "--engine",
                                      "onnxruntime", "--min-tissue", "0.5"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    sidecar = json.loads((out / "synthetic" / "predictions.json").read_text())
    assert sidecar["settings"]["engine"] == "onnxruntime"


@pytest.mark.mxnet
def test_mxnet_model_refuses_onnx_clearly(tmp_path):
    from histotile.models import get_spec, mxnet_backend
    from histotile.models.card import build_card, write_card

    model = tmp_path / "mx"
    model.mkdir()
    weights = mxnet_backend.save(mxnet_backend.build_lenet(2, SIDE), model)
    write_card(build_card(architecture="lenet", backend="mxnet", description="test",
                          classes=CLASSES, tile_size=SIDE, weights_file=weights,
                          normalisation=get_spec("lenet", "mxnet").normalisation(),
                          geometry={}, settings={}, data={}, metrics={}, final_epochs=None),
               model)
    assert Predictor(model, device="cpu").engine == "mxnet"  # auto: MXNet's own engine
    with pytest.raises(ModelError, match="onnx.mapping"):
        Predictor(model, device="cpu", engine="onnxruntime")
    with pytest.raises(ModelError, match="cannot be exported"):
        export.export_model(model, tmp_path / "mx.onnx")


def test_every_backend_is_an_engine_name():
    """``EngineName`` is written out (a Literal for the type checker and the CLI's
    choices): a backend added to BACKENDS must be added there too."""
    from histotile.models.backends import BACKENDS
    from histotile.models.engines import ENGINES

    assert set(BACKENDS) <= set(ENGINES)
    assert ENGINES[0] == "auto" and "onnxruntime-int8" in ENGINES
