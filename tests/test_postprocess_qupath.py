"""QuPath GeoJSON export: one valid detection per tile with its probabilities, positive
regions equal to the thresholded map within the tolerance, and the round trip through
histotile's own GeoJSON reader."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely

from histotile.errors import ConfigError, OutputExistsError
from histotile.postprocess import SlidePredictions
from histotile.postprocess.qupath import (
    positive_cells,
    region_features,
    tile_features,
    write_qupath,
)
from histotile.tiling.annotations import GeoJSONAnnotation, annotation_fractions, assign_labels
from histotile.wsi import open_slide
from histotile.wsi.synthetic import write_synthetic_slide

WIDTH, HEIGHT, TILE, MPP = 1536, 1024, 128, 0.5


def blob_predictions(skip_every: int = 7) -> SlidePredictions:
    """Tiles on a grid; tumour probability high inside a ring (so regions have a hole)."""
    xs, ys = np.meshgrid(np.arange(0, WIDTH - TILE + 1, TILE),
                         np.arange(0, HEIGHT - TILE + 1, TILE))
    xs, ys = xs.ravel(), ys.ravel()
    keep = np.arange(xs.size) % skip_every != 3
    xs, ys = xs[keep], ys[keep]
    cx, cy = (xs + TILE / 2 - 700) / TILE, (ys + TILE / 2 - 500) / TILE
    radius = np.hypot(cx, cy)
    rng = np.random.default_rng(1)
    p = np.where((radius > 0.9) & (radius < 3.2), rng.uniform(0.6, 1.0, xs.size),
                 rng.uniform(0.0, 0.4, xs.size)).round(4)
    table = pd.DataFrame({"x": xs, "y": ys, "extent": TILE, "prob_normal": 1 - p,
                          "prob_tumour": p})
    return SlidePredictions("biopsy", "", (WIDTH, HEIGHT), MPP, ("normal", "tumour"), table,
                            {}, {"name": "test"})


@pytest.fixture(scope="module")
def predictions() -> SlidePredictions:
    return blob_predictions()


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("qupath") / "biopsy.tif"
    write_synthetic_slide(path, WIDTH, HEIGHT, seed=2, mpp=MPP)
    return path


def test_one_valid_detection_per_tile_with_its_probabilities(predictions):
    collection = tile_features(predictions)
    features = collection["features"]
    assert len(features) == len(predictions)
    tiles = predictions.tiles
    for feature, (_, row) in zip(features, tiles.iterrows()):
        geometry = shapely.geometry.shape(feature["geometry"])
        assert geometry.is_valid
        assert geometry.area == row["extent"] ** 2
        minx, miny, maxx, maxy = geometry.bounds
        assert (minx, miny) == (row["x"], row["y"])
        assert 0 <= minx and maxx <= WIDTH and 0 <= miny and maxy <= HEIGHT
        props = feature["properties"]
        assert props["objectType"] == "detection"
        measured = props["measurements"]
        assert measured["tumour probability"] == pytest.approx(row["prob_tumour"], abs=1e-6)
        assert measured["normal probability"] == pytest.approx(row["prob_normal"], abs=1e-6)
        expected = "tumour" if row["prob_tumour"] > row["prob_normal"] else "normal"
        assert props["classification"]["name"] == expected
        assert len(props["classification"]["color"]) == 3


def test_regions_equal_thresholded_map_within_tolerance(predictions):
    collection = region_features(predictions, "tumour", threshold=0.5, tolerance_um=8.0)
    polygons = [shapely.geometry.shape(f["geometry"]) for f in collection["features"]]
    assert polygons and all(p.is_valid for p in polygons)
    assert all(f["properties"]["objectType"] == "annotation" for f in collection["features"])
    assert any(len(p.interiors) > 0 for p in polygons), "the ring's hole was lost"
    regions = shapely.union_all(polygons)
    # The truth: every tile at or above the threshold, as squares.
    tiles = predictions.tiles[predictions.tiles["prob_tumour"] >= 0.5]
    truth = shapely.union_all(shapely.box(tiles["x"], tiles["y"], tiles["x"] + TILE,
                                          tiles["y"] + TILE))
    tolerance = 8.0 / MPP
    assert regions.symmetric_difference(truth).area < 1e-6 + tolerance * truth.length
    assert regions.hausdorff_distance(truth) <= tolerance + 1e-6
    assert positive_cells(predictions, "tumour", 0.5).equals(truth)
    minx, miny, maxx, maxy = regions.bounds
    assert 0 <= minx and maxx <= WIDTH and 0 <= miny and maxy <= HEIGHT


def test_round_trip_through_histotile_reader(predictions, slide_path, tmp_path):
    written = write_qupath(predictions, tmp_path, positive_class="tumour", threshold=0.5,
                           tolerance_um=0.0)
    boxes = predictions.tiles[["x", "y", "extent"]].to_numpy()
    classes = predictions.classes
    with open_slide(slide_path) as slide:
        tiles = annotation_fractions(GeoJSONAnnotation(written["geojson"]), slide, boxes,
                                     classes)
        regions = annotation_fractions(GeoJSONAnnotation(written["regions"]), slide, boxes,
                                       classes)
    predicted = np.array(classes)[predictions.predicted_labels()]
    assert list(assign_labels(tiles, classes, "normal", 0.5)) == list(predicted)
    positive = predictions.tiles["prob_tumour"].to_numpy() >= 0.5
    assert list(assign_labels(regions, classes, "normal", 0.5)) == \
        list(np.where(positive, "tumour", "normal"))
    data = json.loads((tmp_path / "predictions.geojson").read_text())
    assert data["type"] == "FeatureCollection"
    # Existing files are refused before either is rewritten.
    (tmp_path / "predictions.geojson").unlink()
    with pytest.raises(OutputExistsError):
        write_qupath(predictions, tmp_path, positive_class="tumour")
    assert not (tmp_path / "predictions.geojson").exists()


def test_bad_region_settings_are_refused(predictions):
    with pytest.raises(ConfigError, match="threshold"):
        region_features(predictions, "tumour", threshold=1.5)
    with pytest.raises(ConfigError, match="tolerance"):
        region_features(predictions, "tumour", tolerance_um=-1)
