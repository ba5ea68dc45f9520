"""Pictures people can read: scale bars to scale, viridis over tiles above a floor,
legends with the slide name, and the montage of kept tiles framed by prediction."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from histotile.errors import ConfigError
from histotile.postprocess import BlendStyle, SlidePredictions, write_heatmap
from histotile.postprocess.blend import blend_reference, colour_map_lut
from histotile.postprocess.legend import LEGEND_HEIGHT
from histotile.postprocess.montage import render_montage, write_montage
from histotile.postprocess.qupath import class_colour
from histotile.postprocess.render import Colouriser
from histotile.postprocess.scalebar import choose_scale_bar, draw_scale_bar
from histotile.wsi import open_slide
from histotile.wsi.synthetic import write_synthetic_slide

WIDTH, HEIGHT, TILE, MPP = 1536, 1024, 128, 0.5


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("pictures") / "biopsy.tif"
    write_synthetic_slide(path, WIDTH, HEIGHT, seed=5, mpp=MPP, tissue_fraction=0.6)
    return path


@pytest.fixture(scope="module")
def predictions() -> SlidePredictions:
    xs, ys = np.meshgrid(np.arange(0, WIDTH - TILE + 1, TILE),
                         np.arange(0, HEIGHT - TILE + 1, TILE))
    xs, ys = xs.ravel(), ys.ravel()
    keep = np.arange(xs.size) % 4 != 1
    p = np.random.default_rng(8).random(xs.size)[keep].round(3)
    table = pd.DataFrame({"x": xs[keep], "y": ys[keep], "extent": TILE,
                          "prob_normal": 1 - p, "prob_tumour": p})
    return SlidePredictions("biopsy", "", (WIDTH, HEIGHT), MPP, ("normal", "tumour"), table,
                            {}, {"name": "test-model"})


def bar_length(image: np.ndarray) -> int:
    """Length in pixels of the longest run of near-black pixels in the bottom rows."""
    dark = (image[-40:].max(axis=2) < 40)
    best = 0
    for row in dark:
        padded = np.concatenate([[0], row.astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(padded))
        if edges.size:
            best = max(best, int((edges[1::2] - edges[::2]).max()))
    return best


@pytest.mark.parametrize("mpp, width", [(0.5, 1000), (8.0, 300), (0.25, 2048), (33.3, 512)])
def test_scale_bar_pixels_are_microns_over_mpp(mpp, width):
    bar = choose_scale_bar(mpp, width)
    assert bar.pixels == round(bar.microns / mpp)
    assert bar.pixels <= 0.2 * width + 1
    assert str(bar.microns / 1000 if bar.microns >= 1000 else bar.microns).rstrip("0") \
        .rstrip(".") in bar.label
    assert float(f"{bar.microns:.0e}".split("e")[0]) in (1, 2, 5)
    image = np.full((200, width, 3), 255, np.uint8)
    drawn = draw_scale_bar(image, mpp)
    assert drawn == bar and bar_length(image) == bar.pixels
    assert choose_scale_bar(None, width) is None


def test_heatmap_preview_has_scale_bar_and_name(slide_path, predictions, tmp_path):
    preview = tmp_path / "preview.png"
    result = write_heatmap(slide_path, predictions, tmp_path / "h.tif", positive_class="tumour",
                           mode="continuous", floor=0.3, preview_path=preview,
                           preview_size=512)
    image = cv2.cvtColor(cv2.imread(str(preview)), cv2.COLOR_BGR2RGB)
    picture = image[:-LEGEND_HEIGHT]
    preview_mpp = MPP * WIDTH / 512
    assert bar_length(picture) == choose_scale_bar(preview_mpp, 512).pixels
    assert result.tiles_coloured == int((predictions.probabilities("tumour") >= 0.3).sum())


def test_viridis_is_the_default_and_floor_leaves_low_tiles_bare(slide_path, predictions):
    style = BlendStyle("continuous", alpha=0.6, floor=0.4)
    assert style.colormap == "viridis"
    lut = colour_map_lut("viridis")
    assert tuple(lut[0]) == (68, 1, 84) and tuple(lut[255]) == (253, 231, 37)
    with open_slide(slide_path) as slide:
        original = slide.read_region((0, 0), 0, (WIDTH, HEIGHT))
    rendered = Colouriser(predictions.grid("tumour"), style).blend_image(original.copy(), 1.0)
    for x, y, p in predictions.tiles[["x", "y", "prob_tumour"]].itertuples(index=False):
        box = np.s_[y:y + TILE, x:x + TILE]
        if p >= 0.4:
            expected = blend_reference(original[box], lut[int(round(p * 255))], 0.6)
            np.testing.assert_array_equal(rendered[box], expected)
        else:
            np.testing.assert_array_equal(rendered[box], original[box])
    with pytest.raises(ConfigError, match="floor"):
        BlendStyle("continuous", floor=1.5)
    assert colour_map_lut("cividis").shape == (256, 3)


def test_montage_keeps_tile_pixels_and_frames_them_by_class(slide_path, predictions,
                                                            tmp_path):
    with open_slide(slide_path) as slide:
        image = render_montage(slide, predictions, "tumour", threshold=0.5, size=768)
        thumb = np.array(slide.thumbnail(768))
    scale = WIDTH / image.shape[1]  # 2 level-0 px per montage px: tiles are 64 px
    side = round(TILE / scale)
    kept = set(zip(predictions.tiles["x"], predictions.tiles["y"]))
    for (x, y), p in zip(zip(predictions.tiles["x"], predictions.tiles["y"]),
                         predictions.tiles["prob_tumour"]):
        left, top = round(x / scale), round(y / scale)
        inner = np.s_[top + 3:top + side - 3, left + 3:left + side - 3]
        np.testing.assert_array_equal(image[inner], thumb[inner])
        colour = class_colour(1 if p >= 0.5 else 0)
        assert tuple(image[top + side // 2, left]) == tuple(colour)
    dropped = [(x, y) for x in range(0, WIDTH - TILE + 1, TILE)
               for y in range(0, HEIGHT - TILE + 1, TILE) if (x, y) not in kept]
    assert dropped
    for x, y in dropped:
        left, top = round(x / scale), round(y / scale)
        assert (image[top + 3:top + side - 3, left + 3:left + side - 3] == 255).all()
    path = write_montage(slide_path, predictions, tmp_path / "montage.png",
                         positive_class="tumour", size=768)
    written = cv2.imread(str(path))
    assert written.shape[1] == 768 and written.shape[0] > image.shape[0]
    assert bar_length(cv2.cvtColor(written, cv2.COLOR_BGR2RGB)[:image.shape[0]]) == \
        choose_scale_bar(MPP * scale, 768).pixels
