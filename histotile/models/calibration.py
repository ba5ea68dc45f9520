"""Probability calibration by temperature scaling (Guo et al. 2017): one number T,
fitted on the cross-validation's out-of-fold predictions by minimising their negative
log-likelihood, divides the log-probabilities before the softmax. T > 1 softens
over-confident probabilities, T < 1 sharpens them; the order of the tiles (so the AUC)
does not change, but probabilities and therefore a threshold on them do.

Written here rather than taken from a library: it is a few lines on top of SciPy's
bounded scalar minimiser, and the network's logits are not kept (log-probabilities are
logits up to a per-tile constant, which the softmax ignores).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_EPS = 1e-7
BOUNDS = (0.05, 20.0)  # temperatures searched


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(proba) / temperature)`` row by row, float32 (N, C)."""
    proba = np.asarray(proba, np.float64)
    if proba.size == 0 or temperature == 1.0:
        return proba.astype(np.float32)
    logits = np.log(np.clip(proba, _EPS, 1.0)) / float(temperature)
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=1, keepdims=True)).astype(np.float32)


def _nll(y_true: np.ndarray, proba: np.ndarray) -> float:
    picked = proba[np.arange(y_true.size), y_true]
    return float(-np.log(np.clip(picked, _EPS, 1.0)).mean())


def fit_temperature(y_true: np.ndarray, proba: np.ndarray, *, fitted_on: str
                    ) -> dict[str, Any]:
    """The card's ``calibration``: the temperature minimising the negative
    log-likelihood of ``proba`` (N, C) for the true class indices ``y_true``, with the
    likelihood before and after."""
    from scipy.optimize import minimize_scalar

    y_true = np.asarray(y_true, np.int64)
    proba = np.asarray(proba, np.float64)
    low, high = np.log(BOUNDS[0]), np.log(BOUNDS[1])
    found = minimize_scalar(lambda log_t: _nll(y_true, apply_temperature(proba,
                                                                         np.exp(log_t))),
                            bounds=(low, high), method="bounded",
                            options={"xatol": 1e-4})
    temperature = float(np.exp(found.x))
    return {"method": "temperature", "temperature": temperature, "fitted_on": fitted_on,
            "tiles": int(y_true.size), "nll_before": _nll(y_true, proba),
            "nll_after": _nll(y_true, apply_temperature(proba, temperature))}


def card_temperature(card: dict[str, Any] | None) -> float | None:
    """The card's fitted temperature, None when it records no calibration."""
    calibration = (card or {}).get("calibration")
    if isinstance(calibration, dict) and calibration.get("method") == "temperature":
        value = calibration.get("temperature")
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    return None
