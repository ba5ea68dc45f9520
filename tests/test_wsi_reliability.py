"""Images as labs supply them (issue #12): deep, float and CMYK pixels read by one scaling
rule in every reader, pixels that cannot be shown refused, decompression bombs refused
before decoding, truncated JPEGs as clear errors, and tissue detection of a giant
single-level TIFF in a bounded number of reads."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from histotile.errors import CorruptSlideError, UnsupportedFormatError
from histotile.tiling import detect_tissue
from histotile.wsi import open_slide
from histotile.wsi.backends import to_uint8
from histotile.wsi.limits import ENVIRONMENT, ImageTooLargeError

RAMP16 = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (64, 1))
EXPECTED = (RAMP16 >> 8).astype(np.uint8)  # the rule: the top 8 bits


def read_all(path) -> np.ndarray:
    with open_slide(path) as slide:
        return slide.read_region((0, 0), 0, slide.dimensions)


def test_the_scaling_rule():
    assert to_uint8(np.array([0, 4096, 65535], np.uint16)).tolist() == [0, 16, 255]
    assert to_uint8(np.array([-5, 0, 32767], np.int16)).tolist() == [0, 0, 255]
    assert to_uint8(np.array([-1.0, 0.5, 1.0, 7.0, np.nan], np.float32)).tolist() == \
        [0, 128, 255, 255, 0]
    assert to_uint8(np.array([True, False])).tolist() == [255, 0]


@pytest.mark.parametrize("kind", ["png-opencv", "png-pillow", "tiff-striped", "tiff-tiled"])
def test_16bit_grey_is_scaled_alike_in_every_format(tmp_path, kind):
    path = tmp_path / ("grey.png" if kind.startswith("png") else "grey.tif")
    if kind == "png-opencv":
        cv2.imwrite(str(path), RAMP16)
    elif kind == "png-pillow":
        Image.fromarray(RAMP16).save(path)
    else:
        tile = (64, 64) if kind == "tiff-tiled" else None
        tifffile.imwrite(path, np.tile(RAMP16, (4, 1))[:64], tile=tile)
    pixels = read_all(path)
    assert np.array_equal(pixels[..., 0], EXPECTED)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])


def test_16bit_rgb_png(tmp_path):
    rgb = np.stack([RAMP16, RAMP16 // 2, RAMP16 // 4], axis=-1)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[..., ::-1])
    assert np.array_equal(read_all(tmp_path / "rgb.png"), (rgb >> 8).astype(np.uint8))


@pytest.mark.parametrize("tile", [None, (64, 64)])
def test_float_tiff_is_taken_as_0_to_1(tmp_path, tile):
    values = np.stack([RAMP16 / 65535.0] * 3, axis=-1).astype(np.float32)
    tifffile.imwrite(tmp_path / "float.tif", np.tile(values, (1, 1, 1))[:, :256],
                     photometric="rgb", tile=tile)
    pixels = read_all(tmp_path / "float.tif")
    assert np.abs(pixels.astype(int) - (values * 255).round().astype(int)).max() <= 1
    assert pixels.mean() > 120  # not black


@pytest.mark.parametrize("tile", [None, (64, 64)])
def test_cmyk_tiff_is_converted(tmp_path, tile):
    cmyk = np.zeros((128, 128, 4), np.uint8)
    cmyk[:, :64, 0] = 255  # pure cyan on the left
    cmyk[:, 64:, 3] = 128  # half black on the right
    tifffile.imwrite(tmp_path / "cmyk.tif", cmyk, photometric="separated", tile=tile)
    pixels = read_all(tmp_path / "cmyk.tif")
    assert pixels[5, 5].tolist() == [0, 255, 255]
    assert pixels[5, 100].tolist() == [127, 127, 127]


def test_cmyk_jpeg_is_converted(tmp_path):
    cmyk = np.zeros((64, 64, 4), np.uint8)
    cmyk[..., 0] = 255
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    pixel = read_all(tmp_path / "cmyk.jpg")[32, 32].astype(int)
    assert pixel[0] < 20 and pixel[1] > 235 and pixel[2] > 235


@pytest.mark.parametrize("array, message", [
    (np.zeros((64, 64), np.complex64), "complex-valued pixels"),
    (np.zeros((64, 64, 5), np.uint8), "5 samples per pixel"),
])
def test_pixels_that_cannot_be_shown_are_refused(tmp_path, array, message):
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, array, photometric="minisblack", planarconfig="contig")
    with pytest.raises(UnsupportedFormatError, match=message) as info:
        open_slide(path)
    assert str(path) in str(info.value)


def png_header_only(path, width: int, height: int) -> None:
    """A PNG that claims ``width`` x ``height`` px (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_naming_the_limit(tmp_path):
    path = tmp_path / "bomb.png"
    png_header_only(path, 20_000, 20_000)
    with pytest.raises(ImageTooLargeError) as info:
        open_slide(path)
    message = str(info.value)
    assert "20,000 x 20,000 px (400 megapixels)" in message
    assert "limit of 250,000,000 pixels" in message and ENVIRONMENT in message


def test_the_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "plain.png"
    cv2.imwrite(str(path), np.full((100, 200, 3), 200, np.uint8))
    monkeypatch.setenv(ENVIRONMENT, "10000")
    with pytest.raises(ImageTooLargeError, match="limit of 10,000 pixels"):
        open_slide(path)
    monkeypatch.setenv(ENVIRONMENT, "0")  # no limit
    assert read_all(path).shape == (100, 200, 3)
    monkeypatch.setenv(ENVIRONMENT, "lots")
    from histotile.errors import ConfigError

    with pytest.raises(ConfigError, match="whole number of pixels"):
        open_slide(path)


def test_a_truncated_jpeg_is_a_corrupt_slide_error_where_tissue_is_found(tmp_path):
    image = np.full((600, 800, 3), 240, np.uint8)
    image[100:500, 100:700] = (180, 80, 150)
    image += np.random.default_rng(0).integers(0, 20, image.shape, dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "whole.jpg"), image)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2])
    with open_slide(tmp_path / "cut.jpg") as slide, \
            pytest.raises(CorruptSlideError, match="cut.jpg: cannot decode image"):
        detect_tissue(slide)


