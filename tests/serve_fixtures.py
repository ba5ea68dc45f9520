"""What the ``histotile serve`` tests share: slides under one root, a results folder with
known predictions, and a LeNet trained for a few seconds on the synthetic stain task."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# The viewer slide: tiles of the left half are positive (0.9), of the right half not
# (0.1), so screenshots can be checked against where the predictions are positive.
CASE_SIZE = (2048, 1536)
CASE_TILE = 128


@dataclass
class ServeWorld:
    root: Path
    slides: Path
    results: Path
    model: Path
    outside: Path  # a slide outside the roots (must never be served)


def _case_predictions(slides: Path, results: Path) -> None:
    from histotile.postprocess import SlidePredictions

    width, height = CASE_SIZE
    xs, ys = np.meshgrid(np.arange(0, width, CASE_TILE), np.arange(0, height, CASE_TILE))
    xs, ys = xs.ravel(), ys.ravel()
    positive = np.where(xs + CASE_TILE <= width // 2, 0.9, 0.1)
    tiles = pd.DataFrame({"x": xs, "y": ys, "extent": CASE_TILE,
                          "prob_eosin": 1 - positive, "prob_haematoxylin": positive})
    predictions = SlidePredictions("case", str(slides / "case.tif"), CASE_SIZE, 0.5,
                                   ("eosin", "haematoxylin"), tiles)
    folder = results / "case"
    folder.mkdir(parents=True)
    predictions.save(folder / "predictions.csv")
    record = {"slide": "case", "status": "ok", "tiles": len(tiles),
              "decision": "negative (50.0% haematoxylin)",
              "extra": {"positive_class": "haematoxylin",
                        "decision": {"positive": False, "fraction": 0.5,
                                     "positive_class": "haematoxylin"},
                        "evaluation": {"sensitivity": 0.8, "specificity": 0.75}}}
    (folder / ".histotile-run.json").write_text(json.dumps(
        {"fingerprint": "test", "state": "done", "record": record}))


@pytest.fixture(scope="session")
def serve_world(tmp_path_factory) -> ServeWorld:
    import cv2

    from histotile.models import TrainSettings, train
    from histotile.models.synthetic import write_stain_slides
    from histotile.wsi.synthetic import write_synthetic_slide

    root = tmp_path_factory.mktemp("serve")
    slides, results = root / "slides", root / "results"
    slides.mkdir()
    write_synthetic_slide(slides / "case.tif", *CASE_SIZE, seed=7, mpp=0.5, tile_size=256,
                          levels=3, tissue_fraction=0.6)
    _case_predictions(slides, results)
    # A pathologist's outline of the positive (left) half, as QuPath exports it.
    (slides / "case.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"classification": {"name": "haematoxylin"}},
         "geometry": {"type": "Polygon", "coordinates": [[[100, 100], [900, 100], [900, 1400],
                                                          [100, 1400], [100, 100]]]}}]}))
    rng = np.random.default_rng(1)
    plain = rng.integers(120, 230, (300, 400, 3), dtype=np.uint8)
    cv2.imwrite(str(slides / "plain.png"), plain)
    # Stain slides: the model's training data, and one slide for jobs.
    manifest = write_stain_slides(root / "stain", patients=4, grid=(6, 5), tile_size=64,
                                  seed=5)
    (slides / "stainjob.tif").write_bytes((root / "stain" / "patient00_slide0.tif").read_bytes())
    # Its sidecar records settings the tiler does not know (overlap, source), which
    # prediction would refuse; without it the card falls back to plain tiling.
    (root / "stain" / "tiles.json").unlink()
    model = root / "model"
    train(manifest, model, TrainSettings(model="lenet", epochs=4, folds=0,
                                         test_fraction=0, batch_size=16, optimizer="adam",
                                         lr=3e-3, workers=1, seed=0))
    outside = root / "outside.png"
    cv2.imwrite(str(outside), plain)
    return ServeWorld(root, slides, results, model, outside)
