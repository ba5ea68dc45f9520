"""The fast batched stain kernels against references written the slow, obvious way
(float64 numpy, one tile at a time, full sorts) on real tiles of the bundled slide: every
output pixel within one grey level, nearly all identical; and the selection helpers
against numpy's sort and percentile exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from tiling_fixtures import SAMPLE, read_all

from histotile.tiling.macenko import _percentile_last, _smallest
from histotile.tiling.stain import MacenkoNormaliser, ReinhardNormaliser, normalise_tiles


@pytest.fixture(scope="module")
def pixels():
    return read_all(SAMPLE)


def real_tiles(pixels, size=64, count=48):
    """``count`` tiles of the slide, the most stained first, plus glass."""
    h, w = (s // size * size for s in pixels.shape[:2])
    grid = pixels[:h, :w].reshape(h // size, size, w // size, size, 3).swapaxes(1, 2)
    tiles = grid.reshape(-1, size, size, 3)
    order = np.argsort(tiles.reshape(len(tiles), -1).mean(axis=1))
    return np.ascontiguousarray(np.concatenate([tiles[order[:count - 2]],
                                                tiles[order[-2:]]]))


def macenko_reference(normaliser, tile):
    """Macenko as published (HEnorm_python), in float64 with full percentiles and a
    least-squares solve; None where the tile has too little stain."""
    io, beta, alpha = normaliser.io, normaliser.beta, normaliser.alpha
    od = -np.log((tile.reshape(-1, 3).astype(np.float64) + 1) / io)
    stained = od[(od >= beta).all(axis=1)]
    if len(stained) < normaliser.min_pixels:
        return None
    _, vectors = np.linalg.eigh(np.cov(stained.T))
    plane = vectors[:, 1:3] * np.where(vectors[:, 1:3].sum(axis=0) < 0, -1, 1)
    projected = stained @ plane
    phi = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(phi, [alpha, 100 - alpha])
    v_low = plane @ [np.cos(low), np.sin(low)]
    v_high = plane @ [np.cos(high), np.sin(high)]
    matrix = np.stack([v_low, v_high] if v_low[0] > v_high[0] else [v_high, v_low], 1)
    concentrations = np.linalg.lstsq(matrix, od.T, rcond=None)[0]
    maxima = np.percentile(concentrations, 99, axis=1)
    scaled = concentrations * (normaliser.max_concentrations / maxima)[:, None]
    out = io * np.exp(-(normaliser.stain_matrix @ scaled))
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8).T.reshape(tile.shape)


def reinhard_reference(normaliser, tile):
    lab = cv2.cvtColor(tile.astype(np.float32) / 255, cv2.COLOR_RGB2LAB).astype(np.float64)
    flat = lab.reshape(-1, 3)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    if std[0] < normaliser.min_std:
        return None
    lab = (lab - mean) / std * normaliser.stds + normaliser.means
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB).astype(np.float64)
    return np.clip(np.floor(rgb * 255 + 0.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method, reference", [(MacenkoNormaliser, macenko_reference),
                                               (ReinhardNormaliser, reinhard_reference)])
@pytest.mark.parametrize("size", [64, 128])
def test_batch_kernels_match_the_obvious_reference(pixels, method, reference, size):
    normaliser = method().fit(pixels[1600:1856, 800:1056])
    tiles = real_tiles(pixels, size, count=48 if size == 64 else 16)
    out, failures = normalise_tiles(normaliser, tiles)
    expected_failures = 0
    differences = []
    for tile, got in zip(tiles, out):
        expected = reference(normaliser, tile)
        if expected is None:
            expected_failures += 1
            assert (got == tile).all()
            continue
        differences.append(np.abs(got.astype(int) - expected))
    assert failures == expected_failures >= 1  # the glass tiles
    differences = np.stack(differences)
    assert differences.max() <= 1
    assert (differences > 0).mean() < 0.01
    # ...and the tiles were changed, not passed through.
    assert np.abs(out[:-2].astype(int) - tiles[:-2]).mean() > 3


def test_smallest_is_the_head_of_a_full_sort_with_ties_and_infinities():
    rng = np.random.default_rng(1)
    for _ in range(200):
        rows, size = int(rng.integers(1, 5)), int(rng.choice([8, 64, 400, 4096, 4100]))
        values = rng.normal(size=(rows, size)).astype(np.float32)
        if rng.random() < 0.5:
            values = np.round(values * 3) / 3  # many ties
        values[rng.random((rows, size)) < rng.uniform(0, 0.9)] = np.inf
        k = int(rng.integers(1, max(2, size // 50)))
        expected = np.sort(values, axis=1)[:, :k]
        assert np.array_equal(_smallest(values, k), expected)


def test_percentile_last_equals_numpy():
    rng = np.random.default_rng(2)
    for _ in range(100):
        size = int(rng.choice([5, 100, 4096, 16384]))
        values = rng.gamma(2.0, 1.0, size=(3, 2, size)).astype(np.float32)
        if rng.random() < 0.5:
            values = np.round(values)
        q = float(rng.choice([1.0, 50.0, 99.0, 99.9]))
        expected = np.percentile(values.astype(np.float64), q, axis=-1)
        np.testing.assert_allclose(_percentile_last(values, q), expected, rtol=0,
                                   atol=1e-9)


def test_largest_is_the_top_of_a_full_sort():
    from histotile.tiling.macenko import _largest

    rng = np.random.default_rng(3)
    for rows, size, k in ((5, 4096, 42), (3, 4096, 400), (4, 1000, 7), (2, 64, 64)):
        values = rng.standard_normal((rows, size)).astype(np.float32)
        values[0, ::7] = -np.inf  # masked-out values, as the percentiles key them
        values[1, :5] = values[1, 5]  # ties
        expected = -np.sort(-values, axis=1)[:, :k]
        assert np.array_equal(_largest(values, k), expected)
