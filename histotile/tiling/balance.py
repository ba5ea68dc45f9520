"""Class balancing of a manifest by seeded undersampling."""

from __future__ import annotations

import math

import numpy as np

from histotile.errors import DatasetError


def balance(manifest, ratios: dict[str, float], seed: int = 0, *, column: str = "label"):
    """Undersample ``manifest`` so that its classes occur in exactly the given ratios.

    Args:
        manifest: a manifest DataFrame.
        ratios: class -> relative weight, e.g. ``{"tumour": 1, "normal": 1}`` for 50-50.
            Classes not named are dropped. The largest total that the rarest class
            (relative to its weight) allows is kept, so the counts are proportional to
            the weights exactly when the weights are integers and as close as whole tiles
            allow otherwise.
        seed: seed of the random choice (same seed, same rows).
        column: the label column.

    Returns:
        The balanced manifest, rows in their original order, index reset.
    """
    if not ratios:
        raise DatasetError("balance: give at least one class ratio, e.g. {'tumour': 1, "
                           "'normal': 1}")
    bad = {k: v for k, v in ratios.items() if not (v > 0 and math.isfinite(v))}
    if bad:
        raise DatasetError(f"balance: ratios must be positive numbers, got {bad}")
    counts = manifest[column].value_counts()
    missing = [k for k in ratios if counts.get(k, 0) == 0]
    if missing:
        raise DatasetError(f"balance: no tiles labelled {missing} (labels present: "
                           f"{sorted(map(str, counts.index))}); fix the ratios or the labels")
    weights = {k: float(v) for k, v in ratios.items()}
    # Units: the number of whole "ratio units" every class can provide.
    unit = min(counts[k] / w for k, w in weights.items())
    targets = {k: int(math.floor(unit * w + 1e-9)) for k, w in weights.items()}
    rng = np.random.default_rng(seed)
    labels = manifest[column].to_numpy()
    chosen = []
    for name in sorted(weights):
        rows = np.flatnonzero(labels == name)
        chosen.append(rng.choice(rows, size=targets[name], replace=False))
    keep = np.sort(np.concatenate(chosen))
    return manifest.iloc[keep].reset_index(drop=True)
