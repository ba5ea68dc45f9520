"""Each bad input gives its histotile exception naming the file, never a raw traceback."""

from __future__ import annotations

import shutil

import pytest

from histotile.errors import (
    CorruptSlideError,
    LevelError,
    RegionError,
    SlideError,
    SlideNotFoundError,
    UnsupportedFormatError,
)
from histotile.wsi import open_slide


def assert_names(error: pytest.ExceptionInfo, path) -> None:
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.svs"
    with pytest.raises(SlideNotFoundError) as error:
        open_slide(path)
    assert_names(error, path)


def test_directory(tmp_path):
    with pytest.raises(SlideNotFoundError) as error:
        open_slide(tmp_path)
    assert "directory" in str(error.value)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.svs"
    path.touch()
    with pytest.raises(CorruptSlideError) as error:
        open_slide(path)
    assert_names(error, path)
    assert "empty" in str(error.value)


def test_text_file_named_svs(tmp_path):
    path = tmp_path / "notes.svs"
    path.write_text("this is not a slide\n" * 20)
    with pytest.raises(UnsupportedFormatError) as error:
        open_slide(path)
    assert_names(error, path)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_real_slide(tmp_path, real_slide_path, keep):
    path = tmp_path / "truncated.svs"
    data = real_slide_path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CorruptSlideError) as error:
        with open_slide(path) as slide:
            slide.read_region((0, 0), 0, slide.dimensions)
    assert_names(error, path)


def test_truncated_synthetic_pyramid(tmp_path, synthetic_pyramid):
    path = tmp_path / "cut.tif"
    shutil.copy(synthetic_pyramid, path)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    with pytest.raises(CorruptSlideError) as error:
        open_slide(path)
    assert "truncated" in str(error.value)


def test_damaged_png(tmp_path, synthetic_pyramid):
    import numpy as np
    from PIL import Image

    path = tmp_path / "broken.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:40])
    with pytest.raises(SlideError) as error:
        with open_slide(path) as slide:
            slide.read_region((0, 0), 0, (8, 8))
    assert_names(error, path)


def test_level_and_region_out_of_range(synthetic_pyramid):
    with open_slide(synthetic_pyramid) as slide:
        with pytest.raises(LevelError) as error:
            slide.read_region((0, 0), 7, (10, 10))
        assert "levels 0 to 2" in str(error.value)
        with pytest.raises(RegionError):
            slide.read_region((0, 0), 0, (0, 10))
        with pytest.raises(SlideError):
            slide.associated_image("label")


def test_errors_pickle_for_dask(tmp_path):
    import pickle

    error = CorruptSlideError(tmp_path / "x.svs", "truncated", "copy it again")
    clone = pickle.loads(pickle.dumps(error))
    assert type(clone) is CorruptSlideError and str(clone) == str(error)
