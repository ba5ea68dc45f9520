"""The option groups of the slide commands (slide inputs, slide geometry, model and
engine, output, heatmap look, decision, class roles), each option declared once here and
applied to the commands as decorators. Every default is read from the field the option
fills (:func:`histotile.workflows.cli.options.option`), and help texts show it from
there (``show_default``), never typed twice; ``tests/test_cli_defaults.py`` checks it.
Light: click and the options' dataclasses only."""

from __future__ import annotations

from collections.abc import Callable

import click

from histotile.models.engines import ENGINES
from histotile.models.operating_point import DEFAULT_THRESHOLD
from histotile.postprocess.render import DEFAULT_FLOOR, MODES
from histotile.tiling.settings import TilingSettings
from histotile.tiling.stain import METHODS
from histotile.workflows.cli.options import option, option_group, overwrite_option
from histotile.workflows.options import (
    AnnotationInputs,
    Geometry,
    HeatmapLook,
    ModelUse,
    format_classes,
)
from histotile.workflows.slide_options import (
    EvaluateOptions,
    HeatmapOptions,
    PredictOptions,
    ScoredOptions,
    TileOptions,
)

# -- slide inputs -------------------------------------------------------------------------

slides_argument = click.argument("slides", nargs=-1, required=True)

annotation_inputs = option_group(
    option(AnnotationInputs, "annotations", "--annotations", type=click.Path(exists=True),
           help="Annotations: a folder of <slide>.geojson, <slide>.overlay.* and "
                "<slide>.mask.* files, or one file (default: beside each slide). tile "
                "labels tiles from them; run and evaluate score predictions against them."),
    option(AnnotationInputs, "annotations_for_all", "--annotations-for-all", is_flag=True,
           help="With one annotation file and several slides: use it for every slide "
                "(without it, that is an error: each slide needs its own annotation)."),
)

# -- slide geometry -----------------------------------------------------------------------

_GEOMETRY_HELP = {
    "tile_size": "Tile side in pixels at the target resolution.",
    "stride": "Step between tiles in pixels at the target resolution (none: the tile "
              "size, no overlap).",
    "magnification": "Target objective magnification, e.g. 20.",
    "mpp": "Target microns per pixel.",
    "level": "Explicit pyramid level (for slides without metadata).",
    "min_tissue": "Tissue fraction below which a tile is background.",
    "keep_background": "Fraction of background tiles kept (seeded).",
    "seed": "Random seed (background sample, balancing).",
}
_GEOMETRY_TYPES = {"tile_size": click.IntRange(16), "stride": click.IntRange(1),
                   "magnification": float, "mpp": float, "level": click.IntRange(0),
                   "min_tissue": click.FloatRange(0, 1),
                   "keep_background": click.FloatRange(0, 1), "seed": int}


def slide_geometry(settings: type) -> Callable:
    """``--tile-size`` ... ``--seed``, filling ``settings``: :class:`TilingSettings` for
    ``tile`` (its defaults), :class:`Geometry` for the commands that predict (none given:
    the model's own tiling)."""
    model = settings is Geometry
    suffix = " Default: as the model was trained." if model else ""
    return option_group(*(
        option(settings, name, "--" + name.replace("_", "-"), type=kind,
               help=_GEOMETRY_HELP[name] + suffix)
        for name, kind in _GEOMETRY_TYPES.items()))


# -- model and engine ---------------------------------------------------------------------

model_options = option_group(
    click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False),
                 required=True, help="Model folder written by 'histotile train'."),
    option(ModelUse, "batch_size", "--batch-size", type=click.IntRange(1),
           help="Tiles per inference batch (default: the model's)."),
    option(ModelUse, "engine", "--engine", type=click.Choice(ENGINES),
           help="Inference engine: auto = the fastest installed for the device and model "
                "(onnxruntime on CPU for most models, with the onnx extra); "
                "onnxruntime-int8 only when asked."),
    option(ModelUse, "tta", "--tta", is_flag=True,
           help="Test-time augmentation: each tile's probabilities averaged over its 8 "
                "flips and 90-degree rotations (8 times the inference work)."),
)

# -- output ---------------------------------------------------------------------------------


def out_option(what: str) -> Callable:
    """``--out`` (``what``: what the folder holds)."""
    return click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
                        help=f"Output folder: {what}.")


def output_options(what: str) -> Callable:
    """``--out`` (``what``: what it holds) and ``--overwrite``."""
    return option_group(out_option(what), overwrite_option)


