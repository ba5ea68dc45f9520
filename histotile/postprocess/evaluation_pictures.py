"""Pictures of an evaluation: the annotation overlay next to the prediction heatmap
(:func:`write_side_by_side`), as the original study showed its test slides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from histotile._atomic import atomic_path, check_writable
from histotile._deprecation import renamed_keywords
from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
from histotile.postprocess.annotation_truth import labelling_settings, resolve_annotation
from histotile.postprocess.evaluation import SlideEvaluation
from histotile.postprocess.legend import side_by_side, with_legend, write_png
from histotile.postprocess.predictions import SlidePredictions
from histotile.postprocess.render import BlendStyle, Colouriser
from histotile.wsi import open_slide


def annotation_panel(slide, annotation: Any, settings, positive_class: str, size: int,
                     colour: tuple[int, int, int], alpha: float) -> np.ndarray:
    """The slide's thumbnail (longest side ``size``) with the annotated
    ``positive_class`` blended in ``colour`` over every thumbnail pixel the class covers
    at least half of."""
    from histotile.postprocess.blend import blend_constant, constant_lut
    from histotile.tiling.annotations import annotation_fractions

    thumb = np.array(slide.thumbnail(size))
    height, width = thumb.shape[:2]
    width0, height0 = slide.dimensions
    step_x, step_y = width0 / width, height0 / height
    gx, gy = np.meshgrid(np.arange(width) * step_x, np.arange(height) * step_y)
    boxes = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, step_x),
                      np.full(gx.size, step_y)], axis=1)
    # GeoJSON is rasterised at about the thumbnail's resolution, not the tiles'.
    coarse = dataclasses.replace(settings, annotation_resolution=2)
    fractions = annotation_fractions(annotation, slide, boxes, settings.classes, coarse,
                                     warn_unused=False)
    covered = fractions[:, list(settings.classes).index(positive_class)]
    return blend_constant(thumb, constant_lut(colour, alpha),
                          covered.reshape(height, width) >= 0.5)


@renamed_keywords(class_name="positive_class")
def write_side_by_side(
    slide_path: str | Path,
    predictions: SlidePredictions,
    annotation: Any,
    out_path: str | Path,
    *,
    positive_class: str,
    threshold: float = DEFAULT_TILE_THRESHOLD,
    color: tuple[int, int, int] = (0, 255, 0),
    alpha: float = 0.4,
    size: int = 1024,
    evaluation: SlideEvaluation | None = None,
    palette: dict[str, tuple[int, int, int]] | None = None,
    match_name: bool = True,
    overwrite: bool = False,
) -> Path:
    """A PNG with the annotation overlay (left) next to the prediction heatmap (right),
    both at ``size`` px on the longest side, the way the original study showed its test
    slides; a legend (and the evaluation's counts, when given) under them. Both show
    ``positive_class`` (``class_name=``, its old name, is still taken, with a
    :class:`DeprecationWarning`)."""
    style = BlendStyle("threshold", threshold, color, alpha)
    predictions.check_class(positive_class)
    check_writable(out_path, overwrite)
    settings = labelling_settings(predictions, positive_class=positive_class, palette=palette)
    with open_slide(slide_path) as slide:
        predictions.check_slide(slide, match_name=match_name)
        loaded = resolve_annotation(annotation, settings)
        left = annotation_panel(slide, loaded, settings, positive_class, size, style.color,
                                style.alpha)
        right = Colouriser(predictions.grid(positive_class), style).blend_image(
            np.array(slide.thumbnail(size)), slide.dimensions[0] / left.shape[1],
            slide.dimensions[1] / left.shape[0])
    caption = predictions.slide_name
    if evaluation is not None:
        c = evaluation.counts
        caption += (f"  |  tiles TN {c['TN']}  FP {c['FP']}  FN {c['FN']}  TP {c['TP']}"
                    f"  |  sensitivity {evaluation.sensitivity:.3f}"
                    f"  specificity {evaluation.specificity:.3f}")
    image = with_legend(side_by_side([left, right], [f"annotation: {positive_class}",
                                                     f"prediction: {positive_class}"]),
                        style, positive_class, caption, mpp=None if predictions.mpp is None
                        else predictions.mpp * predictions.dimensions[0] / right.shape[1])
    with atomic_path(out_path, overwrite=overwrite) as tmp:
        write_png(tmp, image)
    return Path(out_path)
