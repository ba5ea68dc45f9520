"""``histotile watch`` against ``histotile run`` on the same slides, in one process and one
run: slides per second of each, and their ratio (the issue asks watch to be within 10 %).

Both run the slides in-process, one at a time, with one model (a freshly initialised
LeNet: the network's weights do not change the work). A warm-up run on one slide loads
the model and the libraries first; then run and watch take turns ``--rounds`` times, each
into a fresh results folder, and the best time of each counts. Watch's time is from the
start of its watch until the last slide's record (settle 0: the slides are complete).

    python benchmarks/bench_watch.py [--slides 6] [--rounds 2] [--json results/x.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import cpu_count

HERE = Path(__file__).resolve().parent


def make_model(directory: Path) -> Path:
    import torch

    from histotile.models import create, get_spec
    from histotile.models.card import build_card, write_card
    from histotile.models.torch_backend import save

    torch.manual_seed(0)
    directory.mkdir(parents=True)
    weights = save(create("lenet", 2, 64), directory)
    write_card(build_card(architecture="lenet", backend="torch", description="bench",
                          classes=["eosin", "haematoxylin"], tile_size=64,
                          weights_file=weights, normalisation=get_spec("lenet").normalisation(),
                          geometry={"tile_mpp": 0.5, "tile_downsample": 1.0},
                          settings={"positive_class": "haematoxylin"}, data={}, metrics={},
                          final_epochs=None), directory)
    return directory


def time_run(slides: list[Path], model: Path, out: Path) -> float:
    from histotile.workflows.tasks.batch import run_batch

    started = time.perf_counter()
    records = run_batch(slides, model, out, show_progress=False)
    seconds = time.perf_counter() - started
    assert all(r.status == "ok" for r in records), records
    return seconds


def time_watch(slides: list[Path], model: Path, out: Path, inbox: Path) -> float:
    from histotile.workflows.watch import WatchSettings, watch_folder

    inbox.mkdir()
    for slide in slides:
        os.link(slide, inbox / slide.name)  # the same files, no copy to wait for
    stop, finished = threading.Event(), []

    def on_event(event) -> None:
        if event.kind == "finished":
            assert event.record.status == "ok", event.record
            finished.append(time.perf_counter())
            if len(finished) == len(slides):
                stop.set()

    settings = WatchSettings(inbox=inbox, out_dir=out, model_dir=model, settle=0,
                             interval=0.05)
    started = time.perf_counter()
    watch_folder(settings, on_event, stop)
    return finished[-1] - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from histotile.models.synthetic import write_stain_slides

    work = Path(tempfile.mkdtemp(prefix="bench-watch-", dir=HERE / ".."))
    try:
        write_stain_slides(work / "slides", patients=args.slides, grid=(20, 16), tile_size=64,
                           seed=1)
        slides = sorted((work / "slides").glob("*.tif"))
        (work / "slides" / "tiles.json").unlink(missing_ok=True)
        model = make_model(work / "model")
        time_run(slides[:1], model, work / "warm-up")
        times: dict[str, list[float]] = {"run": [], "watch": []}
        for round_ in range(args.rounds):
            times["run"].append(time_run(slides, model, work / f"run-{round_}"))
            times["watch"].append(time_watch(slides, model, work / f"watch-{round_}",
                                             work / f"inbox-{round_}"))
            print(f"round {round_ + 1}: run {times['run'][-1]:.2f} s, "
                  f"watch {times['watch'][-1]:.2f} s")
    finally:
        shutil.rmtree(work)
    best = {k: min(v) for k, v in times.items()}
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
              "cores": cpu_count(), "load_average_before": list(os.getloadavg()),
              "slides": args.slides, "slide_px": [20 * 64, 16 * 64], "rounds": times,
              "slides_per_s": {k: args.slides / v for k, v in best.items()},
              "watch_over_run_throughput": best["run"] / best["watch"]}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
