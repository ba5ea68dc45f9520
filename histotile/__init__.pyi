"""Type stub of :mod:`histotile` for editors and type checkers: ``__init__.py`` loads
its public names lazily (``_EXPORTS``, through a module ``__getattr__``), which no tool
can follow; here each is re-exported from the module that defines it, signature and all.
tests/test_init_stub.py fails when this list and ``_EXPORTS`` differ."""

from pathlib import Path

from histotile.class_roles import ClassRoles as ClassRoles
from histotile.errors import HistotileError as HistotileError
from histotile.models import Predictor as Predictor
from histotile.models import TrainSettings as TrainSettings
from histotile.models import create as create_model
from histotile.models import train as train
from histotile.models.cam import grad_cam as grad_cam
from histotile.models.export import export_model as export_model
from histotile.models.groups import spatial_groups as spatial_groups
from histotile.postprocess import evaluate_slide as evaluate_slide
from histotile.postprocess import load_predictions as load_predictions
from histotile.postprocess import predict_slide as predict_slide
from histotile.postprocess import probability_map as probability_map
from histotile.postprocess import slide_decision as slide_decision
from histotile.postprocess import threshold_sweep as threshold_sweep
from histotile.postprocess import write_heatmap as write_heatmap
from histotile.postprocess.explain import explain_tiles as explain_tiles
from histotile.postprocess.explain import write_explanations as write_explanations
from histotile.postprocess.montage import write_montage as write_montage
from histotile.postprocess.probability_slide import (
    write_probability_slide as write_probability_slide,
)
from histotile.postprocess.qupath import write_qupath as write_qupath
from histotile.tiling import TilingSettings as TilingSettings
from histotile.tiling import balance as balance
from histotile.tiling import detect_tissue as detect_tissue
from histotile.tiling import extract_tiles as extract_tiles
from histotile.tiling import load_annotation as load_annotation
from histotile.tiling import make_grid as make_grid
from histotile.tiling import patchify_image as patchify_image
from histotile.tiling import plan_tiles as plan_tiles
from histotile.tiling import read_manifest as read_manifest
from histotile.tiling import tissue_fraction as tissue_fraction
from histotile.tiling import write_manifest as write_manifest
from histotile.tiling.artefacts import artefact_masks as artefact_masks
from histotile.tiling.qc import QCSettings as QCSettings
from histotile.tiling.qc import slide_qc as slide_qc
from histotile.workflows.api import evaluate_batch as evaluate_batch
from histotile.workflows.api import heatmap_batch as heatmap_batch
from histotile.workflows.api import predict_batch as predict_batch
from histotile.workflows.api import qc_batch as qc_batch
from histotile.workflows.api import run_batch as run_batch
from histotile.workflows.api import tile_batch as tile_batch
from histotile.workflows.serve import ServeSettings as ServeSettings
from histotile.workflows.slide_options import EvaluateOptions as EvaluateOptions
from histotile.workflows.slide_options import HeatmapOptions as HeatmapOptions
from histotile.workflows.slide_options import PredictOptions as PredictOptions
from histotile.workflows.slide_options import QCOptions as QCOptions
from histotile.workflows.slide_options import RunOptions as RunOptions
from histotile.workflows.slide_options import TileOptions as TileOptions
from histotile.workflows.tasks.execution import Execution as Execution
from histotile.workflows.tasks.image_evaluation import evaluate_images as evaluate_images
from histotile.wsi import Slide as Slide
from histotile.wsi import choose_level as choose_level
from histotile.wsi import open_slide as open_slide
from histotile.wsi.synthetic import Mark as Mark
from histotile.wsi.synthetic import write_overlay as write_overlay
from histotile.wsi.synthetic import write_synthetic_slide as write_synthetic_slide

__version__: str
__all__ = [
    "ClassRoles",
    "EvaluateOptions",
    "Execution",
    "HeatmapOptions",
    "HistotileError",
    "Mark",
    "PredictOptions",
    "Predictor",
    "QCOptions",
    "QCSettings",
    "RunOptions",
    "ServeSettings",
    "Slide",
    "TileOptions",
    "TilingSettings",
    "TrainSettings",
    "artefact_masks",
    "balance",
    "choose_level",
    "create_model",
    "detect_tissue",
    "evaluate_batch",
    "evaluate_images",
    "evaluate_slide",
    "explain_tiles",
    "export_model",
    "extract_tiles",
    "grad_cam",
    "heatmap_batch",
    "load_annotation",
    "load_predictions",
    "make_grid",
    "open_slide",
    "patchify_image",
    "plan_tiles",
    "predict_batch",
    "predict_slide",
    "probability_map",
    "qc_batch",
    "read_manifest",
    "run_batch",
    "slide_decision",
    "slide_qc",
    "spatial_groups",
    "threshold_sweep",
    "tile_batch",
    "tissue_fraction",
    "train",
    "write_explanations",
    "write_heatmap",
    "write_manifest",
    "write_montage",
    "write_overlay",
    "write_probability_slide",
    "write_qupath",
    "write_synthetic_slide",
    "__version__",
    "sample_slide",
    "sample_overlay",
]


def sample_slide() -> Path: ...
def sample_overlay() -> Path: ...
def __dir__() -> list[str]: ...
