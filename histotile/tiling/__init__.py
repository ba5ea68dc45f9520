"""Stage 2: tissue detection, tile grids, white-tile filtering, labels from annotations,
balancing, patches of small images and the tile manifest (``histotile.tiling``).

Torch-free and light: importing it loads numpy and OpenCV only (pandas on first use).
"""

from histotile.tiling.annotations import (
    GeoJSONAnnotation,
    LabelMask,
    PaintedOverlay,
    annotation_fractions,
    assign_labels,
    load_annotation,
)
from histotile.tiling.balance import balance
from histotile.tiling.export import export_imagefolder
from histotile.tiling.extract import extract_tiles
from histotile.tiling.grid import TileGrid, grid_from_boxes, make_grid
from histotile.tiling.manifest import class_columns, read_manifest, write_manifest
from histotile.tiling.patches import (
    breakhis_label,
    breakhis_patient,
    breakhis_tumour_type,
    patch_dataset,
    patchify_image,
)
from histotile.tiling.plan import TilePlan, plan_tiles
from histotile.tiling.reader import iter_tile_batches
from histotile.tiling.settings import TilingSettings
from histotile.tiling.tile_io import MANIFEST_COLUMNS, read_tile, resize_tile
from histotile.tiling.tissue import (
    TissueMask,
    detect_tissue,
    tissue_fraction,
    tissue_fractions,
    tissue_pixels,
)

__all__ = [
    "MANIFEST_COLUMNS", "GeoJSONAnnotation", "LabelMask", "PaintedOverlay", "TileGrid",
    "TilePlan", "TilingSettings", "TissueMask", "annotation_fractions", "assign_labels",
    "balance", "breakhis_label", "breakhis_patient", "breakhis_tumour_type",
    "class_columns", "detect_tissue", "export_imagefolder", "extract_tiles",
    "grid_from_boxes", "iter_tile_batches", "load_annotation", "make_grid",
    "patch_dataset", "patchify_image", "plan_tiles", "read_manifest", "read_tile",
    "resize_tile", "tissue_fraction", "tissue_fractions", "tissue_pixels", "write_manifest",
]
