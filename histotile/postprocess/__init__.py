"""Stage 4: slide prediction, probability maps, heatmap slides, patch-majority decisions
and evaluation against annotations (``histotile.postprocess``).

Never imports torch: models come in through the :class:`TilePredictor` protocol
(anything with ``classes``, ``tile_size``, ``card`` and ``predict``, such as
``histotile.models.Predictor``). Progress callbacks are ``progress(done, total)``
(cumulative: tiles for prediction, rows for heatmaps); nothing here prints.
"""

from histotile.postprocess.decisions import (
    DEFAULT_THRESHOLDS,
    Decision,
    SweepResult,
    slide_decision,
    threshold_sweep,
)
from histotile.postprocess.evaluation import (
    EvaluationSummary,
    SlideEvaluation,
    evaluate_slide,
    evaluate_slides,
    evaluate_tiles,
)
from histotile.postprocess.evaluation_pictures import write_side_by_side
from histotile.postprocess.heatmap import HeatmapRenderer, HeatmapResult, write_heatmap
from histotile.postprocess.maps import ProbabilityGrid, probability_map
from histotile.postprocess.predict import TilePredictor, predict_slide
from histotile.postprocess.predictions import (
    SlidePredictions,
    concat_predictions,
    load_predictions,
)
from histotile.postprocess.render import BlendStyle

__all__ = [
    "DEFAULT_THRESHOLDS",
    "BlendStyle",
    "Decision",
    "EvaluationSummary",
    "HeatmapRenderer",
    "HeatmapResult",
    "ProbabilityGrid",
    "SlideEvaluation",
    "SlidePredictions",
    "SweepResult",
    "TilePredictor",
    "concat_predictions",
    "evaluate_slide",
    "evaluate_slides",
    "evaluate_tiles",
    "load_predictions",
    "predict_slide",
    "probability_map",
    "slide_decision",
    "threshold_sweep",
    "write_heatmap",
    "write_side_by_side",
]
