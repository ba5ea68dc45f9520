"""The operating point: the positive-class probability from which a tile is called
positive, chosen on validation data, recorded in the model card, and used by every stage.

``train`` pools the cross-validation's out-of-fold predictions and picks the threshold
by a rule (:class:`OperatingRule`, ``--operating-point``):

- ``balanced`` (the default): the threshold that maximises balanced accuracy
  ((sensitivity + specificity) / 2).
- ``youden``: the threshold that maximises Youden's J = sensitivity - (1 - specificity)
  = TPR - FPR. For a binary task J = 2 * balanced accuracy - 1, so it picks the same
  threshold as ``balanced``; both names are accepted because both are in use.
- ``sensitivity=0.9``: the highest threshold whose sensitivity is at least 0.9 (the best
  specificity that keeps that sensitivity).
- ``specificity=0.9``: the lowest threshold whose specificity is at least 0.9.
- a number (``0.5``, ``0.3``): that threshold, fixed.

A tile is positive when its positive-class probability is ``>= threshold``. A chosen
threshold lies halfway between the validation score it admits last and the next lower
one (the same calls on the validation tiles, less bias towards the tiles seen).

Every stage asks :func:`tile_threshold` for the threshold to use: a flag's value, else the
card's, else :data:`DEFAULT_TILE_THRESHOLD`, with where it came from (``source``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from histotile.errors import ConfigError

#: The tile threshold when nothing else is known (a model card that records none).
DEFAULT_TILE_THRESHOLD = 0.5
SOURCE_CARD = "card"
SOURCE_FLAG = "flag"
SOURCE_DEFAULT = f"default {DEFAULT_TILE_THRESHOLD:g} (the card records none)"
RULES = ("balanced", "youden", "sensitivity", "specificity", "fixed")
CURVE_POINTS = 100  # points of the recorded curve (downsampled)


@dataclass(frozen=True)
class OperatingRule:
    """How the threshold is chosen: ``kind`` one of :data:`RULES`, ``value`` the target
    rate (sensitivity, specificity) or the fixed threshold, None for the maxima."""

    kind: str = "balanced"
    value: float | None = None

    @classmethod
    def parse(cls, text: str | float | None) -> OperatingRule:
        """``balanced``, ``youden``, ``sensitivity=0.9``, ``specificity=0.9`` or a number
        in [0, 1]; :class:`ConfigError` naming the setting otherwise."""
        if text is None:
            return cls()
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            return cls._fixed(float(text), str(text))
        raw = str(text).strip().lower()
        if raw in ("balanced", "youden"):
            return cls(raw)
        name, sep, number = raw.partition("=")
        if sep and name.strip() in ("sensitivity", "specificity"):
            value = _number(number, raw)
            if not 0 < value <= 1:
                raise _bad(raw, f"the target {name.strip()} must be in (0, 1]")
            return cls(name.strip(), value)
        return cls._fixed(_number(raw, raw), raw)

    @classmethod
    def _fixed(cls, value: float, raw: str) -> OperatingRule:
        if not 0 <= value <= 1:
            raise _bad(raw, "a fixed threshold must be in [0, 1]")
        return cls("fixed", value)

    @property
    def target(self) -> float:
        """The value of a rule that has one (fixed, sensitivity, specificity)."""
        if self.value is None:
            raise ValueError(f"the operating point rule {self.kind!r} has no value")
        return self.value

    def __str__(self) -> str:
        if self.kind in ("balanced", "youden"):
            return self.kind
        if self.kind == "fixed":
            return f"{self.value:g}"
        return f"{self.kind}={self.value:g}"


def _number(text: str, raw: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _bad(raw, "unknown rule") from None
    if not math.isfinite(value):
        raise _bad(raw, "not a finite number")
    return value


def _bad(raw: str, problem: str) -> ConfigError:
    return ConfigError(f"operating_point={raw!r}: {problem} (use balanced, youden, "
                       "sensitivity=0.9, specificity=0.9 or a threshold such as 0.5)")


@dataclass(frozen=True)
class RocPoints:
    """Every distinct threshold of a score, descending, with the sensitivity and
    specificity of calling ``score >= threshold`` positive."""

    thresholds: np.ndarray
    sensitivity: np.ndarray
    specificity: np.ndarray


def roc_points(is_positive: np.ndarray, score: np.ndarray) -> RocPoints:
    """The ROC points of ``score`` (scikit-learn's ``roc_curve``, every threshold kept)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(np.asarray(is_positive, bool),
                                     np.asarray(score, np.float64), drop_intermediate=False)
    keep = np.isfinite(thresholds)  # scikit-learn's first point: +inf, nothing positive
    return RocPoints(thresholds[keep], tpr[keep], 1.0 - fpr[keep])


