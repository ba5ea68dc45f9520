"""Colour and blur augmentation: names, seeding, what each transform does, and training
batches augmented on the fly."""

from __future__ import annotations

import numpy as np
import pytest
from tiling_fixtures import SAMPLE, read_all

from histotile.errors import ConfigError
from histotile.models import TrainSettings
from histotile.models.augment import (
    augment,
    augmentation_names,
    blur,
    colour,
    flip,
    hed_jitter,
)
from histotile.tiling.artefacts import focus_measure


@pytest.fixture(scope="module")
def tiles():
    pixels = read_all(SAMPLE)
    return np.stack([pixels[y:y + 96, x:x + 96] for y in (900, 1100, 1300, 1500)
                     for x in (700, 900, 1100)])


def test_names():
    assert augmentation_names(True) == ("flip",)
    assert augmentation_names(False) == augmentation_names("none") == ()
    assert augmentation_names("colour,blur") == ("flip", "colour", "blur")
    assert augmentation_names(["Color"]) == ("flip", "colour")
    with pytest.raises(ConfigError, match="sparkle"):
        augmentation_names("colour,sparkle")
    with pytest.raises(ConfigError, match="sparkle"):
        TrainSettings(augment="sparkle").resolved()
    assert TrainSettings(augment="colour,blur").resolved().augment == "colour,blur"


def test_seeded_and_per_tile(tiles):
    a = augment(tiles, np.random.default_rng(3), "colour,blur")
    b = augment(tiles, np.random.default_rng(3), "colour,blur")
    c = augment(tiles, np.random.default_rng(4), "colour,blur")
    assert a.dtype == np.uint8 and a.shape == tiles.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_colour_changes_colour_not_structure(tiles):
    out = colour(tiles, np.random.default_rng(0))
    change = np.abs(out.astype(int) - tiles).mean(axis=(1, 2, 3))
    assert (change > 0.5).all() and (change < 30).all()
    # Per-tile colour shifts: tiles' mean colours move by different amounts.
    shifts = out.reshape(len(tiles), -1, 3).mean(1) - tiles.reshape(len(tiles), -1, 3).mean(1)
    assert shifts.std(axis=0).max() > 1.0
    # Structure kept: each output tile correlates with its input.
    for before, after in zip(tiles, out):
        r = np.corrcoef(before.mean(-1).ravel(), after.mean(-1).ravel())[0, 1]
        assert r > 0.9


def test_hed_jitter_leaves_unstained_glass_nearly_white():
    glass = np.full((2, 8, 8, 3), 255, np.uint8)
    out = hed_jitter(glass, np.random.default_rng(0))
    assert out.min() >= 255 * np.exp(-0.05 * 1.8) - 1  # at most a shift of 0.05 per stain


def test_blur_softens_about_half_the_tiles(tiles):
    out = blur(tiles, np.random.default_rng(0))
    changed = [not np.array_equal(a, b) for a, b in zip(tiles, out)]
    assert 2 <= sum(changed) <= len(tiles) - 2
    for before, after, was in zip(tiles, out, changed):
        if was:
            assert focus_measure(after, 0.5) < focus_measure(before, 0.5)


def test_flip_only_moves_pixels(tiles):
    out = flip(tiles, np.random.default_rng(0))
    for before, after in zip(tiles, out):
        np.testing.assert_array_equal(np.sort(before.reshape(-1, 3), axis=0),
                                      np.sort(after.reshape(-1, 3), axis=0))


def test_training_batches_are_augmented_on_the_fly_by_name(tmp_path):
    from histotile.models.data import load_tiles
    from histotile.models.synthetic import write_stain_slides
    from histotile.models.tile_source import TileSource

    table = load_tiles(write_stain_slides(tmp_path, patients=2, grid=(3, 2), tile_size=64))
    source = TileSource(table.reader(), workers=0)
    rows = np.arange(len(table.frame))
    raw = np.concatenate([t for _, t in source.batches(rows, 16)])
    for setting in (True, "colour,blur"):
        batches = list(source.batches(rows, 16, shuffle=True, rng=np.random.default_rng(7),
                                      augment=setting))
        replay = np.random.default_rng(7)
        order = rows[replay.permutation(rows.size)]
        expected = augment(raw[order], replay, setting)
        np.testing.assert_array_equal(np.concatenate([i for i, _ in batches]), order)
        np.testing.assert_array_equal(np.concatenate([t for _, t in batches]), expected)
