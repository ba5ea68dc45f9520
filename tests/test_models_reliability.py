"""Model folders under real-world faults (issue #12): permissions a plain mkdir gives,
a killed train's staging folder removed by the next one, and model cards that point
outside their folder, hold a wrong type, or name the wrong backend's weights."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from histotile.errors import ModelError
from histotile.models import Predictor, TrainSettings, read_card, train
from histotile.models.synthetic import write_stain_imagefolder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A one-epoch LeNet trained under umask 022, after a killed train left its staging."""
    root = tmp_path_factory.mktemp("models")
    data = write_stain_imagefolder(root / "tiles", per_class=12, tile_size=64, patients=4)
    stale = root / ".lenet.k1ll3d00.partial"
    stale.mkdir()
    (stale / "weights.pt").write_bytes(b"half")
    previous = os.umask(0o022)
    try:
        train(data, root / "lenet", TrainSettings(model="lenet", epochs=1, folds=0,
                                                  test_fraction=0.0, workers=0, seed=0,
                                                  positive_class="haematoxylin"))
    finally:
        os.umask(previous)
    return root / "lenet"


def test_model_folder_is_readable_by_others_and_stale_staging_is_gone(model):
    assert stat.S_IMODE(model.stat().st_mode) == 0o755
    for path in model.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path
    assert not list(model.parent.glob("*.partial"))


def edited(model, tmp_path, **changes):
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    card = json.loads((copy / "model_card.json").read_text())
    card.update(changes)
    (copy / "model_card.json").write_text(json.dumps(card))
    return copy


def test_weights_outside_the_model_folder_are_refused(model, tmp_path):
    (tmp_path / "other").mkdir()
    shutil.copy(model / read_card(model)["weights_file"], tmp_path / "other" / "model.pt")
    copy = edited(model, tmp_path, weights_file="../other/model.pt")
    with pytest.raises(ModelError, match="lies outside the model folder"):
        read_card(copy)


def test_card_with_a_wrong_tile_size_type_is_a_model_error(model, tmp_path):
    copy = edited(model, tmp_path, tile_size="big")
    with pytest.raises(ModelError, match=r"model_card.json: tile_size 'big' is not a positive"):
        Predictor(copy)


def test_mxnet_card_holding_torch_weights_says_so(model, tmp_path):
    copy = edited(model, tmp_path, backend="mxnet")
    with pytest.raises(ModelError, match="this is a PyTorch weights file, not MXNet") as info:
        Predictor(copy)
    assert "Traceback" not in str(info.value)


def test_run_reports_a_truncated_jpeg_and_finishes_the_others(model, tmp_path):
    import cv2
    import numpy as np
    import pandas as pd
    from click.testing import CliRunner

    from histotile.workflows.cli.main import cli

    image = np.full((384, 512, 3), 240, np.uint8)
    image[64:320, 64:448] = (180, 80, 150)
    image += np.random.default_rng(0).integers(0, 20, image.shape, dtype=np.uint8)
    slides = tmp_path / "slides"
    slides.mkdir()
    cv2.imwrite(str(slides / "whole.jpg"), image)
    data = (slides / "whole.jpg").read_bytes()
    (slides / "cut.jpg").write_bytes(data[:len(data) // 2])
    out = tmp_path / "results"
    # An image-folder model records no tiling resolution: level 0 is used, loudly.
    with pytest.warns(UserWarning, match="records no tiling resolution"):
        result = CliRunner().invoke(cli, ["run", str(slides), "--model", str(model), "--out",
                                          str(out)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    rows = pd.read_csv(out / "run-report.csv", keep_default_na=False).set_index("slide")
    assert rows.loc["whole", "status"] == "ok" and int(rows.loc["whole", "tiles"]) > 0
    assert rows.loc["cut", "status"] == "failed"
    assert "cut.jpg: cannot decode image: image file is truncated" in rows.loc["cut", "error"]


class _Payload:
    """Pickles as a call of ``os.getpid``: a stand-in for code hidden in a weights file."""

    def __reduce__(self):
        return (os.getpid, ())


def _broken_weights(kind: str, good: bytes) -> bytes:
    import pickle

    return {"empty": b"", "truncated": good[:len(good) // 2],
            "garbage": b"not a checkpoint" * 8,
            "pickle": pickle.dumps({"conv.weight": _Payload()})}[kind]


@pytest.mark.parametrize("engine", ["torch", "auto"])
@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage", "pickle"])
def test_damaged_weights_are_histotiles_own_words(model, tmp_path, kind, engine):
    copy = edited(model, tmp_path)
    weights = copy / read_card(copy)["weights_file"]
    weights.write_bytes(_broken_weights(kind, weights.read_bytes()))
    with pytest.raises(ModelError) as info:
        Predictor(copy, engine=engine)
    message = str(info.value)
    assert message.startswith(f"{weights}: ")
    assert "weights_only" not in message and "Re-running" not in message
    assert "EOFError" not in message and "PytorchStreamReader" not in message
    expected = {"empty": "the weights file is empty",
                "pickle": "holds pickled Python objects",
                "truncated": "not a readable weights file", "garbage": "torch.save("}[kind]
    assert expected in message
