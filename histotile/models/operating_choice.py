"""What training decides on the cross-validation's pooled out-of-fold predictions once
the folds are done: the optional temperature (:mod:`histotile.models.calibration`), then
the operating point (:mod:`histotile.models.operating_point`), and the test split
scored at that threshold as well as at 0.5. Nothing here sees the test split before the
choices are made."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from histotile.models.calibration import apply_temperature, fit_temperature
from histotile.models.metrics import classification_metrics
from histotile.models.operating_point import (
    DEFAULT_TILE_THRESHOLD,
    OperatingRule,
    operating_point,
)

log = logging.getLogger("histotile.models")
Scored = tuple[np.ndarray, np.ndarray]  # (true class indices, probabilities (N, C))


def choose_on_validation(rule_text: str, calibrate: bool, classes: Sequence[str],
                         positive_class: str | None, out_of_fold: Sequence[Scored],
                         test: Scored | None) -> dict[str, Any]:
    """The card entries ``operating_point`` and ``calibration`` (None when not made) and
    ``test_at_operating_point`` (the test split's metrics at the chosen threshold, None
    without a test split or a threshold).

    ``out_of_fold``: each fold's validation truth and probabilities (empty with
    ``folds=0``: then only a fixed threshold can be recorded)."""
    rule = OperatingRule.parse(rule_text)
    classes = list(classes)
    pooled = None
    if out_of_fold:
        pooled = (np.concatenate([t for t, _ in out_of_fold]),
                  np.concatenate([p for _, p in out_of_fold]).astype(np.float64))
    fitted_on = (f"pooled out-of-fold predictions ({pooled[0].size} tiles)"
                 if pooled is not None else "")
    calibration = None
    if calibrate and pooled is not None:
        calibration = fit_temperature(*pooled, fitted_on=fitted_on)
        pooled = (pooled[0], apply_temperature(pooled[1], calibration["temperature"]))
        log.info("calibration: temperature %.3f (negative log-likelihood %.4f -> %.4f)",
                 calibration["temperature"], calibration["nll_before"],
                 calibration["nll_after"])
    elif calibrate:
        log.warning("calibration skipped: folds=0 leaves no out-of-fold predictions")
    point = _point(rule, classes, positive_class, pooled, fitted_on)
    at_threshold = None
    if point is not None and test is not None and test[0].size:
        proba = test[1] if calibration is None else apply_temperature(
            test[1], calibration["temperature"])
        at_threshold = classification_metrics(test[0], proba, classes, positive_class,
                                              threshold=point["threshold"])
        at_threshold["threshold"] = point["threshold"]
    return {"operating_point": point, "calibration": calibration,
            "test_at_operating_point": at_threshold}


def _point(rule: OperatingRule, classes: list[str], positive_class: str | None,
           pooled: Scored | None, fitted_on: str) -> dict[str, Any] | None:
    if len(classes) != 2 or positive_class is None:
        log.info("operating point: none (%d classes: each tile takes its most probable "
                 "class)", len(classes))
        return None
    if pooled is None:
        if rule.kind != "fixed":
            log.warning("operating point %s needs out-of-fold predictions (folds >= 2); "
                        "the card records none, so %g is used", rule, DEFAULT_TILE_THRESHOLD)
            return None
        return {"positive_class": positive_class, "threshold": float(rule.target),
                "rule": str(rule), "fitted_on": None, "curve": None}
    index = classes.index(positive_class)
    point = operating_point(pooled[0] == index, pooled[1][:, index], rule,
                            positive_class=positive_class, fitted_on=fitted_on)
    log.info("operating point (%s): %s probability >= %.4f; on the out-of-fold tiles "
             "sensitivity (%s) %.4f, specificity (%s) %.4f, balanced accuracy %.4f",
             point["rule"], positive_class, point["threshold"], positive_class,
             point["sensitivity"], positive_class, point["specificity"],
             point["balanced_accuracy"])
    return point
