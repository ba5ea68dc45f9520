"""Floating-point images are read by their range (issue 23): a float TIFF holding 0-255
was read as 0-1, clipped, and came out all white ("ok, 0 tiles")."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from histotile.errors import UnsupportedFormatError
from histotile.wsi import open_slide


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    ramp = np.linspace(0, 255, 96 * 64).reshape(64, 96)
    return np.stack([ramp, ramp[::-1], np.full_like(ramp, 128.0)], axis=2)


@pytest.mark.parametrize("top", [1.0, 255.0, 65535.0])
def test_a_float_tiff_is_read_by_its_range(tmp_path, rgb, top):
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, (rgb / 255.0 * top).astype(np.float32))
    with open_slide(path) as slide:
        pixels = np.asarray(slide.read_region((0, 0), 0, (96, 64)))
    np.testing.assert_allclose(pixels.astype(float), np.round(rgb), atol=1)


def test_a_float_tiff_beyond_16_bits_is_refused(tmp_path, rgb):
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, (rgb * 1e6).astype(np.float32))
    with pytest.raises(UnsupportedFormatError, match=r"float.tif: floating-point pixels up "
                                                     r"to .* \(export the image as 8-bit"):
        open_slide(path)


def test_a_float_tiff_of_0_255_gives_tissue_tiles(tmp_path):
    from histotile.tiling import TilingSettings, extract_tiles
    from histotile.wsi.synthetic import write_synthetic_slide

    write_synthetic_slide(tmp_path / "source.tif", 512, 512, seed=1, tile_size=256,
                          tissue_fraction=0.6)
    with open_slide(tmp_path / "source.tif") as source:
        pixels = np.asarray(source.read_region((0, 0), 0, (512, 512)))
    tifffile.imwrite(tmp_path / "float.tif", pixels.astype(np.float32))
    settings = TilingSettings(tile_size=64)
    assert len(extract_tiles(tmp_path / "float.tif", settings)) == \
        len(extract_tiles(tmp_path / "source.tif", settings)) > 10
