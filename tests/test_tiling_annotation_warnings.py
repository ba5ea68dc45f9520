"""Annotations that label nothing: each problem is a per-slide warning (console and the
``warning`` column of the tile report) and ``--strict`` makes it a failure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from histotile.workflows.cli.main import cli
from histotile.wsi.synthetic import Mark, write_overlay, write_synthetic_slide

WIDTH, HEIGHT = 768, 512


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("warn") / "case.tif"
    write_synthetic_slide(path, WIDTH, HEIGHT, seed=5, tile_size=256, tissue_fraction=0.6)
    return path


def tile(slide, annotations, out, *extra: str):
    result = CliRunner().invoke(cli, ["tile", str(slide), "--annotations", str(annotations),
                                      "--out", str(out), "--tile-size", "64",
                                      "--classes", "normal,tumour=#00ff00", *extra],
                                catch_exceptions=False)
    report = pd.read_csv(out / "tile-report.csv", keep_default_na=False)
    return result, report.iloc[0]


def geojson(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
         "properties": {"classification": {"name": name}}} for name, ring in features]}))
    return path


def square(x, y, size):
    return [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]


def test_missing_annotation_warns_and_strict_fails(slide, tmp_path):
    empty = tmp_path / "marks"
    empty.mkdir()
    result, row = tile(slide, empty, tmp_path / "a")
    assert result.exit_code == 0 and row["status"] == "ok"
    assert "no annotation found" in row["warning"]
    assert "no annotation found" in result.output  # on the console too
    assert "tiling 1/1: case ok" in result.output  # one line per slide without a terminal
    result, row = tile(slide, empty, tmp_path / "b", "--strict")
    assert result.exit_code == 1 and row["status"] == "failed"
    assert "no annotation found" in row["error"]


def test_overlay_with_no_class_colour_names_found_and_expected(slide, tmp_path):
    overlay = write_overlay(slide, tmp_path / "case.overlay.tif",
                            [Mark((255, 0, 0), rect=(0, 0, 384, 512))], downsample=2)
    result, row = tile(slide, overlay, tmp_path / "a")
    assert row["status"] == "ok"
    assert "tumour #00ff00" in row["warning"]  # expected
    assert "#ff0000" in row["warning"]  # found
    manifest = pd.read_csv(tmp_path / "a" / "manifest.csv")
    assert set(manifest["label"]) == {"normal"}


def test_mask_with_no_class_value(slide, tmp_path):
    mask = tmp_path / "case.mask.png"
    Image.fromarray(np.zeros((HEIGHT // 4, WIDTH // 4), np.uint8)).save(mask)
    _, row = tile(slide, mask, tmp_path / "a")
    assert "labels no tile with a class" in row["warning"]
    assert "values found: [0]" in row["warning"] and "1=tumour" in row["warning"]
    # A mask that does label tumour tiles gives no warning.
    values = np.zeros((HEIGHT // 4, WIDTH // 4), np.uint8)
    values[:, :64] = 1
    Image.fromarray(values).save(mask)
    _, row = tile(slide, mask, tmp_path / "b")
    assert row["warning"] == ""


def test_geojson_without_features_or_outside_the_slide(slide, tmp_path):
    empty = geojson(tmp_path / "empty.geojson", [])
    _, row = tile(slide, empty, tmp_path / "a")
    assert "no classified polygon" in row["warning"]
    outside = geojson(tmp_path / "outside.geojson", [("tumour", square(5000, 5000, 300))])
    _, row = tile(slide, outside, tmp_path / "b")
    assert "all 1 features lie outside the" in row["warning"]
    result, row = tile(slide, outside, tmp_path / "c", "--strict")
    assert row["status"] == "failed" and "--strict" in row["error"]


def test_geojson_class_names_not_in_classes(slide, tmp_path):
    path = geojson(tmp_path / "mixed.geojson", [("Stroma", square(0, 0, 300)),
                                                ("tumour", square(400, 0, 256))])
    result, row = tile(slide, path, tmp_path / "a")
    assert row["status"] == "ok" and "Stroma" in row["warning"]
    assert "not in --classes" in row["warning"]
    manifest = pd.read_csv(tmp_path / "a" / "manifest.csv")
    tumour = manifest.loc[manifest["label"] == "tumour"]
    assert len(tumour) > 0 and (tumour["x"] >= 400 - 64).all()  # only the known polygon
    _, row = tile(slide, path, tmp_path / "b", "--strict")
    assert row["status"] == "failed" and "Stroma" in row["error"]
