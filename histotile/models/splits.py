"""Grouped, stratified splits: a held-out test split and k cross-validation folds in
which no group (patient or slide) ever appears on both sides.

The studies behind this stage split tiles at random, so tiles of one patient sat in
training and validation at once and the accuracy was optimistic; here the unit of
splitting is the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from histotile.errors import DatasetError


@dataclass(frozen=True)
class Splits:
    """Row indices (into the tile table) of each part.

    Attributes:
        test: held-out test rows (empty when ``test_fraction`` is 0).
        development: every row that is not test (the final model trains on these).
        folds: ``(train, validation)`` row indices per cross-validation fold.
    """

    test: np.ndarray
    development: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]


def make_splits(labels: np.ndarray, groups: np.ndarray, classes: Sequence[str], *,
                folds: int = 4, test_fraction: float = 0.2, seed: int = 0,
                source: str = "the dataset", group_column: str = "group") -> Splits:
    """Split rows by group: a test part of about ``test_fraction`` of the rows, then
    ``folds`` stratified group folds of the rest (default 60/20/20 train/val/test).

    Args:
        labels: class index per row.
        groups: group id per row (any hashable values).
        classes: class names by index (for messages).
        folds: number of folds (0: no cross-validation).
        test_fraction: fraction held out for the test split (0: none).
        seed: the same labels, groups and seed always give the same splits.
        source: the data's name for messages (a manifest path, a folder).
        group_column: the grouping column's name for messages.

    Raises:
        DatasetError: too few groups for the folds, or a split that would lack a class.
    """
    labels = np.asarray(labels, dtype=np.int64)
    _, group_ids = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    _check_group_counts(labels, group_ids, classes, folds, test_fraction, source, group_column)
    num_classes = len(classes)
    rng = np.random.default_rng(seed)
    rows = np.arange(labels.size)

    test = np.zeros(0, np.int64)
    development = rows
    if test_fraction > 0:
        # A few seeded attempts: the first whose test and remaining parts hold every class.
        for _ in range(20):
            part = assign_groups(labels, group_ids, [1.0 - test_fraction, test_fraction],
                                 num_classes, rng)
            if (_has_all(labels[part == 1], num_classes)
                    and _has_all(labels[part == 0], num_classes)):
                break
        else:
            missing = _missing(labels[part == 1], classes) or _missing(labels[part == 0],
                                                                        classes)
            raise DatasetError(
                f"{source}: no grouped test split of {test_fraction:.0%} holds every class "
                f"(e.g. class {missing[0]!r} would be missing): add groups ('{group_column}' "
                "values) for the rare classes, or set test_fraction=0")
        development, test = rows[part == 0], rows[part == 1]

    fold_list: list[tuple[np.ndarray, np.ndarray]] = []
    if folds:
        dev_labels, dev_groups = labels[development], group_ids[development]
        fold_of = assign_groups(dev_labels, dev_groups, [1.0 / folds] * folds, num_classes,
                                rng)
        for k in range(folds):
            val, train = fold_of == k, fold_of != k
            for part_rows, name in ((train, "training"), (val, "validation")):
                missing = _missing(dev_labels[part_rows], classes)
                if missing:
                    raise DatasetError(
                        f"{source}: the {name} part of fold {k + 1} of {folds} would lack "
                        f"class {missing[0]!r} (too few '{group_column}' groups hold it): "
                        "lower folds, add groups of that class, or set test_fraction lower")
            fold_list.append((development[train], development[val]))
    return Splits(test=test, development=development, folds=fold_list)


def assign_groups(labels: np.ndarray, group_ids: np.ndarray, weights: Sequence[float],
                  num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Assign whole groups to parts whose sizes follow ``weights``, keeping each part's
    class proportions close to the whole's; returns the part of every row.

    Greedy, largest groups first (order randomised by the seed among groups of similar
    size, so different seeds give different splits): each group goes to the part where
    it most reduces the squared deviation of the class counts from their targets.
    """
    n_groups = int(group_ids.max()) + 1
    counts = np.zeros((n_groups, num_classes), np.float64)
    np.add.at(counts, (group_ids, labels), 1.0)
    totals = np.maximum(counts.sum(axis=0), 1.0)
    shares = np.asarray(weights, np.float64) / np.sum(weights)
    targets = shares[:, None] * totals[None, :]  # (parts, classes)
    filled = np.zeros_like(targets)
    sizes = counts.sum(axis=1)
    order = np.argsort(-sizes * rng.uniform(0.5, 1.5, n_groups), kind="stable")
    part_of_group = np.empty(n_groups, np.int64)
    for g in order:
        before = ((filled - targets) ** 2 / totals).sum(axis=1)
        after = ((filled + counts[g] - targets) ** 2 / totals).sum(axis=1)
        gain = after - before + rng.uniform(0.0, 1e-9, len(weights))  # random tie-break
        best = int(np.argmin(gain))
        part_of_group[g] = best
        filled[best] += counts[g]
    return part_of_group[group_ids]


def _has_all(labels: np.ndarray, num_classes: int) -> bool:
    return np.unique(labels).size == num_classes


def _missing(labels: np.ndarray, classes: Sequence[str]) -> list[str]:
    present = set(np.unique(labels).tolist())
    return [name for k, name in enumerate(classes) if k not in present]


def _check_group_counts(labels: np.ndarray, group_ids: np.ndarray, classes: Sequence[str],
                        folds: int, test_fraction: float, source: str,
                        group_column: str) -> None:
    """Fail early, with the numbers, when a class is held by too few groups."""
    needed = max(folds, 1) + (1 if test_fraction > 0 else 0)
    n_groups = int(group_ids.max()) + 1 if group_ids.size else 0
    if n_groups < needed:
        raise DatasetError(
            f"{source}: {n_groups} distinct '{group_column}' value(s), but {folds} folds "
            f"{'plus a test split ' if test_fraction > 0 else ''}need at least {needed} "
            "groups so that no group sits on both sides: add slides/patients, lower folds, "
            "or set test_fraction=0")
    for k, name in enumerate(classes):
        holding = np.unique(group_ids[labels == k]).size
        if holding < needed:
            raise DatasetError(
                f"{source}: class {name!r} occurs in {holding} '{group_column}' group(s), "
                f"but {folds} folds{' plus a test split' if test_fraction > 0 else ''} need "
                f"it in at least {needed} groups so that every part holds it: add groups "
                "of that class, lower folds, or set test_fraction=0")


def check_disjoint(splits: Splits, groups: np.ndarray) -> None:
    """Assert that no group appears on both sides of any split (a guard, also used by
    the tests)."""
    groups = np.asarray(groups).astype(str)
    test_groups = set(groups[splits.test])
    if test_groups & set(groups[splits.development]):
        raise AssertionError("a group appears in both the test and the development split")
    for k, (train, val) in enumerate(splits.folds):
        if set(groups[train]) & set(groups[val]):
            raise AssertionError(f"fold {k + 1}: a group appears in training and validation")
