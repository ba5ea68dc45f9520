"""Reading regions: equality with OpenSlide and with fully decoded plain images, padding,
alpha compositing, thumbnails and pickling."""

from __future__ import annotations

import pickle

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from histotile.wsi import open_slide


def openslide_rgb(path, location, level, size) -> np.ndarray:
    with openslide.OpenSlide(str(path)) as reference:
        rgba = np.asarray(reference.read_region(location, level, size))
    alpha = rgba[:, :, 3:4].astype(np.float64) / 255.0
    return np.round(rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def test_real_slide_metadata(real_slide_path):
    with open_slide(real_slide_path) as slide:
        assert slide.dimensions == (2220, 2967)
        assert slide.level_count == 1
        assert slide.level_downsamples == [1.0]
        assert slide.mpp == pytest.approx(0.499, abs=1e-3)
        assert slide.objective_power == 20.0
        assert slide.name == "CMU-1-Small-Region"
        assert set(slide.associated_images) == {"label", "macro", "thumbnail"}
        label = slide.associated_image("label")
        assert label.ndim == 3 and label.shape[2] == 3 and label.dtype == np.uint8


@pytest.mark.parametrize("location,size", [((0, 0), (256, 256)), ((1000, 1500), (300, 200)),
                                           ((2100, 2900), (256, 256)), ((-50, -20), (128, 96))])
def test_real_slide_regions_equal_openslide(real_slide_path, location, size):
    with open_slide(real_slide_path) as slide:
        region = slide.read_region(location, 0, size)
    assert region.shape == (size[1], size[0], 3) and region.dtype == np.uint8
    np.testing.assert_array_equal(region, openslide_rgb(real_slide_path, location, 0, size))


def test_synthetic_pyramid_every_level_equals_openslide(synthetic_pyramid):
    with open_slide(synthetic_pyramid) as slide:
        assert slide.level_count == 3
        assert slide.level_downsamples == pytest.approx([1.0, 2.0, 4.0])
        assert slide.mpp == pytest.approx(0.5)
        for level in range(slide.level_count):
            for location in [(0, 0), (1024, 768), (2900, 1900)]:
                expected = openslide_rgb(synthetic_pyramid, location, level, (200, 150))
                np.testing.assert_array_equal(slide.read_region(location, level, (200, 150)),
                                              expected)


def test_out_of_bounds_is_white(synthetic_pyramid):
    with open_slide(synthetic_pyramid) as slide:
        width, height = slide.dimensions
        outside = slide.read_region((width + 10, height + 10), 0, (64, 64))
        assert (outside == 255).all()
        corner = slide.read_region((width - 32, height - 32), 0, (64, 64))
        assert (corner[32:, :] == 255).all() and (corner[:, 32:] == 255).all()
        assert (corner[:32, :32] != 255).any()


@pytest.fixture()
def plain_rgb(tmp_path):
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)


@pytest.mark.parametrize("layout", ["striped", "tiled"])
def test_plain_tiff_regions_equal_decoded_image(tmp_path, plain_rgb, layout):
    path = tmp_path / f"plain_{layout}.tif"
    options = {"tile": (128, 128)} if layout == "tiled" else {"rowsperstrip": 64}
    tifffile.imwrite(path, plain_rgb, photometric="rgb", compression="zlib", **options)
    decoded = tifffile.imread(path)
    with open_slide(path) as slide:
        assert slide.dimensions == (900, 700)
        assert slide.mpp is None
        for (x, y, w, h) in [(0, 0, 900, 700), (130, 257, 300, 129), (850, 650, 100, 100)]:
            region = slide.read_region((x, y), 0, (w, h))
            expected = np.full((h, w, 3), 255, np.uint8)
            part = decoded[y:y + h, x:x + w]
            expected[:part.shape[0], :part.shape[1]] = part
            np.testing.assert_array_equal(region, expected)


def test_striped_tiff_is_read_by_tifffile_not_decoded_whole(tmp_path, plain_rgb):
    path = tmp_path / "striped.tif"
    tifffile.imwrite(path, plain_rgb, photometric="rgb", rowsperstrip=16,
                     resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    with open_slide(path) as slide:
        assert slide.vendor == "tifffile"
        assert slide.mpp == pytest.approx(0.25)
        np.testing.assert_array_equal(slide.read_region((5, 600), 0, (10, 10)),
                                      plain_rgb[600:610, 5:15])


def test_grey_and_16bit_tiff_become_rgb(tmp_path):
    grey = np.arange(200 * 300, dtype=np.uint16).reshape(200, 300)
    path = tmp_path / "grey16.tif"
    tifffile.imwrite(path, grey, rowsperstrip=50)
    with open_slide(path) as slide:
        region = slide.read_region((0, 0), 0, (300, 200))
    expected = (grey >> 8).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(region[:, :, channel], expected)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_plain_images_equal_pillow_decode(tmp_path, plain_rgb, suffix):
    path = tmp_path / f"image{suffix}"
    Image.fromarray(plain_rgb).save(path, quality=95)
    decoded = np.asarray(Image.open(path).convert("RGB"))
    with open_slide(path) as slide:
        assert slide.dimensions == (900, 700)
        np.testing.assert_array_equal(slide.read_region((100, 50), 0, (400, 300)),
                                      decoded[50:350, 100:500])


def test_transparent_pixels_composite_onto_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.arange(10, dtype=np.uint8)[None, :] * 28  # alpha 0 .. 252
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    with open_slide(path) as slide:
        region = slide.read_region((0, 0), 0, (10, 10))
    alpha = rgba[0, :, 3].astype(np.float64) / 255
    np.testing.assert_allclose(region[0, :, 0], 200 * alpha + 255 * (1 - alpha), atol=0.51)
    np.testing.assert_allclose(region[0, :, 1], 255 * (1 - alpha), atol=0.51)
    assert (region[:, 0] == 255).all()  # fully transparent column is white


def test_thumbnail_keeps_aspect_and_matches_downsampled_level(synthetic_pyramid):
    with open_slide(synthetic_pyramid) as slide:
        thumb = slide.thumbnail(300)
        assert thumb.shape == (200, 300, 3)
        full = slide.read_region((0, 0), 2, slide.level_dimensions[2])
    import cv2

    expected = cv2.resize(full, (300, 200), interpolation=cv2.INTER_AREA)
    assert np.abs(thumb.astype(int) - expected.astype(int)).mean() < 2.0


def test_slide_pickles_by_path_and_reopens(synthetic_pyramid):
    with open_slide(synthetic_pyramid) as slide:
        before = slide.read_region((500, 500), 1, (64, 64))
        payload = pickle.dumps(slide)
    assert len(payload) < 500  # a path, never pixels
    clone = pickle.loads(payload)
    np.testing.assert_array_equal(clone.read_region((500, 500), 1, (64, 64)), before)
