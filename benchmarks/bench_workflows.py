"""``histotile run`` over 4 synthetic slides on a local Dask cluster with 1 worker and with
2 workers (one thread each), in the same run; per-slide results must be identical.

Target (issue 6): speed-up of at least 1.6x with 2 workers.
Run: ``.venv/bin/python benchmarks/bench_workflows.py [--out benchmarks/results/NAME.json]``
(about 3 minutes on 2 cores; ``--out`` keeps the figures with the date, machine and load:
``_results.py``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import WORK, cpu_count
from _results import started, write

from histotile.workflows.api import run_batch, tile_batch
from histotile.workflows.slide_options import TileOptions
from histotile.workflows.tasks.execution import Execution
from histotile.wsi.synthetic import Mark, write_overlay, write_synthetic_slide

SLIDES = 4
SIZE = (8192, 6144)  # 50 MP each, about 30 % tissue


def prepare() -> tuple[Path, Path]:
    folder = WORK / "workflow_slides"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(SLIDES):
        path = folder / f"wf{index}.tif"
        if not path.exists():
            write_synthetic_slide(path, *SIZE, seed=100 + index, tile_size=512)
            write_overlay(path, folder / f"wf{index}.overlay.tif",
                          [Mark((0, 255, 0), rect=(0, 0, SIZE[0] // 2, SIZE[1]))],
                          downsample=8)
    model = WORK / "workflow_model"
    if not (model / "model_card.json").exists():
        from histotile.models import TrainSettings, train

        tiles = WORK / "workflow_tiles"
        shutil.rmtree(tiles, ignore_errors=True)
        tile_batch(folder, tiles, TileOptions.from_dict(
            {"classes": "normal,tumour=#00ff00", "balance": {"normal": 1, "tumour": 1},
             "overwrite": True}))
        train(tiles / "manifest.csv", model,
              TrainSettings(model="lenet", epochs=2, folds=0, test_fraction=0.0,
                            optimizer="adam", lr=1e-3, max_tiles=2000), overwrite=True)
    return folder, model


def timed_run(folder: Path, model: Path, workers: int) -> tuple[float, Path]:
    out = WORK / f"workflow_run_{workers}w"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    records = run_batch(folder, model, out,
                        execution=Execution(workers=workers, threads_per_worker=1))
    seconds = time.perf_counter() - started
    failed = [r for r in records if r.status != "ok"]
    if failed:
        raise SystemExit(f"run with {workers} worker(s) failed: {failed[0].error}")
    return seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the figures in this results file "
                        "(JSON; never replaces one)")
    args = parser.parse_args()
    start = started(args.out)
    folder, model = prepare()
    one, out_one = timed_run(folder, model, 1)
    two, out_two = timed_run(folder, model, 2)
    identical = True
    tiles = 0
    for index in range(SLIDES):
        a = pd.read_csv(out_one / f"wf{index}" / "predictions.csv")
        b = pd.read_csv(out_two / f"wf{index}" / "predictions.csv")
        identical &= a.equals(b)
        tiles += len(a)
    decisions_one = pd.read_csv(out_one / "run-report.csv")["decision"].tolist()
    decisions_two = pd.read_csv(out_two / "run-report.csv")["decision"].tolist()
    identical &= decisions_one == decisions_two
    print(f"{SLIDES} slides of {SIZE[0]}x{SIZE[1]} px, {tiles} tissue tiles, LeNet, "
          f"predict + heatmap + decision + evaluation per slide; {cpu_count()} cores\n")
    print("| local cluster | wall time (s) | speed-up vs 1 worker | target |")
    print("| --- | --- | --- | --- |")
    print(f"| 1 worker x 1 thread (baseline) | {one:.1f} | 1.00 | |")
    print(f"| 2 workers x 1 thread | {two:.1f} | {one / two:.2f} | >= 1.6 |")
    print(f"\nper-slide predictions and decisions identical across the two: {identical}")
    write(args.out, "workflows", start, {
        "slides": SLIDES, "slide_px": list(SIZE), "tiles": tiles, "model": "lenet",
        "identical": bool(identical), "target_speed_up": 1.6,
        "rows": [{"workers": 1, "threads_per_worker": 1, "seconds": one, "speed_up": 1.0,
                  "baseline": True},
                 {"workers": 2, "threads_per_worker": 1, "seconds": two,
                  "speed_up": one / two, "baseline": False}]})


if __name__ == "__main__":
    main()
