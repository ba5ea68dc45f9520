"""Level choice by magnification or mpp, with and without metadata."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from histotile.errors import LevelError, MetadataMissingError
from histotile.wsi import choose_level, open_slide
from histotile.wsi.synthetic import write_synthetic_slide


def test_exact_levels_by_mpp():
    downsamples = [1.0, 4.0, 16.0]
    choice = choose_level(downsamples, base_mpp=0.25, mpp=1.0)
    assert (choice.level, choice.scale) == (1, 1.0)
    assert choose_level(downsamples, base_mpp=0.25, mpp=4.0).level == 2


def test_between_levels_reads_finer_level_and_shrinks():
    choice = choose_level([1.0, 4.0, 16.0], base_mpp=0.25, mpp=2.0)
    assert choice.level == 1
    assert choice.target_downsample == pytest.approx(8.0)
    assert choice.scale == pytest.approx(0.5)
    assert not choice.exact


def test_magnification_uses_objective_power():
    choice = choose_level([1.0, 4.0, 16.0], base_magnification=40.0, magnification=10.0)
    assert (choice.level, choice.scale) == (1, 1.0)
    choice = choose_level([1.0, 4.0, 16.0], base_magnification=40.0, magnification=20.0)
    assert (choice.level, choice.scale) == (0, pytest.approx(0.5))


def test_magnification_falls_back_to_mpp_convention():
    # No objective power recorded: 0.25 um/px is taken as 40x (10x ~ 1 um/px).
    choice = choose_level([1.0, 4.0], base_mpp=0.25, magnification=10.0)
    assert (choice.level, choice.scale) == (1, 1.0)


def test_scanner_rounding_is_tolerated(real_slide_path):
    with open_slide(real_slide_path) as slide:  # 0.499 um/px, 20x
        assert slide.choose_level(mpp=0.5).scale == 1.0
        assert slide.choose_level(magnification=20).scale == 1.0
        half = slide.choose_level(magnification=10)
        assert half.level == 0 and half.scale == pytest.approx(0.5)


def test_finer_than_level_zero_is_refused(real_slide_path):
    with open_slide(real_slide_path) as slide, pytest.raises(LevelError) as error:
        slide.choose_level(magnification=40)
    assert "40" in str(error.value) and str(real_slide_path) in str(error.value)


def test_missing_metadata_suggests_explicit_level(tmp_path):
    path = tmp_path / "nometa.tif"
    write_synthetic_slide(path, 1024, 768, mpp=None, levels=2, tile_size=256)
    with open_slide(path) as slide:
        assert slide.mpp is None and slide.objective_power is None
        with pytest.raises(MetadataMissingError) as error:
            slide.choose_level(mpp=1.0)
        assert "level" in str(error.value) and str(path) in str(error.value)
        with pytest.raises(MetadataMissingError):
            slide.choose_level(magnification=10)
        assert slide.choose_level(level=1).level_downsample == pytest.approx(2.0)


def test_explicit_level_out_of_range(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((4, 4, 3), np.uint8))
    with open_slide(path) as slide, pytest.raises(LevelError):
        slide.choose_level(level=3)
