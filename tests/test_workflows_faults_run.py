"""Faults of ``histotile run`` and ``explain`` found by the audit of issue 23: a level
chosen on a slide without a resolution while the model records its own, slides that give
no tile (with the reason), and ``explain`` taking ``--level`` as ``run`` does."""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from histotile.workflows.cli.main import cli
from histotile.wsi import open_slide
from histotile.wsi.synthetic import write_synthetic_slide

SIDE = 64


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> pathlib.Path:
    """A seeded LeNet whose card records 20x (0.5 um/px) training tiles."""
    import torch

    from histotile.models import create, get_spec
    from histotile.models.card import build_card, write_card
    from histotile.models.torch_backend import save

    directory = tmp_path_factory.mktemp("model") / "lenet"
    directory.mkdir()
    torch.manual_seed(0)
    weights = save(create("lenet", 2, SIDE), directory)
    write_card(build_card(architecture="lenet", backend="torch", description="test",
                          classes=["normal", "tumour"], tile_size=SIDE,
                          weights_file=weights,
                          normalisation=get_spec("lenet").normalisation(),
                          geometry={"tile_mpp": 0.5, "tile_downsample": 1.0,
                                    "magnification": 20.0},
                          settings={"positive_class": "tumour"}, data={}, metrics={},
                          final_epochs=None), directory)
    return directory


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> pathlib.Path:
    """``colour.png`` and ``grey.png``: the same synthetic tissue, no mpp recorded."""
    folder = tmp_path_factory.mktemp("slides")
    write_synthetic_slide(folder / "source.tif", 384, 384, seed=1, tile_size=128,
                          tissue_fraction=0.6)
    with open_slide(folder / "source.tif") as source:
        rgb = np.asarray(source.read_region((0, 0), 0, (384, 384)))
    Image.fromarray(rgb).save(folder / "colour.png")
    Image.fromarray(rgb.mean(axis=2).astype(np.uint8)).save(folder / "grey.png")
    return folder


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


def test_run_at_a_level_on_a_slide_without_mpp_warns_about_the_unknown_scale(model, slides,
                                                                            tmp_path):
    out = tmp_path / "run"
    code, output = invoke("run", slides / "colour.png", slides / "grey.png", "--model",
                          model, "--out", out, "--level", "0", "--engine", "torch",
                          "--no-geojson")
    assert code == 0, output
    rows = pd.read_csv(out / "run-report.csv", keep_default_na=False).set_index("slide")
    for name in ("colour", "grey"):
        assert "the slide records no resolution (mpp)" in rows.loc[name, "warning"]
        assert "training tiles (20x)" in rows.loc[name, "warning"]
    assert int(rows.loc["colour", "tiles"]) > 0
    assert int(rows.loc["grey", "tiles"]) == 0
    assert "no tissue tile: the slide has no colour (greyscale)" in rows.loc["grey", "warning"]
    assert "no tissue tile" not in rows.loc["colour", "warning"]
    assert "records no resolution" in output  # on the console too


def test_tile_warns_about_a_greyscale_slide(slides, tmp_path):
    code, output = invoke("tile", slides / "grey.png", slides / "colour.png", "--out",
                          tmp_path / "t", "--tile-size", "64")
    assert code == 0, output
    rows = pd.read_csv(tmp_path / "t" / "tile-report.csv",
                       keep_default_na=False).set_index("slide")
    assert rows.loc["grey", "warning"].startswith("no tissue tile: the slide has no colour")
    assert rows.loc["colour", "warning"] == ""


def test_explain_takes_a_level_for_a_slide_without_mpp(model, slides, tmp_path):
    out = tmp_path / "explain"
    code, output = invoke("explain", slides / "colour.png", "--model", model, "--out", out,
                          "--level", "0", "--top", "2")
    assert code == 0, output
    assert (out / "colour" / "explanations.html").is_file()
    code, output = invoke("explain", slides / "colour.png", "--model", model, "--out",
                          tmp_path / "without", "--top", "2")
    assert code == 1  # without a level, the unknown scale is an error naming --level
    assert "records no microns per pixel" in output and "--level" in output
