"""QuPath export: tile predictions and positive regions as GeoJSON.

* :func:`tile_features`: one ``"detection"`` per predicted tile, a square polygon in
  level-0 pixels, classified as its most probable class (name and colour) with every
  class probability as a measurement, so QuPath (drag and drop) colours tiles by class
  and by any probability (Measure > Show measurement maps).
* :func:`region_features`: the positive regions, the cells of the averaged probability
  map at or above a threshold merged into polygons with holes (shapely) and simplified
  to a tolerance in microns, as ``"annotation"`` objects.

Coordinates are level-0 pixels, what QuPath uses for an image's objects. histotile's own
GeoJSON reader (:mod:`histotile.tiling.annotations`) reads both files back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from histotile._atomic import atomic_path, check_writable
from histotile._deprecation import renamed_keywords
from histotile.errors import ConfigError
from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
from histotile.postprocess.maps import runs
from histotile.postprocess.predictions import SlidePredictions

PREDICTIONS_FILE = "predictions.geojson"
REGIONS_FILE = "regions.geojson"
DEFAULT_TOLERANCE_UM = 4.0  # region simplification, microns (about 8 px at 20x)
# Class colours by class index (Okabe-Ito, colour-blind safe), packed for QuPath as RGB.
PALETTE = ((0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0),
           (86, 180, 233), (240, 228, 66), (0, 0, 0))


def class_colour(index: int) -> list[int]:
    """The RGB colour QuPath shows for class number ``index`` of a model."""
    return list(PALETTE[index % len(PALETTE)])


def tile_features(predictions: SlidePredictions) -> dict[str, Any]:
    """A FeatureCollection with one detection per tile (level-0 pixel squares)."""
    tiles = predictions.tiles
    x0 = tiles["x"].to_numpy(np.float64)
    y0 = tiles["y"].to_numpy(np.float64)
    x1 = x0 + tiles["extent"].to_numpy(np.float64)
    y1 = y0 + tiles["extent"].to_numpy(np.float64)
    corners = np.stack([x0, y0, x1, y0, x1, y1, x0, y1, x0, y0], axis=1).reshape(-1, 5, 2)
    classes = predictions.classes
    names = [f"{c} probability" for c in classes]
    classifications = [{"name": c, "color": class_colour(i)} for i, c in enumerate(classes)]
    # One dict per tile is unavoidable for JSON; the numbers become Python lists in bulk
    # (per-element conversions took most of the time: 6.6 s for 76,000 tiles).
    probabilities = np.round(predictions.probability_matrix().astype(np.float64), 6).tolist()
    features = [{
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"objectType": "detection",
                       "classification": classifications[label],
                       "measurements": dict(zip(names, row))},
    } for ring, label, row in zip(corners.tolist(), predictions.predicted_labels().tolist(),
                                  probabilities)]
    return {"type": "FeatureCollection", "features": features}


def positive_cells(predictions: SlidePredictions, positive_class: str, threshold: float):
    """The cells of the averaged probability map of ``positive_class`` at or above
    ``threshold`` merged into one shapely geometry (level-0 pixels, unsimplified)."""
    import shapely

    grid = predictions.grid(positive_class)
    if grid.empty:
        return shapely.Polygon()
    above = np.nan_to_num(grid.values, nan=-1.0) >= threshold
    boxes = []
    # Runs of positive cells along each row become one rectangle each: a few boxes per
    # row for shapely to merge instead of one per cell.
    for row in np.flatnonzero(above.any(axis=1)):
        starts, stops = runs(above[row])
        keep = above[row][starts]
        boxes.append(shapely.box(grid.x_edges[starts[keep]], grid.y_edges[row],
                                 grid.x_edges[stops[keep]], grid.y_edges[row + 1]))
    if not boxes:
        return shapely.Polygon()
    return shapely.union_all(np.concatenate(boxes))


def region_features(predictions: SlidePredictions, positive_class: str,
                    threshold: float = DEFAULT_TILE_THRESHOLD,
                    tolerance_um: float = DEFAULT_TOLERANCE_UM) -> dict[str, Any]:
    """A FeatureCollection of the regions where ``positive_class``'s averaged probability is
    at least ``threshold``: one annotation per connected polygon (holes kept), simplified
    so no boundary moves more than ``tolerance_um`` microns (level-0 pixels when the
    slide records no mpp)."""
    import shapely

    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold={threshold}: a probability threshold lies between 0 "
                          "and 1")
    if not tolerance_um >= 0:
        raise ConfigError(f"tolerance_um={tolerance_um}: give a simplification tolerance of "
                          "0 microns or more")
    index = list(predictions.classes).index(predictions.check_class(positive_class))
    merged = positive_cells(predictions, positive_class, threshold)
    tolerance = tolerance_px(predictions, tolerance_um)
    if tolerance > 0 and not merged.is_empty:
        merged = shapely.make_valid(shapely.simplify(merged, tolerance,
                                                     preserve_topology=True))
    polygons = [g for g in shapely.get_parts(merged) if g.geom_type == "Polygon"
                and not g.is_empty]
    features = [{
        "type": "Feature",
        "geometry": shapely.geometry.mapping(polygon),
        "properties": {
            "objectType": "annotation",
            "name": f"{positive_class} >= {threshold:g}",
            "classification": {"name": positive_class, "color": class_colour(index)},
            "measurements": {"area um^2" if predictions.mpp else "area px^2":
                             round(polygon.area * (predictions.mpp or 1.0) ** 2, 3)},
        },
    } for polygon in polygons]
    return {"type": "FeatureCollection", "features": features}


def tolerance_px(predictions: SlidePredictions, tolerance_um: float) -> float:
    """``tolerance_um`` in level-0 pixels of the predictions' slide (as is, no mpp)."""
    return float(tolerance_um) / predictions.mpp if predictions.mpp else float(tolerance_um)


