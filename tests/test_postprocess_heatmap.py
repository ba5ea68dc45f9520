"""Heatmap slides: exact blending, untouched pixels, the TIFF OpenSlide opens, previews,
the probability image, and refusals that leave nothing half-written."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import openslide
import pandas as pd
import pytest
import tifffile

import histotile
from histotile.errors import (
    ConfigError,
    DatasetError,
    LevelError,
    ModelError,
    OutputExistsError,
)
from histotile.postprocess import (
    BlendStyle,
    HeatmapRenderer,
    SlidePredictions,
    write_heatmap,
)
from histotile.postprocess.blend import blend_reference, colour_map_lut
from histotile.postprocess.legend import LEGEND_HEIGHT, MIN_WIDTH
from histotile.postprocess.render import Colouriser
from histotile.wsi import open_slide
from histotile.wsi.synthetic import write_synthetic_slide
from histotile.wsi.tiff_writer import pyramid_dimensions

WIDTH, HEIGHT, TILE = 1536, 1024, 128
SAMPLE = Path(histotile.__file__).parent / "data" / "CMU-1-Small-Region.svs"


def tile_predictions(name: str, dimensions: tuple[int, int], tile: int = TILE,
                     seed: int = 3, skip_every: int = 5) -> SlidePredictions:
    """Tiles on a regular grid (every ``skip_every``-th left out: never predicted) with
    random tumour probabilities."""
    width, height = dimensions
    xs, ys = np.meshgrid(np.arange(0, width - tile + 1, tile),
                         np.arange(0, height - tile + 1, tile))
    xs, ys = xs.ravel(), ys.ravel()
    keep = np.arange(xs.size) % skip_every != 0
    xs, ys = xs[keep], ys[keep]
    p = np.random.default_rng(seed).random(xs.size).round(3)
    table = pd.DataFrame({"x": xs, "y": ys, "extent": tile, "prob_normal": 1 - p,
                          "prob_tumour": p})
    return SlidePredictions(name, "", dimensions, 0.5, ("normal", "tumour"), table,
                            {"tile_size": tile}, {"name": "test-model"})


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("heatmap") / "biopsy.tif"
    write_synthetic_slide(path, WIDTH, HEIGHT, seed=11, tissue_fraction=0.5)
    return path


@pytest.fixture(scope="module")
def predictions() -> SlidePredictions:
    return tile_predictions("biopsy", (WIDTH, HEIGHT))


def render_level(slide_path: Path, predictions: SlidePredictions, style: BlendStyle,
                 level: int) -> tuple[np.ndarray, np.ndarray]:
    """(rendered heatmap level, the slide's own pixels of that level)."""
    sizes = pyramid_dimensions(WIDTH, HEIGHT, 512)
    with open_slide(slide_path) as slide:
        renderer = HeatmapRenderer(slide, Colouriser(predictions.grid("tumour"), style), sizes)
        height = sizes[level][1]
        rendered = np.concatenate([renderer.render(level, top, min(512, height - top))
                                   for top in range(0, height, 512)])
        original = slide.read_region((0, 0), level, sizes[level])
    return rendered, original


@pytest.mark.parametrize("level", [0, 1])
def test_threshold_blend_equals_formula_and_untouched_pixels_equal_slide(
        slide_path, predictions, level):
    style = BlendStyle("threshold", threshold=0.5, color=(0, 255, 0), alpha=0.4)
    rendered, original = render_level(slide_path, predictions, style, level)
    scale = 2 ** level
    covered = np.zeros(original.shape[:2], bool)
    coloured = 0
    for x, y, p in predictions.tiles[["x", "y", "prob_tumour"]].itertuples(index=False):
        box = np.s_[y // scale:(y + TILE) // scale, x // scale:(x + TILE) // scale]
        covered[box] = True
        if p >= 0.5:
            coloured += 1
            expected = blend_reference(original[box], np.array([0, 255, 0]), 0.4)
            np.testing.assert_array_equal(rendered[box], expected)
        else:
            np.testing.assert_array_equal(rendered[box], original[box])
    assert coloured > 10
    # Never-predicted tiles and the slide's edge strips are untouched.
    np.testing.assert_array_equal(rendered[~covered], original[~covered])
    assert (~covered).sum() > 0


def test_continuous_blend_uses_colormap_of_probability(slide_path, predictions):
    style = BlendStyle("continuous", alpha=0.5, colormap="viridis")
    rendered, original = render_level(slide_path, predictions, style, 0)
    lut = colour_map_lut("viridis")
    below = 0
    for x, y, p in predictions.tiles[["x", "y", "prob_tumour"]].head(40).itertuples(
            index=False):
        box = np.s_[y:y + TILE, x:x + TILE]
        if p < style.floor:  # under the default floor (0.1) the H&E stays untouched
            below += 1
            np.testing.assert_array_equal(rendered[box], original[box])
            continue
        expected = blend_reference(original[box], lut[int(round(p * 255))], 0.5)
        np.testing.assert_array_equal(rendered[box], expected)
    assert style.floor == 0.1 and 0 < below < 40


def test_overlapping_tiles_are_averaged_before_thresholding(slide_path):
    # Two tiles overlapping by half: 0.3 and 0.9 average to 0.6 in the shared part.
    table = pd.DataFrame({"x": [0, 64], "y": [0, 0], "extent": [128, 128],
                          "prob_normal": [0.7, 0.1], "prob_tumour": [0.3, 0.9]})
    preds = SlidePredictions("biopsy", "", (WIDTH, HEIGHT), 0.5, ("normal", "tumour"), table)
    style = BlendStyle("threshold", threshold=0.55, alpha=1.0, color=(255, 0, 0))
    rendered, original = render_level(slide_path, preds, style, 0)
    np.testing.assert_array_equal(rendered[:128, :64], original[:128, :64])  # 0.3 only
    assert np.all(rendered[:128, 64:192] == (255, 0, 0))  # 0.6 and 0.9
    np.testing.assert_array_equal(rendered[128:, :], original[128:, :])


def test_heatmap_tiff_opens_in_openslide_with_levels_and_mpp(slide_path, predictions,
                                                           tmp_path):
    out = tmp_path / "heatmap.tif"
    seen = []
    result = write_heatmap(slide_path, predictions, out, positive_class="tumour",
                           progress=lambda done, total: seen.append((done, total)))
    sizes = pyramid_dimensions(WIDTH, HEIGHT, 512)
    with openslide.OpenSlide(str(out)) as heatmap:
        assert heatmap.level_dimensions == tuple(sizes)
        assert float(heatmap.properties["openslide.mpp-x"]) == pytest.approx(0.5, rel=1e-3)
        decoded = np.asarray(heatmap.read_region((0, 0), 0, (WIDTH, HEIGHT)))[:, :, :3]
    style = BlendStyle("threshold")
    rendered, _ = render_level(slide_path, predictions, style, 0)
    # The file holds the rendered pixels up to JPEG compression.
    assert np.abs(decoded.astype(int) - rendered).mean() < 3.0
    assert result.level_dimensions == sizes
    assert result.tiles_coloured == int((predictions.probabilities("tumour") >= 0.5).sum())
    assert seen[-1] == (sum(h for _, h in sizes),) * 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_reduced_output_and_preview_sizes(slide_path, predictions, tmp_path):
    out, preview = tmp_path / "small.tif", tmp_path / "small.png"
    result = write_heatmap(slide_path, predictions, out, positive_class="tumour", downsample=2,
                           preview_path=preview, preview_size=300, mode="continuous")
    with openslide.OpenSlide(str(out)) as heatmap:
        assert heatmap.dimensions == (WIDTH // 2, HEIGHT // 2)
        assert float(heatmap.properties["openslide.mpp-x"]) == pytest.approx(1.0, rel=1e-3)
    image = cv2.imread(str(preview))
    # 300 px on the long side, legend strip under it, padded to the legend's width.
    assert image.shape == (200 + LEGEND_HEIGHT, max(300, MIN_WIDTH), 3)
    assert result.preview_size == (max(300, MIN_WIDTH), 200 + LEGEND_HEIGHT)
    big = tmp_path / "big.png"
    write_heatmap(slide_path, predictions, tmp_path / "b.tif", positive_class="tumour",
                  preview_path=big, preview_size=1200)
    assert cv2.imread(str(big)).shape == (800 + LEGEND_HEIGHT, 1200, 3)


def test_probability_image_holds_averaged_probabilities(slide_path, predictions, tmp_path):
    out, bare = tmp_path / "h.tif", tmp_path / "p.tif"
    write_heatmap(slide_path, predictions, out, positive_class="tumour", probability_path=bare)
    image = tifffile.imread(bare)
    assert image.dtype == np.float32 and image.shape == (HEIGHT // TILE, WIDTH // TILE)
    expected = np.full(image.shape, np.nan, np.float32)
    for x, y, p in predictions.tiles[["x", "y", "prob_tumour"]].itertuples(index=False):
        expected[y // TILE, x // TILE] = p
    np.testing.assert_array_equal(np.isnan(image), np.isnan(expected))
    np.testing.assert_allclose(image[~np.isnan(image)], expected[~np.isnan(expected)],
                               atol=1e-6)


def test_real_sample_slide_reduced_heatmap(tmp_path):
    with open_slide(SAMPLE) as slide:
        dims, mpp = slide.dimensions, slide.mpp
    preds = tile_predictions("CMU-1-Small-Region", dims, tile=256, skip_every=3)
    out = tmp_path / "cmu.tif"
    result = write_heatmap(SAMPLE, preds, out, positive_class="tumour", downsample=2,
                           preview_path=tmp_path / "cmu.png", preview_size=512)
    with openslide.OpenSlide(str(out)) as heatmap:
        assert heatmap.dimensions == (round(dims[0] / 2), round(dims[1] / 2))
        assert float(heatmap.properties["openslide.mpp-x"]) == pytest.approx(mpp * 2,
                                                                             rel=1e-3)
        out_dims = heatmap.dimensions
        pixels = np.asarray(heatmap.read_region((0, 0), 0, out_dims))[:, :, :3]
    # Coloured tiles move green 40 % of the way to 255 (red and blue 40 % to 0); the
    # others keep the slide's pixels (up to resampling and JPEG).
    with open_slide(SAMPLE) as slide:
        small = cv2.resize(slide.read_region((0, 0), 0, dims), out_dims,
                           interpolation=cv2.INTER_AREA)
    for x, y, p in preds.tiles[["x", "y", "prob_tumour"]].itertuples(index=False):
        box = np.s_[y // 2 + 8:(y + 256) // 2 - 8, x // 2 + 8:(x + 256) // 2 - 8]
        got = pixels[box].reshape(-1, 3).mean(0)
        slide_rgb = small[box].reshape(-1, 3).mean(0)
        expected = 0.6 * slide_rgb + 0.4 * np.array([0, 255, 0]) if p >= 0.5 else slide_rgb
        np.testing.assert_allclose(got, expected, atol=2.5)
    assert result.mpp == pytest.approx(mpp * 2)


def test_existing_output_is_refused_and_kept(slide_path, predictions, tmp_path):
    out = tmp_path / "heatmap.tif"
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="heatmap.tif"):
        write_heatmap(slide_path, predictions, out, positive_class="tumour")
    assert out.read_bytes() == b"precious"
    # An existing preview is refused before the TIFF is written.
    preview = tmp_path / "preview.png"
    preview.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="preview.png"):
        write_heatmap(slide_path, predictions, tmp_path / "new.tif", positive_class="tumour",
                      preview_path=preview)
    assert not (tmp_path / "new.tif").exists() and preview.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heatmap.tif", "preview.png"]
    write_heatmap(slide_path, predictions, out, positive_class="tumour", overwrite=True)
    with openslide.OpenSlide(str(out)) as heatmap:
        assert heatmap.dimensions == (WIDTH, HEIGHT)


def test_predictions_of_another_slide_are_refused(slide_path, predictions, tmp_path):
    wrong_size = tile_predictions("biopsy", (WIDTH + 10, HEIGHT))
    with pytest.raises(DatasetError, match="1546x1024"):
        write_heatmap(slide_path, wrong_size, tmp_path / "h.tif", positive_class="tumour")
    wrong_name = tile_predictions("other-slide", (WIDTH, HEIGHT))
    with pytest.raises(DatasetError, match="other-slide"):
        write_heatmap(slide_path, wrong_name, tmp_path / "h.tif", positive_class="tumour")
    assert list(tmp_path.iterdir()) == []
    write_heatmap(slide_path, wrong_name, tmp_path / "h.tif", positive_class="tumour",
                  match_name=False, downsample=4)
    assert (tmp_path / "h.tif").exists()


def test_bad_requests_are_refused_before_writing(slide_path, predictions, tmp_path):
    out = tmp_path / "h.tif"
    with pytest.raises(ModelError, match="mitosis"):
        write_heatmap(slide_path, predictions, out, positive_class="mitosis")
    with pytest.raises(ConfigError, match="alpha"):
        write_heatmap(slide_path, predictions, out, positive_class="tumour", alpha=1.5)
    with pytest.raises(ConfigError, match="colormap"):
        write_heatmap(slide_path, predictions, out, positive_class="tumour",
                      mode="continuous", colormap="rainbow-unicorn")
    with pytest.raises(ConfigError, match="the slide itself"):
        write_heatmap(slide_path, predictions, slide_path, positive_class="tumour",
                      overwrite=True)
    with pytest.raises(ConfigError, match="downsample"):
        write_heatmap(slide_path, predictions, out, positive_class="tumour", downsample=0.5)
    assert list(tmp_path.iterdir()) == []
    assert open_slide(slide_path).dimensions == (WIDTH, HEIGHT)


def test_wide_levels_read_in_chunks_give_the_same_pixels(slide_path, predictions,
                                                        monkeypatch):
    from histotile.postprocess import heatmap as heatmap_module

    style = BlendStyle("threshold", threshold=0.3)
    whole, original = render_level(slide_path, predictions, style, 0)
    monkeypatch.setattr(heatmap_module, "_READ_CHUNK", 200)  # 1536 px: 8 chunks
    chunked, _ = render_level(slide_path, predictions, style, 0)
    np.testing.assert_array_equal(chunked, whole)
    assert not np.array_equal(whole, original)


def test_output_at_a_stored_level(slide_path, predictions, tmp_path):
    out = tmp_path / "level1.tif"
    result = write_heatmap(slide_path, predictions, out, positive_class="tumour", level=1)
    assert result.downsample == pytest.approx(2.0)
    with openslide.OpenSlide(str(out)) as heatmap:
        assert heatmap.dimensions == (WIDTH // 2, HEIGHT // 2)
        decoded = np.asarray(heatmap.read_region((0, 0), 0, heatmap.dimensions))[:, :, :3]
    rendered, _ = render_level(slide_path, predictions, BlendStyle(), 1)
    assert np.abs(decoded.astype(int) - rendered).mean() < 3.0
    with pytest.raises(LevelError, match="level 7"):
        write_heatmap(slide_path, predictions, tmp_path / "x.tif", positive_class="tumour",
                      level=7)
    with pytest.raises(ConfigError, match="not both"):
        write_heatmap(slide_path, predictions, tmp_path / "x.tif", positive_class="tumour",
                      level=1, downsample=2)
    assert not (tmp_path / "x.tif").exists()


def test_failure_mid_write_leaves_nothing(slide_path, predictions, tmp_path, monkeypatch):
    calls = []
    original = HeatmapRenderer.render

    def failing(self, level, top, rows):
        calls.append((level, top))
        if level == 1:
            raise RuntimeError("disk on fire")
        return original(self, level, top, rows)

    monkeypatch.setattr(HeatmapRenderer, "render", failing)
    out = tmp_path / "h.tif"
    out.write_bytes(b"previous heatmap")
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_heatmap(slide_path, predictions, out, positive_class="tumour", overwrite=True)
    assert (0, 0) in calls and (1, 0) in calls
    assert out.read_bytes() == b"previous heatmap"  # the old output survives intact
    assert [p.name for p in tmp_path.iterdir()] == ["h.tif"]  # no temporary left behind


def test_the_old_keyword_class_name_still_draws_the_same_heatmap(slide_path, predictions,
                                                                 tmp_path):
    """``class_name=``, the old name of ``positive_class=``: the same heatmap and preview
    with a DeprecationWarning naming the new name (at the caller's line), the result's old
    attribute still read; both names given is refused before anything is written."""
    def draw(name: str, **keyword):
        return write_heatmap(slide_path, predictions, tmp_path / f"{name}.tif", downsample=4,
                             preview_path=tmp_path / f"{name}.png", **keyword)

    new = draw("new", positive_class="tumour")
    with pytest.warns(DeprecationWarning, match="write_heatmap\\(\\): 'class_name' is "
                      "deprecated, use 'positive_class'") as said:
        old = draw("old", class_name="tumour")
    assert [Path(w.filename).name for w in said] == [Path(__file__).name]
    assert old.positive_class == new.positive_class == "tumour"
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "old.tif"),
                                  tifffile.imread(tmp_path / "new.tif"))
    assert (tmp_path / "old.png").read_bytes() == (tmp_path / "new.png").read_bytes()
    with pytest.warns(DeprecationWarning, match="HeatmapResult: 'class_name' is deprecated"):
        assert old.class_name == "tumour"
    with pytest.raises(ConfigError, match="class_name and positive_class are one argument"):
        draw("both", class_name="tumour", positive_class="tumour")
    assert not (tmp_path / "both.tif").exists() and not (tmp_path / "both.png").exists()


@pytest.mark.parametrize("where, name", [
    ("histotile.postprocess.heatmap", "write_heatmap"),
    ("histotile.postprocess.montage", "write_montage"),
    ("histotile.postprocess.evaluation_pictures", "write_side_by_side"),
    ("histotile.postprocess.qupath", "write_qupath"),
    ("histotile.postprocess.probability_slide", "write_probability_slide"),
    ("histotile.postprocess.explain", "explain_tiles"),
    ("histotile.postprocess.explain", "write_explanations"),
])
def test_every_public_writer_takes_the_old_keyword_class_name(where, name):
    """Each public function that says which class it shows or decides names it
    ``positive_class`` and still takes ``class_name=`` (both at once: refused before any
    argument is looked at)."""
    import importlib
    import inspect

    function = getattr(importlib.import_module(where), name)
    parameters = inspect.signature(function).parameters
    assert "positive_class" in parameters and "class_name" not in parameters
    with pytest.raises(ConfigError, match=f"{name}\\(\\): class_name and positive_class"):
        function(None, None, None, None, class_name="a", positive_class="b")