def write_sparse_giant(path, size: int, tile: int = 512, rgb=(200, 120, 170)) -> None:
    """A tiled BigTIFF of ``size`` x ``size`` px, one level, whose every tile entry points
    at the same deflated tile: 200,000 px square in 2.4 MB, written in milliseconds."""
    data = zlib.compress(np.full((tile, tile, 3), rgb, np.uint8).tobytes(), 9)
    n = (-(-size // tile)) ** 2
    entries = [(256, 4, 1, size), (257, 4, 1, size),
               (258, 3, 3, struct.pack("<3H", 8, 8, 8) + b"\0\0"),
               (259, 3, 1, 8), (262, 3, 1, 2), (277, 3, 1, 3), (284, 3, 1, 1),
               (322, 3, 1, tile), (323, 3, 1, tile)]
    data_at = 16 + 8 + 20 * (len(entries) + 2) + 8
    offsets_at = data_at + len(data)
    entries += [(324, 16, n, offsets_at), (325, 16, n, offsets_at + 8 * n)]
    with open(path, "wb") as out:
        out.write(b"II" + struct.pack("<HHHQ", 43, 8, 0, 16))
        out.write(struct.pack("<Q", len(entries)))
        for tag, kind, count, value in entries:
            raw = value if isinstance(value, bytes) else struct.pack("<Q", value)
            out.write(struct.pack("<HHQ", tag, kind, count) + raw)
        out.write(struct.pack("<Q", 0) + data)
        out.write(np.full(n, data_at, "<u8").tobytes())
        out.write(np.full(n, len(data), "<u8").tobytes())


@pytest.mark.slow
def test_tissue_of_a_giant_single_level_tiff_is_sampled_in_bounded_reads(tmp_path, caplog):
    from histotile.wsi import decimate

    path = tmp_path / "giant.tif"
    write_sparse_giant(path, 200_000)
    reads: list[tuple[int, int]] = []
    with open_slide(path) as slide:
        assert slide.dimensions == (200_000, 200_000) and slide.level_count == 1
        real = slide.read_region

        def counted(location, level, size):
            reads.append(size)
            return real(location, level, size)

        slide.read_region = counted
        mask = detect_tissue(slide)
    assert len(reads) <= decimate.MAX_WINDOWS
    read_pixels = sum(w * h for w, h in reads)
    assert read_pixels <= decimate.MAX_WINDOWS * decimate.WINDOW_SIDE ** 2  # 9.4 MP of 40 GP
    assert mask.mask.mean() > 0.9  # every sampled window held the pink tile
    assert "no level below" in caplog.text and "windows" in caplog.text
