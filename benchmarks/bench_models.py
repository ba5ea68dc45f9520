"""Models: training and inference throughput through histotile's pipeline against the bare
network, per model and backend, at 128 px on this machine's CPU; and the LeNet backend
comparison (PyTorch vs MXNet: time per epoch and accuracy), as the framework studies did.

* training, pipeline: :func:`histotile.models.train` (tiles read from synthetic slides
  by DataLoader workers, cached, augmented, normalised): the final model's fastest
  epoch over the development tiles (training steps only).
* training, bare: forward + backward + optimiser step of the same network, same batch,
  same optimiser, on a ready-made float tensor.
* inference, pipeline: :class:`histotile.models.Predictor` on uint8 RGB tiles (the
  model loaded back from the directory ``train`` wrote).
* inference, bare: the same loaded network's forward pass (and softmax) on a ready-made
  normalised tensor, in rounds alternating with the Predictor's.

Target (issue 4): the pipeline within 20 % of the bare forward pass (ratio >= 0.8).
Run: ``.venv/bin/python benchmarks/bench_models.py [--quick] [--out benchmarks/results/NAME.json]``
(``--out`` keeps the figures with the date, machine and load: ``_results.py``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from _common import WORK, cpu_count  # noqa: E402
from _results import started, write  # noqa: E402

from histotile.models import Predictor, TrainSettings, train  # noqa: E402
from histotile.models.synthetic import write_stain_slides  # noqa: E402

TILE = 128
ROUNDS = 3  # rates are the best of this many rounds (the machine may be shared)
MODELS = [("lenet", "torch"), ("lenet", "mxnet"), ("squeezenet", "torch"),
          ("resnet18", "torch"), ("alexnet", "torch"), ("shufflenet_v2", "torch")]


def dataset(patients: int, grid: tuple[int, int], seed: int) -> Path:
    folder = WORK / f"bench_models_stain_{TILE}px_{patients}x{grid[0]}x{grid[1]}_s{seed}"
    manifest = folder / "tiles.csv"
    if not manifest.exists():
        write_stain_slides(folder, patients=patients, grid=grid, tile_size=TILE, seed=seed)
    return manifest


def bare_torch(name: str, batch: int, train_steps: int, infer_batches: int,
               settings: TrainSettings) -> tuple[float, float]:
    import torch

    from histotile.models import create, get_spec

    spec = get_spec(name)
    fmt = torch.channels_last if spec.channels_last else torch.contiguous_format
    model = create(name, 2, TILE).to(memory_format=fmt)
    s = settings.resolved()
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum,
                          weight_decay=s.weight_decay)
    x = torch.randn(batch, 3, TILE, TILE).contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (batch,))
    model.train()

    def train_steps_rate() -> float:
        started = time.perf_counter()
        for _ in range(train_steps):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return train_steps * batch / (time.perf_counter() - started)

    train_steps_rate()  # warm-up
    train_rate = max(train_steps_rate() for _ in range(ROUNDS))
    model.eval()
    xi = torch.randn(64, 3, TILE, TILE).contiguous(memory_format=fmt)

    def infer_rate() -> float:
        started = time.perf_counter()
        for _ in range(infer_batches):
            torch.softmax(model(xi), dim=1)
        return infer_batches * 64 / (time.perf_counter() - started)

    with torch.inference_mode():
        model(xi)
        return train_rate, max(infer_rate() for _ in range(ROUNDS))


def bare_mxnet(batch: int, train_steps: int, infer_batches: int,
               settings: TrainSettings) -> tuple[float, float]:
    from histotile.models.mxnet_backend import build_lenet, mx

    mxnet = mx()
    from mxnet import autograd, gluon

    s = settings.resolved()
    net = build_lenet(2, TILE)
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": s.lr, "momentum": s.momentum})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    x = mxnet.nd.random.normal(shape=(batch, 3, TILE, TILE))
    y = mxnet.nd.array(np.arange(batch) % 2)
    def train_steps_rate() -> float:
        started = time.perf_counter()
        for _ in range(train_steps):
            with autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(batch)
            loss.wait_to_read()
        mxnet.nd.waitall()
        return train_steps * batch / (time.perf_counter() - started)

    train_steps_rate()  # warm-up
    train_rate = max(train_steps_rate() for _ in range(ROUNDS))
    xi = mxnet.nd.random.normal(shape=(64, 3, TILE, TILE))
    net(xi).wait_to_read()

    def infer_rate() -> float:
        started = time.perf_counter()
        for _ in range(infer_batches):
            mxnet.nd.softmax(net(xi), axis=1).asnumpy()
        return infer_batches * 64 / (time.perf_counter() - started)

    return train_rate, max(infer_rate() for _ in range(ROUNDS))


def pipeline(manifest: Path, out: Path, settings: TrainSettings,
             infer_tiles: np.ndarray) -> tuple[float, list[float], list[float], dict]:
    """Train through :func:`train`; then alternate rounds of bare forward passes of the
    loaded network (on a ready-made normalised batch) and :meth:`Predictor.predict` on
    uint8 tiles, so both see the same machine load. Returns the training rate and the
    per-round inference rates (bare, Predictor)."""
    import pandas as pd

    result = train(manifest, out, settings, overwrite=True)
    history = pd.read_csv(out / "history.csv")
    # The fastest epoch's rate (the first one includes warm-up), as the bare figure is
    # the fastest of its rounds: both sides get the same treatment on a shared machine.
    train_rate = result.test["n_train"] / float(history["seconds"].min())
    predictor = Predictor(out, batch_size=64)
    network = predictor.network  # the loaded network, for the bare forward pass
    batch = predictor.to_input(infer_tiles[:64])
    batches = infer_tiles.shape[0] // 64
    if predictor.backend == "mxnet":
        from histotile.models.mxnet_backend import mx

        def bare_round() -> float:
            started = time.perf_counter()
            for _ in range(batches):
                mx().nd.softmax(network(batch), axis=1).asnumpy()
            return batches * 64 / (time.perf_counter() - started)
    else:
        import torch

        def bare_round() -> float:
            with torch.inference_mode():
                started = time.perf_counter()
                for _ in range(batches):
                    torch.softmax(network(batch), dim=1).numpy()
                return batches * 64 / (time.perf_counter() - started)

    predictor.predict(infer_tiles[:64])
    bare_round()
    bare, piped = [], []
    for _ in range(ROUNDS + 2):
        bare.append(bare_round())
        started = time.perf_counter()
        predictor.predict(infer_tiles)
        piped.append(infer_tiles.shape[0] / (time.perf_counter() - started))
    return train_rate, bare, piped, result.test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tiles (a smoke run)")
    parser.add_argument("--only", choices=("throughput", "backends"),
                        help="run one of the two tables")
    parser.add_argument("--out", type=Path, help="keep the figures in this results file "
                        "(JSON; never replaces one)")
    args = parser.parse_args()
    start = started(args.out)
    scale = 0.5 if args.quick else 1.0
    batch = 32
    manifest = dataset(patients=5, grid=(8, 8), seed=11)  # 320 tiles of 128 px
    rng = np.random.default_rng(0)
    from histotile.models.synthetic import stain_tiles

    infer_tiles = stain_tiles(["eosin", "haematoxylin"] * int(256 * scale), TILE, rng)
    work = WORK / "bench_models_out"
    work.mkdir(parents=True, exist_ok=True)
    print(f"# Models at {TILE} px on {cpu_count()} CPU cores (batch {batch} training, "
          f"64 inference)\n")
    rows = []
    for name, backend in MODELS if args.only != "backends" else []:
        settings = TrainSettings(model=name, backend=backend, epochs=ROUNDS, folds=0,
                                 patience=0,
                                 test_fraction=0.2, batch_size=batch, seed=0, workers=1,
                                 augment=True)
        steps = max(3, int(6 * scale))
        if backend == "mxnet":
            bare_train, _ = bare_mxnet(batch, steps, 1, settings)
        else:
            bare_train, _ = bare_torch(name, batch, steps, 1, settings)
        pipe_train, bare, piped, _ = pipeline(manifest, work / f"{name}_{backend}",
                                              settings, infer_tiles)
        ratio = float(np.median(np.array(piped) / np.array(bare)))
        rows.append((name, backend, pipe_train, bare_train, float(np.median(piped)),
                     float(np.median(bare)), ratio))
        print(f"  measured {name}/{backend}", file=sys.stderr, flush=True)
    if rows:
        print_throughput(rows)
    backends = compare_backends(scale, work) if args.only != "throughput" else []
    shutil.rmtree(work, ignore_errors=True)
    write(args.out, "models", start, {
        "tile": TILE, "quick": args.quick, "batch": batch, "rounds": ROUNDS,
        "baseline": "the bare network (forward, backward and step for training; forward "
                    "and softmax for inference) on a ready-made tensor",
        "rows": [{"model": name, "backend": backend, "train_pipeline_per_s": pt,
                  "train_bare_per_s": bt, "train_ratio": pt / bt,
                  "inference_pipeline_per_s": pi, "inference_bare_per_s": bi,
                  "inference_ratio": ratio}
                 for name, backend, pt, bt, pi, bi, ratio in rows],
        "target_ratio": 0.8, "backends": backends})


def print_throughput(rows: list[tuple]) -> None:
    print("| model | backend | train tiles/s (pipeline) | train tiles/s (bare) | ratio | "
          "inference tiles/s (Predictor) | inference tiles/s (bare) | ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, backend, pt, bt, pi, bi, ratio in rows:
        print(f"| {name} | {backend} | {pt:.0f} | {bt:.0f} | {pt / bt:.2f} | {pi:.0f} | "
              f"{bi:.0f} | {ratio:.2f} |")
    print("\nInference: median over alternating rounds (bare, Predictor) on the same loaded "
          "network; the ratio is the median of the per-round ratios.")


def compare_backends(scale: float, work: Path) -> list[dict]:
    # Backend comparison: the study's LeNet (SGD momentum 0.8, batch 32) is slow to
    # start on small data, so both backends use the same Adam settings here.
    compare = dataset(patients=8, grid=(8, 6), seed=12)  # 384 tiles
    epochs = max(2, int(12 * scale))
    print(f"\n## LeNet, PyTorch vs MXNet ({epochs} epochs, Adam lr 1e-3, batch 32, "
          "grouped 80/20 test split, same tiles and seed)\n")
    print("| backend | s/epoch | train tiles/s | test accuracy | test ROC AUC | test loss |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for backend in ("torch", "mxnet"):
        settings = TrainSettings(model="lenet", backend=backend, epochs=epochs, folds=0,
                                 test_fraction=0.2, batch_size=32, optimizer="adam",
                                 lr=1e-3, seed=0, workers=1)
        result = train(compare, work / f"compare_{backend}", settings, overwrite=True)
        per_epoch = result.test["train_seconds"] / epochs
        print(f"| {backend} | {per_epoch:.2f} | {result.test['train_tiles_per_s']:.0f} | "
              f"{result.test['accuracy']:.3f} | {result.test['roc_auc']:.3f} | "
              f"{result.test['loss']:.3f} |")
        rows.append({"backend": backend, "epochs": epochs, "seconds_per_epoch": per_epoch,
                     "train_per_s": result.test["train_tiles_per_s"],
                     "accuracy": result.test["accuracy"], "roc_auc": result.test["roc_auc"],
                     "loss": result.test["loss"]})
    return rows


if __name__ == "__main__":
    main()
