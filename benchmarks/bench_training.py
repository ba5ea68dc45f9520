"""Training beyond one process: tiles per second of the same cross-validation on the same
tiles, three ways, in one run.

* ``1 process x N threads``: :func:`histotile.models.train`, folds one after another,
  torch using every core (N = the cores): the baseline.
* ``1 process x 1 thread``: the same on one thread. N times its rate is the most that N
  independent processes can reach, so it bounds the two parallel rows from above.
* ``N processes x 1 thread (DDP)``: every fold trained data-parallel by N
  ``torch.distributed`` ranks (gloo on CPU, NCCL on CUDA), started with torchrun.
* ``N Dask workers, folds in parallel``: a local Dask cluster of N one-thread workers,
  one fold per task (:class:`histotile.workflows.training.cluster.DaskFolds`).

Tiles per second = training tiles (epochs run x training rows, summed over the folds) /
wall seconds from the call of ``train`` (the process group's start included) to the
model folder written; interpreter and torch start-up are not counted (the Dask workers
import torch before the clock starts; the cluster's start-up is reported apart).
Cross-validation only (``final_model=False``): the final model is one model and
cannot be spread over folds.

Run: ``.venv/bin/python benchmarks/bench_training.py [--quick] [--out result.json]``.
A tool, not a test: run it on a quiet machine; it prints the load average it saw.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from _common import WORK, cpu_count  # noqa: E402

from histotile.models import TrainSettings, train  # noqa: E402
from histotile.models.synthetic import write_stain_slides  # noqa: E402


def dataset(patients: int, grid: tuple[int, int], tile: int) -> Path:
    folder = WORK / f"bench_training_stain_{tile}px_{patients}x{grid[0]}x{grid[1]}"
    manifest = folder / "tiles.csv"
    if not manifest.exists():
        write_stain_slides(folder, patients=patients, grid=grid, tile_size=tile, seed=11)
    return manifest


def settings(args: argparse.Namespace, threads: int) -> dict:
    return {"model": args.model, "epochs": args.epochs, "folds": args.folds,
            "batch_size": 32, "patience": 0, "seed": 0, "threads": threads,
            "final_model": False}


def _rate(result) -> tuple[int, float]:
    tiles = sum(int(m["n_train"]) * int(m["epochs_run"]) for m in result.folds)
    return tiles, tiles / result.seconds


def single(manifest: Path, args: argparse.Namespace, out: Path, threads: int) -> dict:
    started = time.perf_counter()
    result = train(manifest, out / f"single-{threads}", TrainSettings(**settings(args, threads)))
    result.seconds = time.perf_counter() - started
    tiles, rate = _rate(result)
    return {"tiles": tiles, "seconds": result.seconds, "tiles_per_s": rate}


def dask_folds(manifest: Path, args: argparse.Namespace, out: Path) -> dict:
    from histotile.workflows.tasks.execution import Execution
    from histotile.workflows.training.cluster import DaskFolds

    started = time.perf_counter()
    with DaskFolds(Execution(workers=args.processes)) as runner:
        # The workers import torch and torchvision once, as the other two configurations'
        # processes do before their clocks start (and a long-lived cluster has).
        runner.client.run(_warm)
        warm = time.perf_counter()
        result = train(manifest, out / "dask", TrainSettings(**settings(args, 1)),
                       fold_runner=runner)
    result.seconds = time.perf_counter() - warm
    tiles, rate = _rate(result)
    return {"tiles": tiles, "seconds": result.seconds, "tiles_per_s": rate,
            "cluster_start_seconds": warm - started}


def _warm() -> None:
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import histotile.models.folds  # noqa: F401


def ddp(manifest: Path, args: argparse.Namespace, out: Path) -> dict:
    report = out / "ddp.json"
    env = {**os.environ, "HISTOTILE_THREADS": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(args.processes), __file__, "--as-rank", str(manifest),
               str(out / "ddp"), json.dumps(settings(args, 1)), str(report)]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads(report.read_text())


def as_rank(manifest: str, out: str, values: str, report: str) -> None:
    """One torchrun rank of the DDP measurement; rank 0 writes the figures."""
    from histotile.models import distributed

    _warm()
    started = time.perf_counter()
    info = distributed.RankInfo.from_environment()
    parallel = distributed.start(info, None)  # counted: the group is part of the run
    if info.rank:
        out = tempfile.mkdtemp(prefix="bench-rank") + "/model"
    try:
        result = train(manifest, out, TrainSettings(**json.loads(values)),
                       fold_runner=distributed.DistributedFolds(parallel))
    finally:
        distributed.stop()
    result.seconds = time.perf_counter() - started
    if info.rank == 0:
        tiles, rate = _rate(result)
        Path(report).write_text(json.dumps({"tiles": tiles, "seconds": result.seconds,
                                            "tiles_per_s": rate, "device":
                                            str(parallel.device)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="6 patients x 48 tiles of 64 px, 2 folds, 2 epochs")
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs")
    parser.add_argument("--out", type=Path, default=None, help="write the figures (JSON)")
    parser.add_argument("--as-rank", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_rank:
        as_rank(*args.as_rank)
        return
    if args.quick:
        epochs, args.folds, manifest = 2, 2, dataset(6, (8, 6), 64)
    else:
        epochs, args.folds, manifest = 3, 4, dataset(12, (12, 10), 128)
    args.epochs = args.epochs or epochs
    _warm()  # torch and torchvision imported before any clock starts
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-training-") as folder:
        out = Path(folder)
        rows = {f"1 process x {args.processes} threads": single(manifest, args, out,
                                                                 args.processes),
                "1 process x 1 thread": single(manifest, args, out, 1),
                f"{args.processes} processes x 1 thread (DDP)": ddp(manifest, args, out),
                f"{args.processes} Dask workers, folds in parallel":
                    dask_folds(manifest, args, out)}
    base = next(iter(rows.values()))["tiles_per_s"]
    # What N independent one-thread processes could reach at best (perfect scaling, no
    # shared memory bandwidth): N x the one-thread rate. Folds in parallel can beat the
    # N-thread process only by as much as torch's own threads fall short of N x.
    ceiling = args.processes * rows["1 process x 1 thread"]["tiles_per_s"] / base
    print(f"{args.model}, {args.folds} folds x {args.epochs} epochs, {manifest.parent.name}; "
          f"{cpu_count()} cores; load average before {load_before[0]:.2f}, after "
          f"{os.getloadavg()[0]:.2f}\n")
    print("| configuration | training tiles | seconds | tiles/s | speed-up |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        row["speed_up"] = row["tiles_per_s"] / base
        print(f"| {name} | {row['tiles']:,} | {row['seconds']:.1f} | "
              f"{row['tiles_per_s']:.0f} | {row['speed_up']:.2f}x |")
    print(f"\nceiling for {args.processes} one-thread processes: {ceiling:.2f}x "
          f"({args.processes} x the one-thread rate)")
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "folds": args.folds,
                                        "epochs": args.epochs, "cores": cpu_count(),
                                        "load_before": load_before, "results": rows,
                                        "ceiling_speed_up": ceiling},
                                       indent=2))


if __name__ == "__main__":
    main()
