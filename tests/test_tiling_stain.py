"""Stain normalisation: Reinhard matches the reference's LAB statistics, Macenko
recovers known stain vectors and agrees with torchstain, failures fall back, and the
normaliser in a model card is applied at prediction."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from tiling_fixtures import SAMPLE, read_all

from histotile.errors import ConfigError
from histotile.tiling.stain import (
    MacenkoNormaliser,
    ReinhardNormaliser,
    StainError,
    create_normaliser,
    mosaic,
    normalise_tiles,
    normaliser_from_dict,
)


@pytest.fixture(scope="module")
def pixels():
    return read_all(SAMPLE)


def unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def angle(a, b) -> float:
    return float(np.degrees(np.arccos(np.clip(unit(a) @ unit(b), -1, 1))))


def test_reinhard_output_has_the_reference_lab_mean_and_std(pixels):
    source = pixels[900:1156, 1000:1256]
    # The reference: other tissue, restained (darker, bluer); colours a tile can reach
    # without leaving the RGB gamut, where Reinhard's output would be clipped.
    reference = np.clip(pixels[1400:1656, 700:956] * np.array([0.8, 0.85, 0.95]),
                        0, 255).astype(np.uint8)
    normaliser = ReinhardNormaliser().fit(reference)
    lab_ref = ReinhardNormaliser.lab(reference).reshape(-1, 3)
    out = ReinhardNormaliser.lab(normaliser.transform(source)).reshape(-1, 3)
    before = ReinhardNormaliser.lab(source).reshape(-1, 3)
    assert np.abs(before.mean(0) - lab_ref.mean(0)).max() > 3  # there was a difference
    np.testing.assert_allclose(out.mean(0), lab_ref.mean(0), atol=1.0)
    # The spread matches within 15 %: the most saturated colours leave the RGB gamut
    # and are clipped, which narrows it a little (Reinhard works in LAB, tiles are RGB).
    np.testing.assert_allclose(out.std(0), lab_ref.std(0), rtol=0.15)
    assert (np.abs(out.std(0) - lab_ref.std(0))
            < np.abs(before.std(0) - lab_ref.std(0))).all()


def synthesised(h, e, size=256, seed=0):
    """A tile made by Beer-Lambert from stain vectors ``h`` and ``e``: pure H, pure E
    and mixed pixels with gamma-distributed amounts (Io = 240)."""
    rng = np.random.default_rng(seed)
    ch = rng.gamma(3.0, 0.35, (size, size)) * (rng.random((size, size)) < 0.6)
    ce = rng.gamma(3.0, 0.30, (size, size)) * (rng.random((size, size)) < 0.7)
    od = ch[..., None] * unit(h) + ce[..., None] * unit(e)
    return np.clip(240 * np.exp(-od) + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("h, e", [((0.65, 0.70, 0.29), (0.07, 0.99, 0.11)),
                                  ((0.55, 0.76, 0.34), (0.20, 0.85, 0.49))])
def test_macenko_recovers_the_stain_vectors_of_a_synthesised_tile(h, e):
    normaliser = MacenkoNormaliser().fit(synthesised(h, e))
    assert angle(normaliser.stain_matrix[:, 0], h) < 3.0
    assert angle(normaliser.stain_matrix[:, 1], e) < 3.0


def test_macenko_transform_maps_one_stain_onto_another():
    target_h, target_e = (0.55, 0.76, 0.34), (0.20, 0.85, 0.49)
    normaliser = MacenkoNormaliser().fit(synthesised(target_h, target_e, seed=1))
    out = normaliser.transform(synthesised((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), seed=2))
    refit = MacenkoNormaliser().fit(out)
    assert angle(refit.stain_matrix[:, 0], target_h) < 3.0
    assert angle(refit.stain_matrix[:, 1], target_e) < 3.0


def test_macenko_agrees_with_torchstain(pixels):
    torchstain = pytest.importorskip("torchstain.numpy.normalizers")  # extra "stain"
    NumpyMacenkoNormalizer = torchstain.NumpyMacenkoNormalizer

    reference, tile = pixels[1600:1856, 800:1056], pixels[1000:1128, 1000:1128]
    ours = MacenkoNormaliser().fit(reference)
    theirs = NumpyMacenkoNormalizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.fit(reference)
        expected = theirs.normalize(tile, stains=False)[0]
    assert angle(ours.stain_matrix[:, 0], theirs.HERef[:, 0]) < 1.5
    assert angle(ours.stain_matrix[:, 1], theirs.HERef[:, 1]) < 1.5
    difference = ours.transform(tile).astype(int) - expected
    # Half a grey level: torchstain truncates to uint8 where histotile rounds.
    assert np.abs(difference).mean() < 0.6 and np.abs(difference).max() <= 2


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_failures_fall_back_to_the_untouched_tile_and_are_counted(pixels, method):
    normaliser = create_normaliser(method).fit(pixels[1600:1856, 800:1056])
    tissue = pixels[1000:1128, 1000:1128]
    blank = np.full_like(tissue, 241)
    with pytest.raises(StainError):
        normaliser.transform(blank)
    out, failures = normalise_tiles(normaliser, np.stack([tissue, blank, tissue]))
    assert failures == 1
    assert (out[1] == blank).all()
    # Batches are normalised at once: the same pixels as tile by tile.
    assert (out[0] == normaliser.transform(tissue)).all()
    assert np.abs(out[0].astype(int) - tissue).mean() > 5


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_state_round_trips_through_json(pixels, method):
    tiles = np.stack([pixels[1000:1064, 1000:1064], pixels[1600:1664, 800:864]])
    normaliser = create_normaliser(method).fit(mosaic(tiles))
    state = json.loads(json.dumps({**normaliser.to_dict(), "reference": "x.png"}))
    again = normaliser_from_dict(state)
    tile = pixels[1200:1264, 1200:1264]
    assert (again.transform(tile) == normaliser.transform(tile)).all()
    assert normaliser_from_dict(None) is None
    with pytest.raises(ConfigError, match="vahadane"):
        normaliser_from_dict({"method": "vahadane"})
    with pytest.raises(ConfigError, match="vahadane"):
        create_normaliser("vahadane")


def test_the_model_card_normaliser_is_applied_at_prediction(tmp_path):
    from histotile.models import Predictor, TrainSettings, train
    from histotile.models.synthetic import write_stain_slides

    manifest = write_stain_slides(tmp_path / "slides", patients=4, grid=(4, 4),
                                  tile_size=64, seed=3)
    sidecar = manifest.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    # A deliberately strong normaliser: every tile gets the LAB statistics of this one.
    state = ReinhardNormaliser(means=[55.0, 35.0, -25.0], stds=[20.0, 12.0, 10.0]).to_dict()
    sidecar.write_text(json.dumps({**info, "stain": state}))
    train(manifest, tmp_path / "model", TrainSettings(
        model="lenet", epochs=1, folds=0, test_fraction=0.0, batch_size=16, workers=0,
        seed=0))
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["stain_normaliser"]["method"] == "reinhard"
    predictor = Predictor(tmp_path / "model", device="cpu")
    tiles = np.stack([read_all(tmp_path / "slides" / "patient00_slide0.tif")[:64, x:x + 64]
                      for x in (0, 64, 128, 192)])
    with_normaliser = predictor.predict(tiles)
    normaliser, predictor.normaliser = predictor.normaliser, None
    assert normaliser is not None
    bare = predictor.predict(tiles)
    prenormalised = predictor.predict(normalise_tiles(normaliser, tiles)[0])
    np.testing.assert_allclose(with_normaliser, prenormalised, atol=1e-6)
    assert np.abs(with_normaliser - bare).max() > 1e-4


def test_tile_command_records_the_normaliser_beside_the_manifest(tmp_path, pixels):
    import cv2
    from click.testing import CliRunner

    from histotile.workflows.cli.main import cli

    reference = tmp_path / "reference.png"
    cv2.imwrite(str(reference), pixels[1600:1856, 800:1056, ::-1])
    for extra, expected in (([], "a sample of the tiled tissue tiles"),
                            (["--stain-reference", str(reference)], str(reference))):
        out = tmp_path / f"tiles{len(extra)}"
        result = CliRunner().invoke(cli, ["tile", str(SAMPLE), "--out", str(out),
                                          "--tile-size", "128", "--stain-normalise",
                                          "macenko", *extra], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        state = json.loads((out / "manifest.json").read_text())["stain"]
        assert state["reference"] == expected
        normaliser = normaliser_from_dict(state)
        assert isinstance(normaliser, MacenkoNormaliser)
        assert angle(normaliser.stain_matrix[:, 0], normaliser.stain_matrix[:, 1]) > 10
    fitted = MacenkoNormaliser().fit(pixels[1600:1856, 800:1056])
    np.testing.assert_allclose(normaliser.stain_matrix, fitted.stain_matrix, atol=0.02)


@pytest.mark.parametrize("method", [ReinhardNormaliser, MacenkoNormaliser])
def test_batch_equals_tile_by_tile(pixels, method):
    normaliser = method().fit(pixels[1600:1856, 800:1056])
    tiles = np.stack([pixels[y:y + 64, x:x + 64] for y in (900, 1000, 1100)
                      for x in (900, 1000)] + [np.full((64, 64, 3), 240, np.uint8)])
    out, failures = normalise_tiles(normaliser, tiles)
    assert failures == 1 and (out[-1] == tiles[-1]).all()
    # Each tile's estimate is its own: no tile of the batch changes another's pixels.
    for tile, got in zip(tiles[:-1], out[:-1]):
        assert (normaliser.transform(tile) == got).all()
    reversed_out, _ = normalise_tiles(normaliser, tiles[::-1])
    assert (reversed_out[::-1] == out).all()


def test_macenko_batch_in_chunks_equals_one_pass(pixels, monkeypatch):
    # A big batch goes CHUNK_PIXELS at a time (cache-sized passes): the same pixels and
    # the same count of untouched tiles as one pass over the whole batch.
    from histotile.tiling import macenko

    normaliser = MacenkoNormaliser().fit(pixels[1600:1856, 800:1056])
    tiles = np.stack([pixels[y:y + 64, x:x + 64] for y in (900, 1000, 1100)
                      for x in (900, 1000)])
    tiles = np.insert(tiles, 3, np.full((64, 64, 3), 240, np.uint8), axis=0)
    whole, whole_untouched = normaliser._transform_chunk(tiles)
    monkeypatch.setattr(macenko, "CHUNK_PIXELS", 2 * 64 * 64)  # 4 chunks, the last of 1
    chunked, untouched = normaliser.transform_batch(tiles)
    assert untouched == whole_untouched == 1
    assert (chunked == whole).all() and (chunked[3] == tiles[3]).all()


def test_extreme_percentiles_match_numpy_on_the_masked_values():
    # The batched Macenko's angle percentiles come from a partition of each row's head
    # and tail; they must equal numpy's linear percentile of the kept values exactly.
    from histotile.tiling.macenko import _extreme_percentiles

    rng = np.random.default_rng(0)
    for trial in range(100):
        # Short rows, and 64-px tiles' rows (the selection by groups), some with every
        # value kept and some all sparse (the depth follows the fullest row).
        size = int(rng.integers(2, 400)) if trial % 2 else 4096
        values = rng.normal(size=(4, size)).astype(np.float32)
        mask = rng.random((4, size)) < rng.uniform(0.01, 1.0)
        mask[0] = trial % 3 != 0 or mask[0]
        q = float(rng.choice([0.5, 1.0, 5.0, 30.0]))
        penalty = np.where(mask, 0.0, np.inf).astype(np.float32)
        low, high = _extreme_percentiles(values, penalty, mask.sum(axis=1), q)
        for row in range(4):
            if mask[row].any():
                expected = np.percentile(values[row][mask[row]].astype(np.float64),
                                         [q, 100 - q])
                np.testing.assert_allclose([low[row], high[row]], expected, atol=1e-6)
