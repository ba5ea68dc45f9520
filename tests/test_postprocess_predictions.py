"""Slide prediction through the Predictor protocol, and the predictions file format."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import histotile
from histotile.errors import DatasetError, ModelError, OutputExistsError
from histotile.postprocess import SlidePredictions, load_predictions, predict_slide
from histotile.postprocess.predictions import sidecar_path
from histotile.tiling import TilingSettings
from histotile.tiling.tile_io import read_tile
from histotile.wsi import open_slide
from histotile.wsi.synthetic import write_synthetic_slide

SAMPLE = Path(histotile.__file__).parent / "data" / "CMU-1-Small-Region.svs"


class ColourPredictor:
    """A stand-in model: 'tumour' probability = mean red-minus-green contrast of the tile,
    a deterministic function of the pixels, so every row can be checked against a tile
    read independently. Records the threads it was called from."""

    classes = ("normal", "tumour")

    def __init__(self, tile_size: int = 64, card: dict | None = None) -> None:
        self.tile_size = tile_size
        self.card = card if card is not None else {
            "architecture": "colour", "classes": list(self.classes), "tile_size": tile_size,
            "tiling": {"tile_mpp": 0.5, "tile_downsample": 1.0, "settings": None}}
        self.threads: set[str] = set()
        self.calls = 0

    def predict(self, tiles: np.ndarray) -> np.ndarray:
        assert tiles.dtype == np.uint8 and tiles.shape[1:] == (self.tile_size,) * 2 + (3,)
        self.threads.add(threading.current_thread().name)
        self.calls += 1
        rgb = tiles.reshape(len(tiles), -1, 3).astype(np.float32).mean(1)
        p = np.clip((rgb[:, 0] - rgb[:, 1]) / 128.0, 0, 1)
        return np.stack([1 - p, p], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("predict") / "case-7.tif"
    return write_synthetic_slide(path, 1600, 1200, seed=4, tissue_fraction=0.35)


def test_predicts_every_tissue_tile_with_the_model(slide):
    model = ColourPredictor(64)
    seen = []
    result = predict_slide(slide.path, model, batch_size=16,
                           progress=lambda done, total: seen.append((done, total)))
    assert result.slide_name == "case-7" and result.dimensions == (1600, 1200)
    assert result.classes == ("normal", "tumour") and result.mpp == pytest.approx(0.5)
    tiles = result.tiles
    assert len(tiles) > 20
    assert seen[-1][0] == seen[-1][1] >= len(tiles)  # every candidate tile was read
    assert model.calls <= -(-seen[-1][1] // 16)  # whole batches of the model, never one by one
    # Tissue tiles only: the true tissue mask covers each predicted tile...
    truth = slide.tissue_mask(16)
    for x, y in tiles[["x", "y"]].to_numpy()[::7]:
        assert truth[y // 16:(y + 64) // 16, x // 16:(x + 64) // 16].any()
    assert (tiles["tissue_fraction"] >= 0.25).all()
    # ...and probabilities are the model's on the tile read through the shared contract.
    with open_slide(slide.path) as s:
        for row in tiles.sample(25, random_state=0).itertuples(index=False):
            pixels = read_tile(s, row.x, row.y, 0, 64, 64)
            expected = model.predict(pixels[None])[0]
            assert (row.prob_normal, row.prob_tumour) == pytest.approx(tuple(expected),
                                                                       abs=1e-6)
    assert (tiles["extent"] == 64).all() and (tiles["x"] % 64 == 0).all()
    assert result.settings["tiling"]["mpp"] == 0.5
    assert result.model["architecture"] == "colour" and len(result.model["card_sha256"]) == 16


def test_reading_overlaps_inference_in_a_reader_thread(slide, monkeypatch):
    monkeypatch.setenv("HISTOTILE_THREADS", "2")
    main = threading.current_thread().name
    reader_threads = []

    class Watching(ColourPredictor):
        def predict(self, tiles):
            reader_threads.extend(t.name for t in threading.enumerate()
                                  if t.name == "histotile-tile-reader")
            return super().predict(tiles)

    model = Watching(64)
    predict_slide(slide.path, model, batch_size=8)
    assert model.threads == {main}  # inference in the caller's thread
    assert reader_threads  # the reader was alive while the model ran
    assert not any(t.name == "histotile-tile-reader" for t in threading.enumerate())


def test_one_core_budget_reads_in_turn_with_identical_results(slide, monkeypatch):
    """A one-thread Dask worker must use one core: no reader thread, same predictions."""
    monkeypatch.setenv("HISTOTILE_THREADS", "2")
    threaded = predict_slide(slide.path, ColourPredictor(64), batch_size=8)
    monkeypatch.setenv("HISTOTILE_THREADS", "1")
    seen = set()

    class Watching(ColourPredictor):
        def predict(self, tiles):
            seen.update(t.name for t in threading.enumerate())
            return super().predict(tiles)

    single = predict_slide(slide.path, Watching(64), batch_size=8)
    assert "histotile-tile-reader" not in seen
    pd.testing.assert_frame_equal(single.tiles, threaded.tiles)


def test_explicit_tiling_and_real_slide():
    model = ColourPredictor(128, card={"architecture": "colour"})
    settings = TilingSettings(tile_size=128, magnification=10)  # 20x slide read at 10x
    result = predict_slide(SAMPLE, model, tiling=settings)
    assert result.slide_name == "CMU-1-Small-Region"
    assert (result.tiles["extent"] == 256).all()
    assert len(result) > 30
    with open_slide(SAMPLE) as s:
        row = result.tiles.iloc[len(result) // 2]
        pixels = read_tile(s, int(row.x), int(row.y), 0, 256, 128)
    assert row.prob_tumour == pytest.approx(model.predict(pixels[None])[0, 1], abs=1e-6)


def test_model_errors_stop_the_reader_and_are_raised(slide):
    class Broken(ColourPredictor):
        def predict(self, tiles):
            return np.zeros((len(tiles), 3), np.float32)  # three columns for two classes

    with pytest.raises(ModelError, match="shape"):
        predict_slide(slide.path, Broken(64), batch_size=4)
    assert not any(t.name == "histotile-tile-reader" for t in threading.enumerate())
    with pytest.raises(ModelError, match="128 px tiles"):
        predict_slide(slide.path, ColourPredictor(64), tiling=TilingSettings(tile_size=128))
    with pytest.raises(ModelError, match="not a predictor"):
        predict_slide(slide.path, object())


def test_save_and_load_round_trip(slide, tmp_path):
    result = predict_slide(slide.path, ColourPredictor(64))
    out = tmp_path / "preds" / "case-7.csv"
    result.save(out)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["slide"]["dimensions"] == [1600, 1200] and meta["tiles"] == len(result)
    loaded = load_predictions(out)
    assert (loaded.slide_name, loaded.dimensions, loaded.classes, loaded.mpp) == (
        result.slide_name, result.dimensions, result.classes, result.mpp)
    pd.testing.assert_frame_equal(loaded.tiles[["x", "y", "extent"]],
                                  result.tiles[["x", "y", "extent"]])
    np.testing.assert_allclose(loaded.probability_matrix(), result.probability_matrix(),
                               atol=1e-5)
    assert loaded.settings == json.loads(json.dumps(result.settings))


def test_existing_outputs_are_refused_and_kept(tmp_path):
    table = pd.DataFrame({"x": [0], "y": [0], "extent": [64], "prob_a": [1.0]})
    preds = SlidePredictions("s", "", (64, 64), None, ("a",), table)
    out = tmp_path / "s.csv"
    sidecar_path(out).write_text("keep me")
    with pytest.raises(OutputExistsError, match="s.json"):
        preds.save(out)
    assert not out.exists() and sidecar_path(out).read_text() == "keep me"
    preds.save(out, overwrite=True)
    assert load_predictions(out).slide_name == "s"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.csv", "s.json"]


def test_damaged_predictions_files_are_refused(tmp_path):
    table = pd.DataFrame({"x": [0, 64], "y": [0, 0], "extent": [64, 64],
                          "prob_a": [0.2, 0.9]})
    out = tmp_path / "s.csv"
    SlidePredictions("s", "", (128, 64), None, ("a",), table).save(out)
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:-1]) + "\n")  # a row lost
    with pytest.raises(DatasetError, match="truncated"):
        load_predictions(out)
    out.write_text(lines[0].replace("prob_a", "prob_b") + "\n" + "\n".join(lines[1:]))
    with pytest.raises(DatasetError, match="prob_a"):
        load_predictions(out)
    sidecar_path(out).unlink()
    with pytest.raises(DatasetError, match="sidecar"):
        load_predictions(out)
    with pytest.raises(DatasetError, match="no such predictions file"):
        load_predictions(tmp_path / "missing.csv")


def fresh_lenet_dir(path: Path, tile_size: int = 64) -> Path:
    """A model directory holding a freshly initialised torch LeNet and its card, written
    with the models stage's own card and weight writers (no training needed to test the
    plumbing)."""
    import torch

    from histotile.models import create, get_spec
    from histotile.models.card import build_card, write_card
    from histotile.models.torch_backend import save

    torch.manual_seed(0)
    path.mkdir(parents=True)
    weights = save(create("lenet", 2, tile_size), path)
    card = build_card(architecture="lenet", backend="torch", description="fresh LeNet",
                      classes=["normal", "tumour"], tile_size=tile_size,
                      weights_file=weights, normalisation=get_spec("lenet").normalisation(),
                      geometry={"tile_mpp": 0.5, "tile_downsample": 1.0}, settings={},
                      data={}, metrics={}, final_epochs=None)
    write_card(card, path)
    return path


def test_real_predictor_through_predict_slide(slide, tmp_path):
    from histotile.models import Predictor

    model = Predictor(fresh_lenet_dir(tmp_path / "lenet"), device="cpu", batch_size=32)
    result = predict_slide(slide.path, model)
    assert result.classes == ("normal", "tumour") and len(result) > 20
    assert result.model["architecture"] == "lenet"
    assert result.model["model_dir"] == str(tmp_path / "lenet")
    assert result.settings["tiling"]["mpp"] == 0.5 and result.settings["size"] == 64
    np.testing.assert_allclose(result.probability_matrix().sum(1), 1.0, atol=1e-5)
    with open_slide(slide.path) as s:
        rows = result.tiles.iloc[::9]
        tiles = np.stack([read_tile(s, int(r.x), int(r.y), 0, 64, 64)
                          for r in rows.itertuples(index=False)])
    expected = model.predict(tiles)
    np.testing.assert_allclose(rows[["prob_normal", "prob_tumour"]].to_numpy(), expected,
                               atol=1e-5)


def test_predicted_tiles_are_the_tilers_tissue_tiles(slide):
    """Prediction keeps exactly the tiles the tiler keeps as tissue (same rule, same
    threshold), with the same tissue fractions: the model sees what it was trained on."""
    from histotile.tiling import TilingSettings, extract_tiles

    settings = TilingSettings(tile_size=64, mpp=0.5, keep_background=0.0)
    manifest = extract_tiles(slide.path, settings)
    result = predict_slide(slide.path, ColourPredictor(64), tiling=settings)
    predicted = result.tiles.sort_values(["y", "x"]).reset_index(drop=True)
    tiled = manifest.sort_values(["y", "x"]).reset_index(drop=True)
    assert predicted[["x", "y"]].values.tolist() == tiled[["x", "y"]].values.tolist()
    np.testing.assert_allclose(predicted["tissue_fraction"], tiled["tissue_fraction"],
                               atol=1e-5)


def test_cards_of_image_folders_tile_slides_at_the_model_tile_size():
    # An image-folder model records its patchify geometry, not slide tiling settings: it is
    # predicted on slides with the card's tile size (and a warning that level 0 is used)
    # instead of failing on keys TilingSettings does not know.
    import types

    from histotile.postprocess.predict import settings_from_card

    predictor = types.SimpleNamespace(
        card={"tiling": {"settings": {"patchify": True, "tile_size": 64, "step": 64}},
              "default_class": "benign"},
        classes=("benign", "malignant"), tile_size=64, model_dir="folder-model")
    with pytest.warns(UserWarning, match="folder-model: the model card records no tiling"):
        settings = settings_from_card(predictor)
    assert settings.tile_size == 64 and settings.level is None and settings.mpp is None
    assert settings.classes == ("benign", "malignant")
