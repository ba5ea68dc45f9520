"""Property-based tests (Hypothesis) of the parsers that take user files: GeoJSON
annotations, painted overlays and label masks, configuration files and predictions
tables. Whatever the file holds, each either parses or raises histotile's own error
(:class:`~histotile.errors.HistotileError`), never another exception.

The default tier runs :data:`EXAMPLES` (100) examples per parser; set
``HISTOTILE_HYPOTHESIS_EXAMPLES=1000`` for the thorough run (see the README)."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from histotile.errors import HistotileError
from histotile.wsi.synthetic import write_synthetic_slide

EXAMPLES = int(os.environ.get("HISTOTILE_HYPOTHESIS_EXAMPLES", "100"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
SIDE = 256
CLASSES = ("normal", "tumour")


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    from histotile.wsi import open_slide

    path = tmp_path_factory.mktemp("slide") / "case.tif"
    write_synthetic_slide(path, SIDE, SIDE, seed=2, tile_size=128, tissue_fraction=0.6)
    with open_slide(path) as opened:
        yield opened


_ROOT: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _scratch_root(tmp_path_factory):
    """The folder of every example's files: pytest's, so it goes with the run (a folder
    per example in the system's /tmp left 20,000 of them behind)."""
    _ROOT.append(tmp_path_factory.mktemp("property"))
    yield
    _ROOT.pop()


def scratch(name: str, content: bytes) -> Path:
    """``content`` in a new file ``name`` of a fresh folder (Hypothesis runs many examples
    in one test: a function-scoped tmp_path would be shared by all of them)."""
    folder = Path(tempfile.mkdtemp(prefix="case-", dir=_ROOT[-1]))
    path = folder / name
    path.write_bytes(content)
    return path


def boxes() -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(0, SIDE, 64), np.arange(0, SIDE, 64))
    return np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 64), np.full(xs.size, 64)], 1)


# -- GeoJSON ------------------------------------------------------------------------------

numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.floats(-1e3, 1e3))
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=20)
points = st.lists(st.one_of(st.lists(numbers, min_size=0, max_size=3), json_values),
                  max_size=8)
rings = st.lists(points, max_size=3)
geometries = st.fixed_dictionaries(
    {"type": st.sampled_from(["Polygon", "MultiPolygon", "GeometryCollection", "Point",
                              "LineString", "Circle", ""]) | json_values},
    optional={"coordinates": rings | st.lists(rings, max_size=2) | json_values,
              "geometries": st.lists(st.fixed_dictionaries({"type": st.just("Polygon"),
                                                            "coordinates": rings}),
                                     max_size=2) | json_values})
names = st.sampled_from(["tumour", "Normal", "../../evil", "", "TUMOUR", "stroma"]) | \
    json_values
features = st.fixed_dictionaries(
    {"type": st.just("Feature") | json_values},
    optional={"geometry": geometries | json_values,
              "properties": st.fixed_dictionaries(
                  {}, optional={"classification": st.fixed_dictionaries(
                      {}, optional={"name": names}) | json_values,
                      "class": names, "name": names}) | json_values,
              "id": json_values})
documents = st.one_of(
    st.fixed_dictionaries({"type": st.just("FeatureCollection"),
                           "features": st.lists(features | json_values, max_size=5)}),
    features, st.lists(features, max_size=4), json_values)


