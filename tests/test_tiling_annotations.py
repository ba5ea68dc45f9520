"""Per-tile class fractions from painted overlays, label masks and QuPath GeoJSON."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
from tiling_fixtures import geojson, label_mask, lossless_overlay, read_all, rect_ring

from histotile.errors import AnnotationError
from histotile.tiling import (
    GeoJSONAnnotation,
    LabelMask,
    PaintedOverlay,
    TilingSettings,
    annotation_fractions,
    assign_labels,
    extract_tiles,
    load_annotation,
    make_grid,
)
from histotile.wsi import open_slide
from histotile.wsi.synthetic import write_overlay, write_synthetic_slide

W, H = 2048, 1536
CLASSES = ("normal", "tumour", "other")
GREEN, BLUE = (0, 255, 0), (0, 0, 255)
# Level-0 rectangles on multiples of 4 px, not aligned to the 128-px tiles.
TUMOUR = (288, 256, 400, 200)
OTHER = (1100, 700, 136, 260)
SETTINGS = TilingSettings(tile_size=128, classes=CLASSES,
                          palette={"tumour": GREEN, "other": BLUE})


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ann") / "slide.tif"
    write_synthetic_slide(path, W, H, seed=8, tissue_fraction=0.5, tile_size=256)
    return path


@pytest.fixture(scope="module")
def grid(slide_path):
    with open_slide(slide_path) as slide:
        return make_grid(slide, SETTINGS, all_tiles=True)


def marks():
    return [(GREEN, TUMOUR), (BLUE, OTHER)]


def expected(grid, rects=(TUMOUR, OTHER)) -> np.ndarray:
    """Exact class fractions of every tile: rectangle overlap areas (tumour, other)."""
    out = np.zeros((len(grid), 3))
    for column, (x, y, w, h) in zip((1, 2), rects):
        dx = np.clip(np.minimum(grid.xs + grid.extent, x + w) - np.maximum(grid.xs, x), 0, None)
        dy = np.clip(np.minimum(grid.ys + grid.extent, y + h) - np.maximum(grid.ys, y), 0, None)
        out[:, column] = dx * dy / grid.extent**2
    out[:, 0] = 1 - out[:, 1] - out[:, 2]
    return out


@pytest.mark.parametrize("downsample", [1, 4])
def test_painted_overlay_fractions_are_exact(tmp_path, slide_path, grid, downsample):
    overlay = lossless_overlay(slide_path, tmp_path / "overlay.png", marks(), downsample)
    with open_slide(slide_path) as slide:
        fractions = annotation_fractions(PaintedOverlay(overlay), slide, grid, CLASSES,
                                         SETTINGS)
    want = expected(grid)
    assert fractions.shape == (len(grid), 3)
    assert np.abs(fractions - want).max() < 1e-9
    assert (want[:, 1] > 0).sum() == 8 and (want[:, 1] == 1).sum() == 2  # non-trivial


def test_jpeg_overlay_at_16x_reduction_is_close(tmp_path, slide_path, grid):
    rects = [(GREEN, (256, 256, 448, 192)), (BLUE, (1152, 640, 144, 256))]
    overlay = lossless_overlay(slide_path, tmp_path / "ov.jpg", rects, 16, jpeg_quality=80)
    with open_slide(slide_path) as slide:
        fractions = annotation_fractions(PaintedOverlay(overlay), slide, grid, CLASSES,
                                         SETTINGS)
    want = expected(grid, [r for _, r in rects])
    assert (want[:, 1] == 1).sum() == 3 and (want[:, 2] == 1).sum() == 2
    # Tiles are 8 x 8 overlay pixels: JPEG smears the edges of the paint, yet no overlay
    # pixel may be lost or gained (1/64 of a tile).
    assert np.abs(fractions - want).max() < 1 / 64


def test_jpeg_noise_alone_labels_nothing(tmp_path, slide_path, grid):
    for quality, ds in ((40, 1), (60, 4)):
        overlay = write_overlay(slide_path, tmp_path / f"clean{ds}.tif", [], downsample=ds,
                                quality=quality)
        with open_slide(slide_path) as slide, pytest.warns(UserWarning,
                                                           match="not found in any tile"):
            fractions = annotation_fractions(PaintedOverlay(overlay), slide, grid, CLASSES,
                                             SETTINGS)
        assert fractions[:, 1:].max() == 0.0
        labels = assign_labels(fractions, CLASSES, "normal", 0.05)
        assert set(labels) == {"normal"}


def test_geojson_gives_the_same_fractions_as_painted_overlay(tmp_path, slide_path, grid):
    # An L-shaped tumour region: painted as two rectangles, drawn in QuPath as one polygon.
    ell = [(1408, 192), (1792, 192), (1792, 320), (1536, 320), (1536, 640), (1408, 640)]
    painted_rects = [*marks(), (GREEN, (1408, 192, 384, 128)), (GREEN, (1408, 320, 128, 320))]
    path = geojson(tmp_path / "a.geojson", [("Tumour", rect_ring(*TUMOUR)),
                                            ("other", rect_ring(*OTHER)),
                                            ("tumour", ell)])
    for downsample in (1, 4):
        painted = lossless_overlay(slide_path, tmp_path / f"p{downsample}.png", painted_rects,
                                   downsample)
        with open_slide(slide_path) as slide:
            from_paint = annotation_fractions(PaintedOverlay(painted), slide, grid, CLASSES,
                                              SETTINGS)
            from_json = annotation_fractions(load_annotation(path), slide, grid, CLASSES,
                                             SETTINGS)
        assert np.abs(from_json - from_paint).max() < 1e-9
    assert (from_json[:, 1] == 1.0).sum() == 2 + 3


def test_geojson_triangle_covers_its_area(tmp_path, slide_path, grid):
    triangle = [(1500.3, 200.1), (1900.7, 420.2), (1560.1, 640.9)]
    area = 0.5 * abs((1900.7 - 1500.3) * (640.9 - 200.1) - (1560.1 - 1500.3) * (420.2 - 200.1))
    path = geojson(tmp_path / "t.geojson", [("other", triangle)])
    with open_slide(slide_path) as slide:
        fine = TilingSettings(**{**SETTINGS.to_dict(), "annotation_resolution": 128})
        fractions = annotation_fractions(GeoJSONAnnotation(path), slide, grid, CLASSES, fine)
    covered = fractions[:, 2].sum() * 128 * 128
    assert abs(covered - area) / area < 0.005


def test_geojson_holes_multipolygons_and_qupath_list_form(tmp_path, slide_path, grid):
    outer = rect_ring(0, 0, 512, 512)
    hole = rect_ring(128, 128, 256, 256)
    data = [{"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [
        [[list(p) for p in outer], [list(p) for p in hole]],
        [[list(p) for p in rect_ring(1024, 1024, 128, 128)]]]},
        "properties": {"classification": {"name": "tumour"}}}]
    path = tmp_path / "list.json"
    path.write_text(json.dumps(data))
    with open_slide(slide_path) as slide:
        fractions = annotation_fractions(load_annotation(path), slide, grid, CLASSES, SETTINGS)
    by_xy = {(x, y): f for x, y, f in zip(grid.xs, grid.ys, fractions[:, 1])}
    assert by_xy[(0, 0)] == 1.0 and by_xy[(128, 128)] == 0.0 and by_xy[(256, 256)] == 0.0
    assert by_xy[(1024, 1024)] == 1.0 and by_xy[(384, 384)] == 1.0


def test_label_mask_fractions(tmp_path, slide_path, grid):
    path = label_mask((W, H), tmp_path / "labels.png", {1: [TUMOUR], 2: [OTHER]}, 4)
    annotation = load_annotation(path)
    assert isinstance(annotation, LabelMask)
    with open_slide(slide_path) as slide:
        fractions = annotation_fractions(annotation, slide, grid, CLASSES, SETTINGS)
    assert np.abs(fractions - expected(grid)).max() < 1e-9


def test_palette_png_and_16_bit_tiff_label_masks(tmp_path, slide_path, grid):
    import tifffile
    from PIL import Image

    grey = label_mask((W, H), tmp_path / "grey.png", {1: [TUMOUR], 2: [OTHER]}, 4)
    values = cv2.imread(str(grey), cv2.IMREAD_UNCHANGED)
    palette_png = tmp_path / "palette.png"
    image = Image.fromarray(values, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    image.save(palette_png)
    wide = tmp_path / "wide.tif"
    tifffile.imwrite(wide, values.astype(np.uint16), tile=(64, 64))
    with open_slide(slide_path) as slide:
        for path in (palette_png, wide):
            annotation = load_annotation(path, classes=CLASSES)
            assert isinstance(annotation, LabelMask), path
            fractions = annotation_fractions(annotation, slide, grid, CLASSES, SETTINGS)
            assert np.abs(fractions - expected(grid)).max() < 1e-9, path


def test_labels_follow_min_label_fraction():
    fractions = np.array([[0.95, 0.05, 0.0], [0.96, 0.04, 0.0], [0.5, 0.2, 0.3],
                          [1.0, 0.0, 0.0], [0.1, 0.0, 0.9]])
    labels = assign_labels(fractions, CLASSES, "normal", 0.05)
    assert list(labels) == ["tumour", "normal", "other", "normal", "other"]


def test_extract_labels_tiles_from_overlay(tmp_path, slide_path):
    overlay = lossless_overlay(slide_path, tmp_path / "o.png", marks(), 4)
    settings = TilingSettings(**{**SETTINGS.to_dict(), "min_tissue": 0.0,
                                 "keep_background": 0.0})
    df = extract_tiles(slide_path, settings, annotation=PaintedOverlay(overlay))
    assert {"frac_normal", "frac_tumour", "frac_other"} <= set(df.columns)
    tumour = df[df["label"] == "tumour"]
    assert len(tumour) > 0
    assert (tumour["frac_tumour"] >= 0.05).all()
    assert (df.loc[df["label"] == "normal", ["frac_tumour", "frac_other"]] < 0.05).all().all()
    assert np.allclose(df[["frac_normal", "frac_tumour", "frac_other"]].sum(axis=1), 1.0)


# -- bad input ----------------------------------------------------------------------------
def test_overlay_with_wrong_aspect_ratio(tmp_path, slide_path, grid):
    pixels = cv2.resize(read_all(slide_path), (512, 512), interpolation=cv2.INTER_AREA)
    path = tmp_path / "squashed.png"
    cv2.imwrite(str(path), pixels)
    with open_slide(slide_path) as slide, pytest.raises(AnnotationError,
                                                        match="squashed.png.*aspect"):
        annotation_fractions(PaintedOverlay(path), slide, grid, CLASSES, SETTINGS)


def test_unreadable_overlay_names_the_file(tmp_path, slide_path, grid):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with open_slide(slide_path) as slide, pytest.raises(AnnotationError, match="broken.png"):
        annotation_fractions(PaintedOverlay(path), slide, grid, CLASSES, SETTINGS)


def test_bad_geojson_names_the_file_and_feature(tmp_path):
    path = tmp_path / "bad.geojson"
    path.write_text("{not json")
    with pytest.raises(AnnotationError, match="bad.geojson.*not readable"):
        load_annotation(path)
    features = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon",
                                         "coordinates": [[[0, 0], [10, 0], [10, 10]]]},
         "properties": {"classification": {"name": "tumour"}}},
        {"type": "Feature", "id": "xyz", "geometry": {"type": "Polygon",
                                                      "coordinates": [[[0, 0], ["a"]]]},
         "properties": {"classification": {"name": "tumour"}}}]}
    path2 = tmp_path / "bad2.geojson"
    path2.write_text(json.dumps(features))
    with pytest.raises(AnnotationError, match=r"bad2.geojson: feature 1 \(xyz\)"):
        load_annotation(path2)


def test_geojson_unknown_class_and_unclassified(tmp_path, slide_path, grid):
    path = geojson(tmp_path / "c.geojson", [("Stroma", rect_ring(0, 0, 100, 100))])
    with open_slide(slide_path) as slide:
        with pytest.raises(AnnotationError, match="'Stroma'.*not one of the classes"):
            annotation_fractions(GeoJSONAnnotation(path), slide, grid, CLASSES, SETTINGS)
        path2 = geojson(tmp_path / "u.geojson", [(None, rect_ring(0, 0, 100, 100)),
                                                 ("tumour", rect_ring(0, 0, 128, 128))])
        with pytest.warns(UserWarning, match="no classification"):
            fractions = annotation_fractions(load_annotation(path2), slide, grid, CLASSES,
                                             SETTINGS)
    assert fractions[0, 1] == 1.0


def test_label_mask_values_without_a_class(tmp_path, slide_path, grid):
    path = label_mask((W, H), tmp_path / "m.png", {7: [(0, 0, 256, 256)]}, 4)
    with open_slide(slide_path) as slide, pytest.raises(AnnotationError,
                                                        match=r"values \[7\] have no class"):
        annotation_fractions(LabelMask(path), slide, grid, CLASSES, SETTINGS)


def test_palette_colour_that_never_occurs_warns(tmp_path, slide_path, grid):
    overlay = lossless_overlay(slide_path, tmp_path / "g.png", [(GREEN, TUMOUR)], 4)
    with open_slide(slide_path) as slide:
        with pytest.warns(UserWarning, match=r"\(0, 0, 255\) for class 'other'"):
            annotation_fractions(PaintedOverlay(overlay), slide, grid, CLASSES, SETTINGS)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            annotation_fractions(PaintedOverlay(overlay, {"tumour": GREEN}), slide, grid,
                                 CLASSES, SETTINGS)
