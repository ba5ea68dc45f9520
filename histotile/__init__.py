"""histotile: whole-slide images to labelled tiles, CNN tile classifiers with grouped
cross-validation, and alpha-blended heatmap slides.

The public API is importable from here. Names load lazily, so ``import histotile`` stays
fast and never imports torch, dask or matplotlib until a function that needs them is used.

Example::

    import histotile as ht

    with ht.open_slide("slide.svs") as slide:
        tile = slide.read_region((1000, 2000), 0, (128, 128))
    manifest = ht.extract_tiles("slide.svs", ht.TilingSettings(tile_size=128))
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # stage 1: slides
    "open_slide": "histotile.wsi",
    "Slide": "histotile.wsi",
    "choose_level": "histotile.wsi",
    "write_synthetic_slide": "histotile.wsi.synthetic",
    "write_overlay": "histotile.wsi.synthetic",
    "Mark": "histotile.wsi.synthetic",
    # class order, default and positive class (every stage)
    "ClassRoles": "histotile.class_roles",
    # stage 2: tiling
    "TilingSettings": "histotile.tiling",
    "detect_tissue": "histotile.tiling",
    "tissue_fraction": "histotile.tiling",
    "make_grid": "histotile.tiling",
    "plan_tiles": "histotile.tiling",
    "extract_tiles": "histotile.tiling",
    "read_manifest": "histotile.tiling",
    "write_manifest": "histotile.tiling",
    "balance": "histotile.tiling",
    "patchify_image": "histotile.tiling",
    "load_annotation": "histotile.tiling",
    "artefact_masks": "histotile.tiling.artefacts",
    "slide_qc": "histotile.tiling.qc",
    "QCSettings": "histotile.tiling.qc",
    # stage 3: models
    "create_model": ("histotile.models", "create"),
    "TrainSettings": "histotile.models",
    "train": "histotile.models",
    "Predictor": "histotile.models",
    "spatial_groups": "histotile.models.groups",
    "grad_cam": "histotile.models.cam",
    "export_model": "histotile.models.export",
    # stage 4: postprocess
    "predict_slide": "histotile.postprocess",
    "load_predictions": "histotile.postprocess",
    "probability_map": "histotile.postprocess",
    "write_heatmap": "histotile.postprocess",
    "slide_decision": "histotile.postprocess",
    "threshold_sweep": "histotile.postprocess",
    "evaluate_slide": "histotile.postprocess",
    "write_qupath": "histotile.postprocess.qupath",
    "write_probability_slide": "histotile.postprocess.probability_slide",
    "write_montage": "histotile.postprocess.montage",
    "write_explanations": "histotile.postprocess.explain",
    "explain_tiles": "histotile.postprocess.explain",
    # stage 5: workflows
    "run_batch": "histotile.workflows.api",
    "tile_batch": "histotile.workflows.api",
    "qc_batch": "histotile.workflows.api",
    "predict_batch": "histotile.workflows.api",
    "heatmap_batch": "histotile.workflows.api",
    "evaluate_batch": "histotile.workflows.api",
    "RunOptions": "histotile.workflows.slide_options",
    "PredictOptions": "histotile.workflows.slide_options",
    "HeatmapOptions": "histotile.workflows.slide_options",
    "EvaluateOptions": "histotile.workflows.slide_options",
    "TileOptions": "histotile.workflows.slide_options",
    "QCOptions": "histotile.workflows.slide_options",
    "Execution": "histotile.workflows.tasks.execution",
    "ServeSettings": "histotile.workflows.serve",
    "evaluate_images": "histotile.workflows.tasks.image_evaluation",
    # errors
    "HistotileError": "histotile.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__", "sample_slide", "sample_overlay"]


def sample_slide() -> Path:
    """The bundled real H&E slide (CMU-1-Small-Region.svs, CC0; 2220x2967, 0.499 um/px)."""
    return Path(__file__).parent / "data" / "CMU-1-Small-Region.svs"


def sample_overlay() -> Path:
    """The demonstration painted overlay of :func:`sample_slide` (epithelium in green)."""
    return Path(__file__).parent / "data" / "CMU-1-Small-Region.overlay.png"


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'histotile' has no attribute {name!r}")
    module_name, attribute = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