def choose_threshold(is_positive: np.ndarray, score: np.ndarray,
                     rule: OperatingRule) -> float:
    """The threshold ``rule`` picks on these validation scores (see the module)."""
    if rule.kind == "fixed":
        return float(rule.target)
    points = roc_points(is_positive, score)
    t, sens, spec = points.thresholds, points.sensitivity, points.specificity
    if rule.kind in ("balanced", "youden"):
        criterion = sens + spec  # balanced accuracy * 2 = Youden's J + 1: one argmax
        index = int(np.flatnonzero(criterion >= criterion.max() - 1e-12)[0])
    elif rule.kind == "sensitivity":
        index = int(np.flatnonzero(sens >= rule.target - 1e-12)[0])  # highest threshold
    else:
        reached = np.flatnonzero(spec >= rule.target - 1e-12)
        index = int(reached[-1]) if reached.size else 0  # lowest threshold
    lower = t[index + 1] if index + 1 < t.size else 0.0
    return float((t[index] + lower) / 2.0)


def downsample_curve(points: RocPoints, count: int = CURVE_POINTS) -> dict[str, list[float]]:
    """About ``count`` evenly spaced points of the curve, the ends kept (for the card)."""
    size = points.thresholds.size
    index = np.unique(np.linspace(0, size - 1, min(count, size)).round().astype(int))
    return {"threshold": [round(float(v), 6) for v in points.thresholds[index]],
            "sensitivity": [round(float(v), 6) for v in points.sensitivity[index]],
            "specificity": [round(float(v), 6) for v in points.specificity[index]]}


def operating_point(is_positive: np.ndarray, score: np.ndarray, rule: OperatingRule, *,
                    positive_class: str, fitted_on: str) -> dict[str, Any]:
    """The card's ``operating_point``: the threshold ``rule`` picks on ``score`` (the
    positive class's probability) with its sensitivity, specificity and balanced
    accuracy there, and the curve it came from (about :data:`CURVE_POINTS` points)."""
    truth = np.asarray(is_positive, bool)
    score = np.asarray(score, np.float64)
    if truth.all() or not truth.any():
        raise ConfigError(f"operating_point={str(rule)!r}: the {fitted_on} hold only one "
                          "class, so no threshold can be chosen on them (use more groups "
                          "per fold, or a fixed threshold such as --operating-point 0.5)")
    threshold = choose_threshold(truth, score, rule)
    called = score >= threshold
    sensitivity = float(called[truth].mean())
    specificity = float((~called[~truth]).mean())
    return {"positive_class": positive_class, "threshold": threshold, "rule": str(rule),
            "fitted_on": fitted_on, "tiles": int(truth.size),
            "sensitivity": sensitivity, "specificity": specificity,
            "balanced_accuracy": (sensitivity + specificity) / 2.0,
            "curve": downsample_curve(roc_points(truth, score))}


@dataclass(frozen=True)
class TileThreshold:
    """The threshold a stage uses and where it came from: ``source`` is
    :data:`SOURCE_CARD`, :data:`SOURCE_FLAG` or a ``default 0.5 (...)`` sentence."""

    value: float
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source}


def card_threshold(card: dict[str, Any] | None, positive_class: str | None = None
                   ) -> TileThreshold:
    """The card's recorded threshold, else :data:`DEFAULT_TILE_THRESHOLD` with the reason
    (a card from before operating points; or ``positive_class``, a class other than the
    one the card's threshold is about)."""
    point = (card or {}).get("operating_point")
    if not isinstance(point, dict) or not isinstance(point.get("threshold"), (int, float)):
        return TileThreshold(DEFAULT_TILE_THRESHOLD, SOURCE_DEFAULT)
    about = point.get("positive_class")
    if positive_class is not None and about is not None and positive_class != about:
        return TileThreshold(DEFAULT_TILE_THRESHOLD,
                             f"default {DEFAULT_TILE_THRESHOLD:g} (the card's threshold is "
                             f"about {about!r}, not {positive_class!r})")
    return TileThreshold(float(point["threshold"]), SOURCE_CARD)


def tile_threshold(card: dict[str, Any] | None, flag: float | None = None,
                   positive_class: str | None = None) -> TileThreshold:
    """The tile threshold to use: ``flag`` when given, else :func:`card_threshold`."""
    if flag is not None:
        return TileThreshold(float(flag), SOURCE_FLAG)
    return card_threshold(card, positive_class)
