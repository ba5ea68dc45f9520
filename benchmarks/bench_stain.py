"""Stain: accuracy of a tile classifier on a stain-shifted copy of its test tiles, with and
without stain normalisation and colour augmentation; and prediction throughput with a
normaliser against without.

* Data: synthetic stain slides (:func:`histotile.models.synthetic.write_stain_slides`,
  the class is the share of haematoxylin-stained nuclei), 64-px tiles; LeNet trained on
  one set of patients, tested on tiles of other patients (another seed).
* The shift (documented, deterministic): every test tile's colour deconvolution (Ruifrok
  HED) is changed to H x 1.6 + 0.1, E x 0.55, DAB unchanged, then recomposed: a
  darker, bluer haematoxylin and a paler eosin, as another lab's staining would give.
* Cases: ``plain`` (flips only), ``macenko`` / ``reinhard`` (normaliser fitted to a
  mosaic of training tiles, applied in training and by the Predictor), ``colour`` (flips
  plus HED/HSV/brightness-contrast jitter and blur), ``macenko+colour``.
* Throughput: Predictor.predict on the test tiles (one batch) and on a stream of 16
  copies (15 batches) with the fitted Macenko (Reinhard) normaliser against the same
  model without it (best of 30 or 6 interleaved rounds: a 60-tile call lasts 40 ms, and
  a shared machine jitters by a few ms), on this CPU; and whole-slide
  prediction (``predict_slide``) of an 8192 x 8192 px synthetic slide, with and without
  (best of 3 interleaved).

* At histotile's default tile size, 128 px: the bundled slide's tiles with some stained
  tissue (more than 5 % of their pixels), predicted by an untrained LeNet and ResNet18
  (the speed of trained ones) with Macenko and Reinhard fitted to a tissue region of the
  slide, against neither (best of 8 interleaved rounds); and the same networks'
  whole-slide prediction of the synthetic slide above, with each normaliser and without.

Run: ``.venv/bin/python benchmarks/bench_stain.py [--quick] [--out benchmarks/results/NAME.json]``
(``--out`` keeps the figures with the date, machine and load: ``_results.py``; each
throughput row with its baseline, the same network without a normaliser, and the ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from _common import WORK  # noqa: E402
from _results import started, write  # noqa: E402

from histotile.models import Predictor, TrainSettings, load_tiles, train  # noqa: E402
from histotile.models.augment import _HED_FROM_RGB, _RGB_FROM_HED  # noqa: E402
from histotile.models.synthetic import write_stain_slides  # noqa: E402
from histotile.tiling.stain import fit_to_manifest  # noqa: E402

SHIFT_SCALE = np.array([1.6, 0.55, 1.0], np.float32)
SHIFT_OFFSET = np.array([0.1, 0.0, 0.0], np.float32)
CASES = {"plain": (None, True), "macenko": ("macenko", True),
         "reinhard": ("reinhard", True), "colour": (None, "colour,blur"),
         "macenko+colour": ("macenko", "colour,blur")}


def shift_stain(tiles: np.ndarray) -> np.ndarray:
    """The documented HED perturbation of the module docstring."""
    od = -np.log(np.maximum(tiles.astype(np.float32), 1.0) / 255.0)
    hed = (od @ _HED_FROM_RGB) * SHIFT_SCALE + SHIFT_OFFSET
    return np.clip(255.0 * np.exp(-(np.maximum(hed, 0) @ _RGB_FROM_HED)) + 0.5,
                   0, 255).astype(np.uint8)


def test_tiles(directory: Path, patients: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    table = load_tiles(write_stain_slides(directory, patients=patients, grid=(6, 5),
                                          tile_size=64, seed=99))
    reader = table.reader()
    return np.stack([reader[i] for i in range(len(reader))]), table.targets, table.classes


def train_case(root: Path, manifest: Path, normaliser: str | None, augment, epochs: int,
               name: str) -> Path:
    sidecar = manifest.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    info.pop("stain", None)
    if normaliser:
        import pandas as pd

        frame = pd.read_csv(manifest)
        frame["path"] = [str(manifest.parent / p) for p in frame["path"]]
        info["stain"] = fit_to_manifest(normaliser, frame, max_tiles=64).to_dict()
    sidecar.write_text(json.dumps(info))
    out = root / f"model-{name}"
    shutil.rmtree(out, ignore_errors=True)
    train(manifest, out, TrainSettings(model="lenet", epochs=epochs, folds=0,
                                       test_fraction=0.0, batch_size=16, optimizer="adam",
                                       lr=1e-3, workers=0, seed=0, augment=augment))
    return out


def accuracy(predictor: Predictor, tiles: np.ndarray, targets: np.ndarray) -> float:
    return float((predictor.predict(tiles).argmax(1) == targets).mean())


def rates(predictor: Predictor, tiles: np.ndarray, rounds: int = 10) -> tuple[float, float]:
    """Best tiles/s with and without the predictor's normaliser, the rounds interleaved
    (with, without, with...) so that a shared machine's load hits both alike."""
    normaliser = predictor.normaliser
    best = {True: 0.0, False: 0.0}
    for _ in range(rounds):
        for on in (True, False):
            predictor.normaliser = normaliser if on else None
            started = time.perf_counter()
            predictor.predict(tiles)
            best[on] = max(best[on], len(tiles) / (time.perf_counter() - started))
    predictor.normaliser = normaliser
    return best[True], best[False]


