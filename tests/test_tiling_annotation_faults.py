"""Annotations as labs supply them (issue #12): GeoJSON whose properties is a string or
that is nested too deeply, GeoJSON with no features or all of them outside the slide,
and a 1 x 1 px painted overlay for a whole slide: each a clear error or warning naming
the file, never a library exception or a silent all-default labelling."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from tiling_fixtures import geojson, rect_ring

from histotile.errors import AnnotationError
from histotile.tiling import (
    GeoJSONAnnotation,
    PaintedOverlay,
    TilingSettings,
    annotation_fractions,
    load_annotation,
    make_grid,
)
from histotile.tiling.annotation_limits import AnnotationWarning, geojson_problems
from histotile.wsi import open_slide
from histotile.wsi.synthetic import write_synthetic_slide

W, H = 1024, 768
CLASSES = ("normal", "tumour")
SETTINGS = TilingSettings(tile_size=128, classes=CLASSES, palette={"tumour": (0, 255, 0)})


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "slide.tif"
    write_synthetic_slide(path, W, H, seed=4, tissue_fraction=0.5, tile_size=256)
    return path


def fractions(slide_path, annotation):
    with open_slide(slide_path) as slide:
        grid = make_grid(slide, SETTINGS, all_tiles=True)
        return annotation_fractions(annotation, slide, grid, CLASSES, SETTINGS)


def test_properties_that_is_a_string_names_the_feature(tmp_path):
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "x1", "properties": "tumour",
         "geometry": {"type": "Polygon", "coordinates": [rect_ring(0, 0, 9, 9) + [(0, 0)]]}}]}))
    with pytest.raises(AnnotationError, match=r"a.geojson: feature 0 \(x1\) has 'properties' "
                                              "that is a str"):
        load_annotation(path)


def test_deeply_nested_geojson_names_the_file(tmp_path):
    path = tmp_path / "deep.geojson"
    path.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(AnnotationError, match="deep.geojson: the GeoJSON is nested too deeply"):
        load_annotation(path)


def test_geojson_without_features_warns(tmp_path, slide_path):
    path = tmp_path / "empty.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with pytest.warns(AnnotationWarning, match="empty.geojson: no classified polygon"):
        result = fractions(slide_path, GeoJSONAnnotation(path))
    assert np.all(result[:, 1] == 0)


def test_geojson_entirely_outside_the_slide_warns(tmp_path, slide_path):
    path = geojson(tmp_path / "elsewhere.geojson",
                   [("tumour", rect_ring(5000, 5000, 300, 300)),
                    ("tumour", rect_ring(-900, 100, 200, 200))])
    with pytest.warns(AnnotationWarning, match=r"elsewhere.geojson: all 2 features lie "
                                               r"outside the 1024 x 768 px slide"):
        result = fractions(slide_path, GeoJSONAnnotation(path))
    assert np.all(result[:, 1] == 0)
    # One feature inside is enough: nothing to report.
    inside = geojson(tmp_path / "inside.geojson", [("tumour", rect_ring(100, 100, 300, 300)),
                                                  ("tumour", rect_ring(5000, 0, 10, 10))])
    assert fractions(slide_path, GeoJSONAnnotation(inside))[:, 1].max() > 0.9
    features = ((("tumour", "f", (), (5000.0, 5000.0, 5300.0, 5300.0))),)
    assert geojson_problems(features, (W, H), "x") and not geojson_problems(
        (("tumour", "f", (), (0.0, 0.0, 10.0, 10.0)),), (W, H), "x")


def test_a_one_pixel_overlay_for_a_whole_slide_is_refused(tmp_path, slide_path):
    path = tmp_path / "dot.png"
    cv2.imwrite(str(path), np.zeros((1, 1, 3), np.uint8) + 255)
    with pytest.raises(AnnotationError, match=r"dot.png: the annotation image is 1 x 1 px "
                                              r"for a 1024 x 768 px slide"):
        fractions(slide_path, PaintedOverlay(path))