predictions_option = click.option(
    "--predictions", "predictions_dir", type=click.Path(exists=True), required=True,
    help="Folder written by 'histotile predict' (or 'run').")

geojson_option = option(PredictOptions, "geojson", "--geojson/--no-geojson",
                        help="Also predictions.geojson and regions.geojson (QuPath objects).")

# -- class roles and the decision ------------------------------------------------------------

positive_class_option = option_group(
    option(HeatmapOptions, "positive_class", "--positive-class",
           help="The class to detect: heatmaps, slide decisions, QuPath regions and "
                "evaluation are about it (default: the one recorded, in tile's manifest "
                "or the model card, else the last class)."),
    click.option("--class", "class_name", default=None, hidden=True,
                 help="Old name of --positive-class (deprecated)."),
)
default_class_option = option(
    EvaluateOptions, "default_class", "--default-class",
    help="The class of tiles no annotation covers: tile labels them with it, evaluate and "
         "run take it as their truth (default: the one recorded, in the model card, else "
         "the first class).")
threshold_option = option(
    ScoredOptions, "threshold", "--threshold", type=click.FloatRange(0, 1),
    help="Tile probability from which a tile is positive (default: the one the "
         "predictions record: the model card's operating point, else "
         f"{DEFAULT_THRESHOLD:g}). predict records it for heatmap, evaluate and the QuPath "
         "regions.")
decision_threshold_option = option(
    HeatmapOptions, "decision_threshold", "--decision-threshold",
    type=click.FloatRange(0, 1),
    help="A slide is positive when at least this fraction of its tiles is positive.")

# -- heatmap look ------------------------------------------------------------------------------

heatmap_look = option_group(
    option(HeatmapLook, "mode", "--mode", type=click.Choice(MODES),
           help="Colour tiles above --threshold, or a colour map of probability."),
    option(HeatmapLook, "alpha", "--alpha", type=click.FloatRange(0, 1),
           help="Overlay opacity."),
    option(HeatmapLook, "color", "--color", help="Overlay colour in threshold mode."),
    option(HeatmapLook, "downsample", "--downsample", type=click.FloatRange(1),
           help="Heatmap resolution as a downsample of level 0 (default: automatic)."),
    option(HeatmapLook, "probability_tiff", "--probability-tiff", is_flag=True,
           help="Also write probability.tif: the class probability as a one-channel "
                "uint8 pyramid (0-255 = 0-1) for QuPath and slide viewers."),
    option(HeatmapLook, "colormap", "--colormap",
           help="Colour map of --mode continuous (any matplotlib map; viridis and "
                "cividis are colour-blind safe)."),
    option(HeatmapLook, "floor", "--floor", type=click.FloatRange(0, 1),
           help="In --mode continuous, leave tiles below this probability uncoloured "
                f"(default: {DEFAULT_FLOOR:g})."),
)

# -- tile's own ------------------------------------------------------------------------------

_TILING = TilingSettings()
tile_options = option_group(
    click.option("--classes", default=format_classes(_TILING.classes, _TILING.palette),
                 show_default=True,
                 help="Classes in order, with palette colours for painted overlays. The "
                      "order is kept (never sorted)."),
    default_class_option,
    positive_class_option,
    option(TilingSettings, "min_label_fraction", "--min-label-fraction",
           type=click.FloatRange(0, 1),
           help="Share of a tile a class must cover to label it."),
    option(TileOptions, "balance", "--balance",
           help="Undersample to class ratios, e.g. 'normal=1,tumour=1'."),
    option(TileOptions, "strict", "--strict", is_flag=True,
           help="Fail a slide whose annotation labels nothing (missing, no colour or value "
                "matching a class, no polygon inside the slide, unknown class names) "
                "instead of warning."),
    option(TileOptions, "export_images", "--export-images", is_flag=True,
           help="Also write tile PNGs in an ImageFolder layout (OUT/images/<label>/)."),
    option(TilingSettings, "keep_artefacts", "--keep-artefacts", is_flag=True,
           help="Keep tiles mostly pen ink, fold or blur (dropped by default; the "
                "manifest's artefact column says how much)."),
    option(TileOptions, "stain_normalise", "--stain-normalise", type=click.Choice(METHODS),
           help="Fit a stain normaliser (recorded in OUT/manifest.json; training puts it "
                "in the model card and prediction applies it to every tile)."),
    option(TileOptions, "stain_reference", "--stain-reference",
           type=click.Path(exists=True, dir_okay=False),
           help="Reference image of the normaliser (default: a sample of the tiled tissue "
                "tiles)."),
)