SLIDE_SIDE = 8192


def slide_seconds(predictor: Predictor, rounds: int = 3) -> tuple[float, float, int]:
    """Best seconds of ``predict_slide`` on a synthetic H&E slide (``SLIDE_SIDE`` px
    square, 30 % tissue, cached under WORK) with and without the predictor's normaliser,
    interleaved; and the number of tiles predicted. What a lab sees: the slide read, its
    tiles judged and classified, reading overlapping the network."""
    from histotile.postprocess import predict_slide
    from histotile.workflows.benchmark.inputs import cached_input

    slide = cached_input(WORK, SLIDE_SIDE, SLIDE_SIDE, seed=3).slide
    normaliser = predictor.normaliser
    best = {True: float("inf"), False: float("inf")}
    for _ in range(rounds):
        for on in (True, False):
            predictor.normaliser = normaliser if on else None
            started = time.perf_counter()
            result = predict_slide(slide, predictor)
            best[on] = min(best[on], time.perf_counter() - started)
    predictor.normaliser = normaliser
    return best[True], best[False], len(result.tiles)


def default_size_rates() -> tuple[list[dict], list[dict]]:
    """The last bullet of the module docstring, printed as one line per network; its
    prediction rows and slide rows (as :func:`main` records them)."""
    from histotile import sample_slide
    from histotile.tiling.macenko import MacenkoNormaliser
    from histotile.tiling.stain import ReinhardNormaliser
    from histotile.workflows.benchmark.stages import untrained_model
    from histotile.wsi import open_slide

    with open_slide(sample_slide()) as slide:
        pixels = slide.read_region((0, 0), 0, slide.dimensions)
    side = 128
    h, w = (pixels.shape[0] // side) * side, (pixels.shape[1] // side) * side
    tiles = pixels[:h, :w].reshape(h // side, side, w // side, side, 3).swapaxes(1, 2)
    tiles = tiles.reshape(-1, side, side, 3)
    tiles = np.ascontiguousarray(tiles[(tiles.max(axis=3) <= 205).mean(axis=(1, 2)) > 0.05])
    reference = pixels[1600:1856, 800:1056]
    normalisers = {"macenko": MacenkoNormaliser().fit(reference),
                   "reinhard": ReinhardNormaliser().fit(reference)}
    predicted, slides = [], []
    for architecture in ("lenet", "resnet18"):
        predictor = Predictor(untrained_model(architecture, WORK / f"stain_{architecture}",
                                              "cpu"), device="cpu")
        best = dict.fromkeys([None, *normalisers], float("inf"))
        for _ in range(8):
            for name in best:
                predictor.normaliser = normalisers.get(name)
                started = time.perf_counter()
                predictor.predict(tiles)
                best[name] = min(best[name], time.perf_counter() - started)
        print(f"prediction ({architecture}, {side} px, CPU, {len(tiles)} tiles of the bundled "
              f"slide): {len(tiles) / best[None]:,.0f} tiles/s without normalisation; "
              + ", ".join(f"{name} {best[None] / best[name]:.2f}x" for name in normalisers))
        predicted += [_rate_row(architecture, side, f"{len(tiles)} tiles of the bundled slide",
                                name, len(tiles) / best[name], len(tiles) / best[None])
                      for name in normalisers]
        for name, normaliser in normalisers.items():
            predictor.normaliser = normaliser
            with_s, without_s, count = slide_seconds(predictor)
            print(f"slide prediction ({architecture}, {side} px, CPU, {count:,} tissue tiles "
                  f"of a {SLIDE_SIDE:,} px synthetic slide): {without_s:.2f} s without "
                  f"normalisation, {with_s:.2f} s with {name} ({without_s / with_s:.2f}x)")
            slides.append(_slide_row(architecture, side, name, count, with_s, without_s))
    return predicted, slides


def _rate_row(network: str, tile: int, tiles: str, normaliser: str, with_rate: float,
              without_rate: float) -> dict:
    """A prediction rate with a normaliser against the same network without (tiles/s)."""
    return {"network": network, "tile": tile, "tiles": tiles, "normaliser": normaliser,
            "with_per_s": with_rate, "without_per_s": without_rate,
            "ratio": with_rate / without_rate}


def _slide_row(network: str, tile: int, normaliser: str, count: int, with_s: float,
               without_s: float) -> dict:
    """A whole-slide prediction with a normaliser against without (seconds; the ratio is
    the speed's, without / with)."""
    return {"network": network, "tile": tile, "normaliser": normaliser, "tiles": count,
            "slide_px": [SLIDE_SIDE, SLIDE_SIDE], "with_s": with_s, "without_s": without_s,
            "ratio": without_s / with_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer patients and epochs")
    parser.add_argument("--out", type=Path, help="keep the figures in this results file "
                        "(JSON; never replaces one)")
    args = parser.parse_args()
    start = started(args.out)
    patients, epochs = (4, 4) if args.quick else (8, 8)
    root = WORK / "stain"
    shutil.rmtree(root, ignore_errors=True)
    manifest = write_stain_slides(root / "train", patients=patients, grid=(6, 5),
                                  tile_size=64, seed=5)
    tiles, targets, _classes = test_tiles(root / "test", max(2, patients // 2))
    shifted = shift_stain(tiles)
    print(f"{len(targets)} test tiles; shift changes them by "
          f"{np.abs(shifted.astype(int) - tiles).mean():.1f} grey levels on average")
    print("| case | accuracy, test tiles | accuracy, stain-shifted copy | stain fallbacks |")
    print("|---|---|---|---|")
    models, cases, predicted, slides = {}, [], [], []
    for name, (normaliser, augment) in CASES.items():
        models[name] = train_case(root, manifest, normaliser, augment, epochs, name)
        predictor = Predictor(models[name], device="cpu")
        same = accuracy(predictor, tiles, targets)
        moved = accuracy(predictor, shifted, targets)
        print(f"| {name} | {same:.3f} | {moved:.3f} | {predictor.stain_failures} |")
        cases.append({"case": name, "accuracy": same, "accuracy_shifted": moved,
                      "stain_fallbacks": predictor.stain_failures})
    print()
    # The test tiles in one call (one batch: nothing to overlap the normalisation with),
    # and a stream of 16 copies (15 batches: each normalised while the network runs
    # the one before, as on a slide).
    stream = np.concatenate([tiles, shifted] * 8)
    for name in ("macenko", "reinhard"):
        predictor = Predictor(models[name], device="cpu")
        for what, batch in (("", tiles), (f", {len(stream)} tiles", stream)):
            with_rate, without_rate = rates(predictor, batch, 30 if not what else 6)
            print(f"prediction (LeNet, 64 px, CPU{what}): {without_rate:,.0f} tiles/s "
                  f"without normalisation, {with_rate:,.0f} tiles/s with {name} "
                  f"({with_rate / without_rate:.2f}x)")
            label = ("the test tiles, one call" if not what else
                     "the test tiles and their shifted copies, 8 times over")
            predicted.append(_rate_row("lenet", 64, f"{len(batch)} tiles: {label}", name,
                                       with_rate, without_rate))
        with_s, without_s, count = slide_seconds(predictor)
        print(f"slide prediction (LeNet, 64 px, CPU, {count:,} tissue tiles of a "
              f"{SLIDE_SIDE:,} px synthetic slide): {without_s:.2f} s without "
              f"normalisation, {with_s:.2f} s with {name} ({without_s / with_s:.2f}x)")
        slides.append(_slide_row("lenet", 64, name, count, with_s, without_s))
    at_default = default_size_rates()
    write(args.out, "stain", start, {
        "quick": args.quick, "patients": patients, "epochs": epochs,
        "test_tiles": len(targets), "shift": {"scale": SHIFT_SCALE.tolist(),
                                              "offset": SHIFT_OFFSET.tolist()},
        "cases": cases, "prediction": predicted + at_default[0],
        "slides": slides + at_default[1]})


if __name__ == "__main__":
    main()
