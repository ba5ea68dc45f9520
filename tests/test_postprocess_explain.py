"""Choosing the tiles to explain: the most positive, most negative, most uncertain, and
with the truth the worst false positives and negatives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from histotile.errors import ConfigError
from histotile.postprocess import SlidePredictions
from histotile.postprocess.explain import Explained, select_tiles


def predictions(p: np.ndarray) -> SlidePredictions:
    table = pd.DataFrame({"x": np.arange(p.size) * 64, "y": 0, "extent": 64,
                          "prob_normal": 1 - p, "prob_tumour": p})
    return SlidePredictions("s", "", (64 * p.size, 64), 0.5, ("normal", "tumour"), table)


def test_groups_follow_the_probabilities():
    p = np.array([0.1, 0.95, 0.5, 0.7, 0.02, 0.45, 0.99, 0.3])
    groups = {g.title: list(g.rows) for g in select_tiles(predictions(p), "tumour", top=2)}
    assert groups["most confidently tumour"] == [6, 1]
    assert groups["most confidently not tumour"] == [4, 0]
    assert groups["most uncertain (p closest to 0.5)"] == [2, 5]
    assert len(groups) == 3


def test_mistakes_need_the_truth_and_are_ranked_worst_first():
    p = np.array([0.1, 0.95, 0.5, 0.7, 0.02, 0.45, 0.99, 0.3])
    truth = np.array([1, 0, 0, 0, 1, 1, 1, 0])  # 1 = tumour
    groups = {g.title: list(g.rows)
              for g in select_tiles(predictions(p), "tumour", top=2, truth=truth)}
    assert groups["worst false positives"] == [1, 3]  # p 0.95, 0.7 on normal tissue
    assert groups["worst false negatives"] == [4, 0]  # p 0.02, 0.1 on tumour
    perfect = select_tiles(predictions(p), "tumour", top=2, truth=(p >= 0.5).astype(int))
    assert all("false" not in g.title for g in perfect)
    with pytest.raises(ConfigError, match="top"):
        select_tiles(predictions(p), "tumour", top=0)


def test_explained_still_answers_to_its_old_attribute_class_name():
    tiles = np.zeros((1, 4, 4, 3), np.uint8)
    explained = Explained(np.array([0]), tiles, np.zeros((1, 4, 4), np.float32), tiles,
                          np.array([[0.2, 0.8]], np.float32), "tumour", ("normal", "tumour"),
                          np.zeros((1, 3), np.int64))
    assert explained.positive_class == "tumour"
    with pytest.warns(DeprecationWarning, match="Explained: 'class_name' is deprecated, "
                      "use 'positive_class'"):
        assert explained.class_name == "tumour"
