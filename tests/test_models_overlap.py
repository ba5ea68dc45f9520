"""Prediction with stain normalisation overlapped with the network: batch k+1 is
normalised in a background thread while the network runs batch k. The probabilities and
the failure count must be exactly those of normalising every tile first; errors reach the
caller and no thread outlives the call."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from tiling_fixtures import read_all

from histotile.models.overlap import overlapped
from histotile.tiling.stain import MacenkoNormaliser, StainError, mosaic, normalise_tiles


def prepare_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("histotile-prepare")]


def test_overlapped_keeps_the_order_and_prepares_off_the_calling_thread():
    caller = threading.get_ident()
    where = []

    def prepare(item):
        where.append(threading.get_ident())
        return item * 10

    assert overlapped(list(range(7)), prepare, lambda x: x + 1) == [
        1, 11, 21, 31, 41, 51, 61]
    assert caller not in where  # all prepared in the worker
    assert overlapped([3], prepare, lambda x: x) == [30]
    assert overlapped([], prepare, lambda x: x) == []
    assert not prepare_threads()


@pytest.mark.parametrize("stage", ["prepare", "run"])
def test_overlapped_passes_errors_on_and_leaves_no_thread(stage):
    def prepare(item):
        if stage == "prepare" and item == 3:
            raise StainError("bad batch 3")
        return item

    def run(item):
        if stage == "run" and item == 2:
            raise StainError("bad batch 2")
        return item

    with pytest.raises(StainError, match="bad batch"):
        overlapped(list(range(6)), prepare, run)
    assert not prepare_threads()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LeNet trained one epoch on synthetic stain slides, and tiles to predict: tissue
    tiles of another patient plus blank ones (Macenko fails on those)."""
    from histotile.models import Predictor, TrainSettings, train
    from histotile.models.synthetic import write_stain_slides

    root = tmp_path_factory.mktemp("overlap")
    manifest = write_stain_slides(root / "slides", patients=2, grid=(4, 4), tile_size=64,
                                  seed=3)
    train(manifest, root / "model", TrainSettings(
        model="lenet", epochs=1, folds=0, test_fraction=0.0, batch_size=16, workers=0,
        seed=0))
    pixels = read_all(root / "slides" / "patient01_slide0.tif")
    tissue = [pixels[y:y + 64, x:x + 64] for y in range(0, 256, 64) for x in range(0, 192, 32)]
    blank = np.full((64, 64, 3), 241, np.uint8)
    tiles = np.stack(tissue[:9] + [blank] + tissue[9:18] + [blank, blank] + tissue[18:23])
    normaliser = MacenkoNormaliser().fit(mosaic(np.stack(tissue[:8])))
    return Predictor(root / "model", device="cpu"), normaliser, tiles


def test_overlapped_prediction_equals_normalising_everything_first(trained):
    predictor, normaliser, tiles = trained
    assert len(tiles) == 26
    expected_tiles, expected_failures = normalise_tiles(normaliser, tiles)
    assert expected_failures == 3
    predictor.normaliser, predictor.batch_size = None, 4  # 7 batches, the last of 2
    expected = predictor.predict(expected_tiles)
    bare = predictor.predict(tiles)
    predictor.normaliser, predictor.stain_failures = normaliser, 0
    got = predictor.predict(tiles)
    assert got.dtype == expected.dtype and got.shape == (26, len(predictor.classes))
    assert np.array_equal(got, expected)  # bit for bit
    assert predictor.stain_failures == expected_failures
    assert np.abs(got - bare).max() > 1e-4  # the normaliser did change the input
    predictor.batch_size = 64  # one batch: no thread
    assert np.array_equal(predictor.predict(tiles), expected)
    assert predictor.stain_failures == 2 * expected_failures
    assert not prepare_threads()


class BrokenNormaliser:
    """A normaliser that fails on its second batch with an error no fallback handles."""

    method = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def transform_batch(self, tiles):
        self.calls += 1
        if self.calls == 2:
            raise ValueError("normaliser broke on batch 2")
        return tiles, 1


def test_an_error_in_normalisation_reaches_the_caller(trained):
    predictor, _, tiles = trained
    predictor.normaliser, predictor.batch_size, predictor.stain_failures = (
        BrokenNormaliser(), 4, 0)
    with pytest.raises(ValueError, match="broke on batch 2"):
        predictor.predict(tiles)
    assert predictor.stain_failures == 0  # as when every tile is normalised first
    assert not prepare_threads()
