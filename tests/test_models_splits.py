"""Grouped stratified splits: no group straddles two parts, classes are in every part,
the seed reproduces the folds, and impossible requests fail clearly."""

import numpy as np
import pytest

from histotile.errors import DatasetError
from histotile.models.splits import check_disjoint, make_splits


def _dataset(patients: int = 12, seed: int = 0):
    """Tiles of patients; each patient has both classes in a patient-specific ratio."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for p in range(patients):
        n = int(rng.integers(20, 60))
        share = rng.uniform(0.2, 0.8)
        labels.append((rng.random(n) < share).astype(int))
        groups += [f"patient{p}"] * n
    return np.concatenate(labels), np.array(groups)


def test_no_group_on_both_sides_and_every_class_everywhere():
    labels, groups = _dataset()
    splits = make_splits(labels, groups, ["a", "b"], folds=4, test_fraction=0.2, seed=3)
    check_disjoint(splits, groups)
    assert not set(groups[splits.test]) & set(groups[splits.development])
    all_val = np.concatenate([val for _, val in splits.folds])
    # Every development row is validated exactly once across the folds.
    assert sorted(all_val.tolist()) == sorted(splits.development.tolist())
    for train, val in splits.folds:
        assert not set(groups[train]) & set(groups[val])
        assert set(labels[train]) == {0, 1} and set(labels[val]) == {0, 1}
        assert set(train.tolist()) | set(val.tolist()) == set(splits.development.tolist())
    # Test split near the requested fraction (whole groups, so not exact).
    assert 0.08 < splits.test.size / labels.size < 0.35


def test_seed_reproduces_folds_and_another_seed_changes_them():
    labels, groups = _dataset()
    a = make_splits(labels, groups, ["a", "b"], folds=3, test_fraction=0.2, seed=11)
    b = make_splits(labels, groups, ["a", "b"], folds=3, test_fraction=0.2, seed=11)
    c = make_splits(labels, groups, ["a", "b"], folds=3, test_fraction=0.2, seed=12)
    np.testing.assert_array_equal(a.test, b.test)
    for (ta, va), (tb, vb) in zip(a.folds, b.folds):
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(va, vb)
    assert (not np.array_equal(a.test, c.test)
            or any(not np.array_equal(va, vc) for (_, va), (_, vc) in zip(a.folds, c.folds)))


def test_random_tile_split_would_leak_but_grouped_does_not():
    """The studies' leak: a tile-level split puts one patient on both sides."""
    labels, groups = _dataset(patients=6)
    rng = np.random.default_rng(0)
    order = rng.permutation(labels.size)
    naive_val = order[: labels.size // 4]
    naive_train = order[labels.size // 4:]
    assert set(groups[naive_val]) & set(groups[naive_train])  # the leak exists
    splits = make_splits(labels, groups, ["a", "b"], folds=4, test_fraction=0, seed=0)
    for train, val in splits.folds:
        assert not set(groups[train]) & set(groups[val])


def test_no_test_split_and_no_folds():
    labels, groups = _dataset(patients=5)
    splits = make_splits(labels, groups, ["a", "b"], folds=0, test_fraction=0.25, seed=0)
    assert splits.folds == []
    assert splits.test.size + splits.development.size == labels.size
    splits = make_splits(labels, groups, ["a", "b"], folds=2, test_fraction=0, seed=0)
    assert splits.test.size == 0 and len(splits.folds) == 2


def test_too_few_groups_for_the_folds():
    labels, groups = _dataset(patients=3)
    with pytest.raises(DatasetError, match=r"3 distinct 'group' value.*lower folds"):
        make_splits(labels, groups, ["a", "b"], folds=4, test_fraction=0.2)


def test_a_class_held_by_too_few_groups():
    labels, groups = _dataset(patients=10)
    labels[:] = 0
    labels[groups == "patient0"] = 1  # class 'b' only in one patient
    with pytest.raises(DatasetError, match=r"class 'b' occurs in 1 'group' group"):
        make_splits(labels, groups, ["a", "b"], folds=4, test_fraction=0.2)
