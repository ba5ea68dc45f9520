"""The probability map as a slide: a single-channel uint8 pyramid that OpenSlide opens,
with the right mpp and the predicted probability at every tile centre."""

from __future__ import annotations

import numpy as np
import openslide
import pandas as pd
import pytest
import tifffile

from histotile.errors import ConfigError, OutputExistsError
from histotile.postprocess import SlidePredictions
from histotile.postprocess.probability_slide import write_probability_slide

WIDTH, HEIGHT, TILE, MPP = 1536, 1024, 128, 0.5


@pytest.fixture(scope="module")
def predictions() -> SlidePredictions:
    xs, ys = np.meshgrid(np.arange(0, WIDTH - TILE + 1, TILE),
                         np.arange(0, HEIGHT - TILE + 1, TILE))
    xs, ys = xs.ravel(), ys.ravel()
    keep = np.arange(xs.size) % 6 != 2
    p = np.random.default_rng(4).random(xs.size)[keep].round(4)
    table = pd.DataFrame({"x": xs[keep], "y": ys[keep], "extent": TILE,
                          "prob_normal": 1 - p, "prob_tumour": p})
    return SlidePredictions("biopsy", "", (WIDTH, HEIGHT), MPP, ("normal", "tumour"), table)


@pytest.mark.parametrize("downsample", [None, 1.0, 4.0])
def test_opens_in_openslide_with_mpp_and_tile_centre_values(predictions, tmp_path,
                                                            downsample):
    path = write_probability_slide(tmp_path / "probability.tif", predictions, "tumour",
                                   downsample=downsample)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].samplesperpixel == 1 and tif.pages[0].dtype == np.uint8
    # OpenSlide accepts the single-channel pyramid (grey read back in R, G and B).
    with openslide.OpenSlide(str(path)) as slide:
        width, height = slide.dimensions
        scale = WIDTH / width
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(MPP * scale)
        assert slide.level_count == len(tifffile.TiffFile(path).pages)
        image = np.asarray(slide.read_region((0, 0), 0, (width, height)))
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 3] == 255).all()
    tiles = predictions.tiles
    cx = ((tiles["x"] + TILE / 2) / scale).astype(int).to_numpy()
    cy = ((tiles["y"] + TILE / 2) / scale).astype(int).to_numpy()
    expected = np.rint(tiles["prob_tumour"].to_numpy() * 255)
    assert np.array_equal(image[cy, cx, 0], expected)
    # Never predicted: 0.
    everywhere = np.ones((HEIGHT // TILE, WIDTH // TILE), bool)
    everywhere[(tiles["y"] // TILE).to_numpy(), (tiles["x"] // TILE).to_numpy()] = False
    gy, gx = np.nonzero(everywhere)
    assert gy.size and (image[((gy + 0.5) * TILE / scale).astype(int),
                              ((gx + 0.5) * TILE / scale).astype(int), 0] == 0).all()


def test_refusals(predictions, tmp_path):
    with pytest.raises(ConfigError, match="downsample"):
        write_probability_slide(tmp_path / "p.tif", predictions, "tumour", downsample=0.5)
    write_probability_slide(tmp_path / "p.tif", predictions, "tumour")
    with pytest.raises(OutputExistsError):
        write_probability_slide(tmp_path / "p.tif", predictions, "tumour")