def _geojson_bytes(document, mode: str) -> bytes:
    text = json.dumps(document, allow_nan=True)
    if mode == "truncated":
        return text[: len(text) // 2].encode()
    if mode == "latin-1":
        return text.encode() + b"\xff\xfe"
    return text.encode()


@PROPERTY
@given(document=documents, mode=st.sampled_from(["whole", "whole", "truncated", "latin-1"]))
def test_geojson_parses_or_raises_a_histotile_error(slide, document, mode):
    from histotile.tiling import TilingSettings
    from histotile.tiling.annotation_checks import check_annotation
    from histotile.tiling.annotations import annotation_fractions, load_annotation

    path = scratch("case.geojson", _geojson_bytes(document, mode))
    settings = TilingSettings(classes=CLASSES, annotation_resolution=4)
    try:
        annotation = load_annotation(path, classes=CLASSES)
        check_annotation(annotation, slide.dimensions, settings)
        fractions = annotation_fractions(annotation, slide, boxes(), CLASSES, settings)
    except HistotileError:
        return
    assert fractions.shape == (16, 2)
    assert np.all((fractions >= 0) & (fractions <= 1))


# -- painted overlays and label masks -----------------------------------------------------

MODES = {"L": np.uint8, "RGB": np.uint8, "RGBA": np.uint8, "P": np.uint8, "1": bool,
         "I;16": np.uint16, "LA": np.uint8}


@st.composite
def images(draw) -> bytes:
    """An image file's bytes: any mode and size, PNG or TIFF (or truncated, or junk)."""
    mode = draw(st.sampled_from(sorted(MODES)))
    width, height = draw(st.integers(1, 80)), draw(st.integers(1, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    top = draw(st.sampled_from([1, 2, 3, 255]))
    channels = {"RGB": 3, "RGBA": 4, "LA": 2}.get(mode, 0)
    shape = (height, width, channels) if channels else (height, width)
    values = rng.integers(0, top + 1, shape)
    if mode == "1":
        image = Image.fromarray(values.astype(bool))
    elif mode == "I;16":
        image = Image.fromarray(values.astype(np.uint16))
    else:
        image = Image.fromarray(values.astype(np.uint8), mode="L" if mode == "P" else None)
        if mode == "P":
            image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format=draw(st.sampled_from(["PNG", "TIFF"])))
    data = buffer.getvalue()
    damage = draw(st.sampled_from(["none", "none", "truncate", "junk", "empty"]))
    if damage == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if damage == "junk":
        return draw(st.binary(max_size=200))
    return b"" if damage == "empty" else data


@PROPERTY
@given(data=images(), kind=st.sampled_from(["overlay", "mask", "plain"]),
       suffix=st.sampled_from([".png", ".tif"]))
def test_overlays_and_masks_parse_or_raise_a_histotile_error(slide, data, kind, suffix):
    from histotile.tiling import TilingSettings
    from histotile.tiling.annotation_checks import check_labels
    from histotile.tiling.annotations import annotation_fractions, load_annotation

    name = {"overlay": "case.overlay", "mask": "case.mask", "plain": "case"}[kind] + suffix
    path = scratch(name, data)
    settings = TilingSettings(classes=CLASSES, palette={"tumour": (0, 255, 0)})
    try:
        annotation = load_annotation(path, palette=settings.palette, classes=CLASSES)
        fractions = annotation_fractions(annotation, slide, boxes(), CLASSES, settings)
        import pandas as pd

        check_labels(annotation, pd.DataFrame({"frac_tumour": fractions[:, 1]}), slide,
                     settings)
    except HistotileError:
        return
    assert fractions.shape == (16, 2)
    assert np.all((fractions >= 0) & (fractions <= 1))


# -- configuration files ------------------------------------------------------------------

config_keys = st.sampled_from(["tile-size", "tile_size", "stride", "level", "magnification",
                               "min-tissue", "classes", "balance", "tile", "run", "seed",
                               "keep-background", "unknown", "overwrite"]) | st.text(max_size=6)
config_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(config_keys, inner,
                                                                 max_size=3),
    max_leaves=10)


@st.composite
def config_files(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from([".yaml", ".json", ".toml", ".yml", ".cfg"]))
    document = draw(st.dictionaries(config_keys, config_values, max_size=5) | config_values)
    if suffix == ".toml":
        text = "\n".join(f"{draw(config_keys)} = {json.dumps(v)}" for v in
                         (document.values() if isinstance(document, dict) else [document]))
    else:  # JSON is YAML too
        text = json.dumps(document, allow_nan=True)
    raw = text.encode()
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "bytes"]))
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "bytes":
        raw = draw(st.binary(max_size=100))
    return suffix, raw


@PROPERTY
@given(config=config_files())
def test_config_files_parse_or_give_a_usage_error(config):
    from histotile.workflows.cli.config import load_config, options_for
    from histotile.workflows.cli.main import cli

    suffix, raw = config
    path = scratch(f"options{suffix}", raw)
    try:
        options_for(load_config(path), "tile")
    except HistotileError:
        pass
    # Through the command line: options typed by click, then the batch (whose one slide
    # is missing) runs to its report; never a traceback.
    result = CliRunner().invoke(cli, ["tile", str(path.parent / "missing.tif"), "--out",
                                      str(path.parent / "out"), "--config", str(path)])
    assert result.exit_code in (0, 1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)


# -- predictions tables -------------------------------------------------------------------

cells = st.one_of(numbers, st.text(max_size=5), st.none(), st.sampled_from(["0.5", "1", "0"]))
columns = st.sampled_from(["x", "y", "extent", "prob_normal", "prob_tumour", "slide",
                           "other"]) | st.text(max_size=5)


@st.composite
def prediction_files(draw) -> tuple[bytes, bytes]:
    sidecar = draw(st.fixed_dictionaries(
        {"format": st.just("histotile.predictions/1") | json_values,
         "slide": st.fixed_dictionaries({"name": st.just("a") | json_values,
                                         "dimensions": st.just([SIDE, SIDE]) | json_values},
                                        optional={"mpp": numbers | json_values}) | json_values,
         "classes": st.just(list(CLASSES)) | json_values},
        optional={"tiles": st.integers(0, 5) | json_values, "settings": json_values,
                  "model": json_values}))
    names = draw(st.lists(columns, min_size=0, max_size=6, unique=True)
                 | st.just(["x", "y", "extent", "prob_normal", "prob_tumour"]))
    rows = draw(st.lists(st.lists(cells, min_size=len(names), max_size=len(names)),
                         max_size=5))
    lines = [",".join(names)] + [",".join("" if c is None else str(c) for c in row)
                                 for row in rows]
    table = "\n".join(lines).encode()
    if draw(st.booleans()) and draw(st.booleans()):
        table = draw(st.binary(max_size=80))
    return json.dumps(sidecar, allow_nan=True).encode(), table


@PROPERTY
@given(files=prediction_files())
def test_predictions_tables_load_or_raise_a_histotile_error(files):
    from histotile.postprocess import load_predictions

    sidecar, table = files
    path = scratch("predictions.csv", table)
    path.with_suffix(".json").write_bytes(sidecar)
    try:
        predictions = load_predictions(path)
    except HistotileError:
        return
    matrix = predictions.probability_matrix()
    assert np.all((matrix >= -1e-5) & (matrix <= 1 + 1e-5))
    assert predictions.tiles[["x", "y", "extent"]].notna().all().all()
