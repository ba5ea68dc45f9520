"""Probability maps (overlaps averaged, never-predicted tiles NaN) and the blend."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from histotile.errors import ConfigError
from histotile.postprocess import ProbabilityGrid, SlidePredictions, probability_map
from histotile.postprocess.blend import (
    blend_colours,
    blend_constant,
    blend_reference,
    colour_map_lut,
    constant_lut,
)
from histotile.postprocess.render import BlendStyle, Colouriser


def preds(xs, ys, extent, p, dimensions=(512, 256)) -> SlidePredictions:
    p = np.asarray(p, float)
    table = pd.DataFrame({"x": xs, "y": ys, "extent": extent, "prob_a": 1 - p, "prob_b": p})
    return SlidePredictions("s", "", dimensions, None, ("a", "b"), table)


def brute_force_map(xs, ys, extent, p, width, height, downsample_x, downsample_y=None):
    """Mean of the tiles covering each map pixel's centre, from an explicit pixel-by-tile
    coverage matrix (independent of the cell grid the library uses)."""
    downsample_y = downsample_x if downsample_y is None else downsample_y
    cy, cx = np.meshgrid((np.arange(height) + 0.5) * downsample_y,
                         (np.arange(width) + 0.5) * downsample_x, indexing="ij")
    cx, cy = cx.ravel()[:, None], cy.ravel()[:, None]
    xs, ys = np.asarray(xs)[None, :], np.asarray(ys)[None, :]
    inside = (xs <= cx) & (cx < xs + extent) & (ys <= cy) & (cy < ys + extent)
    hits = inside.sum(1)
    with np.errstate(invalid="ignore"):
        mean = (inside @ np.asarray(p, float)) / hits
    return np.where(hits > 0, mean, np.nan).reshape(height, width)


def test_non_overlapping_tiles_and_background():
    xs, ys, p = [0, 64, 192], [0, 0, 64], [0.2, 0.7, 1.0]
    image = probability_map(preds(xs, ys, 64, p), "b", downsample=64)
    expected = np.full((4, 8), np.nan)
    expected[0, 0], expected[0, 1], expected[1, 3] = 0.2, 0.7, 1.0
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert image.dtype == np.float32
    zero = probability_map(preds(xs, ys, 64, p), "b", downsample=64, fill=0.0)
    assert zero[2, 2] == 0.0 and zero[0, 1] == pytest.approx(0.7)


def test_overlapping_tiles_are_averaged():
    rng = np.random.default_rng(5)
    # Stride 32 with 64-px tiles: up to four tiles over each point; some left out.
    xs, ys = np.meshgrid(np.arange(0, 449, 32), np.arange(0, 193, 32))
    xs, ys = xs.ravel(), ys.ravel()
    keep = rng.random(xs.size) > 0.3
    xs, ys = xs[keep], ys[keep]
    p = rng.random(xs.size)
    for downsample in (8, 16, 12.5):
        image = probability_map(preds(xs, ys, 64, p), "b", downsample=downsample)
        height, width = image.shape
        expected = brute_force_map(xs, ys, 64, p, width, height, 512 / width, 256 / height)
        np.testing.assert_array_equal(np.isnan(image), np.isnan(expected))
        np.testing.assert_allclose(image[~np.isnan(image)], expected[~np.isnan(expected)],
                                   atol=1e-6)


def test_grid_counts_and_empty_grid():
    grid = ProbabilityGrid.from_tiles([0, 32], [0, 0], 64, [0.1, np.nan])
    assert grid.counts.max() == 1  # the NaN tile is ignored
    empty = ProbabilityGrid.from_tiles([], [], 64, [])
    assert empty.empty and np.isnan(empty.render(4, 3, 10.0)).all()
    with pytest.raises(ConfigError, match="downsample"):
        probability_map(preds([0], [0], 64, [0.5]), "b", downsample=0)


def test_fast_blends_equal_reference_formula():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    colours = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    mask = rng.random((64, 96)) > 0.5
    for alpha in (0.0, 0.25, 0.4, 0.5, 1.0):
        expected = np.where(mask[..., None], blend_reference(pixels, colours, alpha), pixels)
        np.testing.assert_array_equal(blend_colours(pixels.copy(), colours, alpha, mask),
                                       expected)
    for alpha in (0.3, 0.4, 0.7, 0.123):
        lut = constant_lut((0, 255, 0), alpha)
        expected = np.where(mask[..., None],
                            blend_reference(pixels, np.array([0, 255, 0]), alpha), pixels)
        np.testing.assert_array_equal(blend_constant(pixels.copy(), lut, mask), expected)


@pytest.mark.parametrize("mode", ["threshold", "continuous"])
def test_colouriser_paths_agree_with_per_pixel_formula(mode):
    """Both the run path (large cells) and the per-pixel path (cells a few pixels wide)
    give the formula applied to each pixel's averaged probability."""
    rng = np.random.default_rng(1)
    xs, ys = np.meshgrid(np.arange(0, 480, 32), np.arange(0, 224, 32))
    xs, ys = xs.ravel(), ys.ravel()
    p = rng.random(xs.size)
    style = BlendStyle(mode, threshold=0.4, alpha=0.3, color=(255, 0, 128),
                       colormap="magma")
    colouriser = Colouriser(ProbabilityGrid.from_tiles(xs, ys, 64, p), style)
    lut = colour_map_lut("magma")
    for downsample in (1.0, 4.0, 16.0):
        width, height = int(512 / downsample), int(256 / downsample)
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        prob = brute_force_map(xs, ys, 64, p, width, height, downsample)
        if mode == "threshold":
            colours = np.broadcast_to(np.array(style.color), pixels.shape)
            mask = np.nan_to_num(prob, nan=-1) >= 0.4
        else:
            colours = lut[np.clip(np.rint(np.nan_to_num(prob) * 255), 0, 255).astype(int)]
            mask = ~np.isnan(prob)
        expected = np.where(mask[..., None], blend_reference(pixels, colours, 0.3), pixels)
        np.testing.assert_array_equal(colouriser.blend_image(pixels.copy(), downsample),
                                       expected)
        # Bands of the same image give the same pixels as the whole image.
        top = height // 3
        band = colouriser.blend_band(pixels[top:top + 7].copy(), top, downsample)
        np.testing.assert_array_equal(band, expected[top:top + 7])


def test_bad_styles_are_refused():
    with pytest.raises(ConfigError, match="mode"):
        BlendStyle("sparkles")
    with pytest.raises(ConfigError, match="threshold"):
        BlendStyle(threshold=2)
    with pytest.raises(ConfigError, match="color"):
        BlendStyle(color=(0, 300, 0))