def write_geojson(path: str | Path, collection: dict[str, Any], *,
                  overwrite: bool = False) -> Path:
    """Write a FeatureCollection atomically (compact JSON: files of 100,000 tiles)."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        Path(tmp).write_text(json.dumps(collection, separators=(",", ":")), encoding="utf-8")
    return Path(path)


@renamed_keywords(class_name="positive_class")
def write_qupath(predictions: SlidePredictions, out_dir: str | Path, *,
                 positive_class: str | None, threshold: float = DEFAULT_TILE_THRESHOLD,
                 tolerance_um: float = DEFAULT_TOLERANCE_UM,
                 overwrite: bool = False) -> dict[str, str]:
    """``predictions.geojson`` (every tile) and, when ``positive_class`` is given,
    ``regions.geojson`` (its positive regions) in ``out_dir``; returns the paths written
    by output name. ``class_name=``, the old name of ``positive_class``, is still taken,
    with a :class:`DeprecationWarning`."""
    out_dir = Path(out_dir)
    for name in (PREDICTIONS_FILE, REGIONS_FILE if positive_class is not None else None):
        if name is not None:
            check_writable(out_dir / name, overwrite)  # refuse before writing either
    written = {"geojson": str(write_geojson(out_dir / PREDICTIONS_FILE,
                                            tile_features(predictions),
                                            overwrite=overwrite))}
    if positive_class is not None:
        _require_shapely()
        regions = region_features(predictions, positive_class, threshold, tolerance_um)
        written["regions"] = str(write_geojson(out_dir / REGIONS_FILE, regions,
                                               overwrite=overwrite))
    return written


def _require_shapely() -> None:
    try:
        import shapely  # noqa: F401
    except ImportError:
        raise ConfigError("regions.geojson needs shapely: pip install 'histotile[qupath]' "
                          "(or skip the QuPath files with --no-geojson)") from None
