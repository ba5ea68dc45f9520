"""The benchmark's heatmap stage, and its baseline: an OpenSlide read of level 0 in
full-width bands, as the renderer reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from histotile.workflows.benchmark.meter import Meter

# --- heatmap ------------------------------------------------------------------------------

def heatmap(params: dict, meter: Meter) -> dict:
    """Heatmap TIFF (every pyramid level) + PNG preview. The threshold is the median
    probability, so about half the tissue tiles are coloured whatever one epoch taught
    the model (its probabilities sit in a narrow band)."""
    from histotile.postprocess import load_predictions, write_heatmap

    predictions = load_predictions(params["predictions"])
    threshold = float(np.median(predictions.probabilities("tumour")))
    with meter:
        result = write_heatmap(params["slide"], predictions, params["heatmap"],
                               positive_class="tumour", threshold=threshold,
                               preview_path=params["preview"], overwrite=True)
    return {"levels": len(result.level_dimensions), "tiles": len(predictions),
            "tiles_coloured": int(result.tiles_coloured),
            "megapixels_written": sum(w * h for w, h in result.level_dimensions) / 1e6,
            "bytes": Path(params["heatmap"]).stat().st_size}


def heatmap_baseline(params: dict, meter: Meter) -> dict:
    import openslide

    rows = 512
    with meter, openslide.OpenSlide(params["slide"]) as slide:
        width, height = slide.level_dimensions[0]
        for top in range(0, height, rows):
            np.asarray(slide.read_region((0, top), 0, (width, min(rows, height - top))))
    return {"megapixels": width * height / 1e6}
