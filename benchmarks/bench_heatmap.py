"""Slide prediction and heatmap slides on the synthetic 5-gigapixel slide.

Phases, each in its own process so each peak memory is its own:

* ``read`` (the baseline): OpenSlide reads the heatmap's output level (level 0, the full
  5 GP) in full-width bands of 512 rows, the way the heatmap renderer reads it.
* ``predict``: :func:`histotile.postprocess.predict_slide` with a torch LeNet (128-px
  tiles at 0.5 um/px, CPU) over every tissue tile; reading overlaps inference. A freshly
  initialised LeNet: its speed is a trained one's; its outputs are not meaningful. With
  ``--predict-tiles N`` only the first N grid tiles are classified and the time for all
  tissue tiles is extrapolated (and labelled so).
* ``heatmap``: :func:`histotile.postprocess.write_heatmap` at full resolution (pyramidal
  JPEG TIFF, every level) plus the 2048-px PNG preview, from the ``predict`` phase's
  table. The threshold is the median predicted probability, so about half the tissue
  tiles are coloured (an untrained model's probabilities sit in a narrow band).

Targets (issue 5): heatmap within 2x of the read baseline, peak memory under 2 GiB.
Run: ``.venv/bin/python benchmarks/bench_heatmap.py [--predict-tiles N] [--out FILE]``
(writes under benchmarks/_work/; ``--out FILE`` keeps the rows with the date, machine and
load: ``_results.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import WORK, big_input, peak_rss_mib  # noqa: E402
from _results import started, write  # noqa: E402

TILE = 128
PREDICTIONS = WORK / "bench_heatmap_predictions.csv"
HEATMAP = WORK / "bench_heatmap.tif"
PREVIEW = WORK / "bench_heatmap.png"
ORIGINAL_BLEND_S = 17 * 60
ORIGINAL_MONTAGE_S = 27


def phase_read(slide_path: Path) -> dict:
    import openslide

    started = time.perf_counter()
    with openslide.OpenSlide(str(slide_path)) as slide:
        width, height = slide.level_dimensions[0]
        checksum = 0
        for top in range(0, height, 512):
            rows = min(512, height - top)
            band = slide.read_region((0, top), 0, (width, rows))
            checksum += band.size[0]
            del band
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "megapixels": width * height / 1e6}


def phase_predict(slide_path: Path, limit: int | None) -> dict:
    from histotile.models import Predictor
    from histotile.postprocess import predict as predict_module
    from histotile.postprocess import predict_slide
    from histotile.workflows.benchmark.stages import untrained_model

    predictor = Predictor(untrained_model("lenet", WORK / "bench_lenet", "cpu"), device="cpu")
    counted = {}
    if limit:
        # Classify only the first ``limit`` tiles of the grid; the rest stay NaN.
        original = predict_module._classify

        def limited(slide, grid, *args, **kwargs):
            counted["total"] = len(grid)
            yield from original(slide, grid.subset(range(min(limit, len(grid)))), *args,
                                **kwargs)

        predict_module._classify = limited
    started = time.perf_counter()
    result = predict_slide(slide_path, predictor, batch_size=256)
    seconds = time.perf_counter() - started
    classified = int(result.tiles["prob_tumour"].notna().sum())
    if limit:
        result.tiles = result.tiles.dropna().reset_index(drop=True)
    result.save(PREDICTIONS, overwrite=True)
    return {"seconds": seconds, "tiles": len(result) if not limit else counted["total"],
            "classified": classified}


def phase_heatmap(slide_path: Path) -> dict:
    import numpy as np

    from histotile.postprocess import load_predictions, write_heatmap

    predictions = load_predictions(PREDICTIONS)
    threshold = float(np.median(predictions.probabilities("tumour")))
    started = time.perf_counter()
    result = write_heatmap(slide_path, predictions, HEATMAP, positive_class="tumour",
                           threshold=threshold, preview_path=PREVIEW, overwrite=True)
    seconds = time.perf_counter() - started
    import openslide

    with openslide.OpenSlide(str(HEATMAP)) as check:
        levels = check.level_count
    return {"seconds": seconds, "levels": levels, "coloured": result.tiles_coloured,
            "tiles": len(predictions), "bytes": HEATMAP.stat().st_size,
            "megapixels": sum(w * h for w, h in result.level_dimensions) / 1e6}


def run_phase(name: str, extra: list[str]) -> dict:
    """Run a phase in a fresh process; returns its JSON report (with its peak RSS)."""
    output = subprocess.run([sys.executable, __file__, "--phase", name, *extra], check=True,
                            capture_output=True, text=True, env=dict(os.environ)).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=["read", "predict", "heatmap"])
    parser.add_argument("--predict-tiles", type=int, default=0,
                        help="classify only this many tiles and extrapolate (0: all)")
    parser.add_argument("--out", type=Path, help="keep the figures in this results file "
                        "(JSON; never replaces one)")
    args = parser.parse_args()
    start = None if args.phase else started(args.out)
    slide_path = big_input().slide
    if args.phase:
        report = {"read": lambda: phase_read(slide_path),
                  "predict": lambda: phase_predict(slide_path, args.predict_tiles or None),
                  "heatmap": lambda: phase_heatmap(slide_path)}[args.phase]()
        report["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(report))
        return

    extra = ["--predict-tiles", str(args.predict_tiles)] if args.predict_tiles else []
    read = run_phase("read", [])
    predict = run_phase("predict", extra)
    heatmap = run_phase("heatmap", [])
    base = read["seconds"]
    rate = predict["classified"] / predict["seconds"]
    predict_all = predict["tiles"] / rate
    label = ("predict all tissue tiles, LeNet 128 px, CPU"
             if not args.predict_tiles else
             f"predict: EXTRAPOLATED from {predict['classified']} of {predict['tiles']} "
             "tissue tiles, LeNet 128 px, CPU")
    print(f"Synthetic slide {slide_path.name}: 100,000 x 50,000 px (5 GP), 30 % tissue; "
          f"{predict['tiles']:,} tissue tiles of {TILE} px; {os.cpu_count()} CPU cores.\n")
    print("| step | seconds | x read baseline | peak RSS (MiB) | notes |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| baseline: OpenSlide read of level 0 (5 GP) | {base:.1f} | 1.00 | "
          f"{read['peak_rss_mib']:.0f} | {read['megapixels'] / base:.0f} MP/s |")
    print(f"| {label} | {predict_all:.1f} | {predict_all / base:.2f} | "
          f"{predict['peak_rss_mib']:.0f} | {rate:.0f} tiles/s, reading overlapped |")
    print(f"| heatmap TIFF (level 0 + {heatmap['levels'] - 1} levels) + 2048-px preview | "
          f"{heatmap['seconds']:.1f} | {heatmap['seconds'] / base:.2f} | "
          f"{heatmap['peak_rss_mib']:.0f} | {heatmap['megapixels']:,.0f} MP written, "
          f"{heatmap['bytes'] / 2**20:,.0f} MiB, {heatmap['coloured']:,} tiles coloured |")
    print(f"| original workflow: alpha blending + ImageMagick montage | "
          f"{ORIGINAL_BLEND_S + ORIGINAL_MONTAGE_S} | "
          f"{(ORIGINAL_BLEND_S + ORIGINAL_MONTAGE_S) / base:.2f} | | 17 min + 27 s "
          "(reported, other machine) |")
    ok_speed = heatmap["seconds"] <= 2 * base
    ok_memory = heatmap["peak_rss_mib"] < 2048
    print(f"\nTargets: heatmap within 2x of the read baseline: "
          f"{'met' if ok_speed else 'NOT met'} ({heatmap['seconds'] / base:.2f}x); "
          f"peak memory under 2 GiB: {'met' if ok_memory else 'NOT met'} "
          f"({heatmap['peak_rss_mib']:.0f} MiB).")
    write(args.out, "heatmap", start, {
        "slide": slide_path.name, "tile": TILE, "tissue_tiles": predict["tiles"],
        "predict_tiles": args.predict_tiles or None,
        "rows": [
            {"step": "baseline: OpenSlide read of level 0", "baseline": True, "seconds": base,
             "ratio": 1.0, "peak_rss_mib": read["peak_rss_mib"],
             "megapixels": read["megapixels"]},
            {"step": "predict", "seconds": predict_all, "ratio": predict_all / base,
             "peak_rss_mib": predict["peak_rss_mib"], "tiles_per_s": rate,
             "classified": predict["classified"],
             "extrapolated": bool(args.predict_tiles)},
            {"step": "heatmap TIFF and preview", "seconds": heatmap["seconds"],
             "ratio": heatmap["seconds"] / base, "peak_rss_mib": heatmap["peak_rss_mib"],
             "levels": heatmap["levels"], "megapixels": heatmap["megapixels"],
             "bytes": heatmap["bytes"], "coloured": heatmap["coloured"]}],
        "targets": {"heatmap_ratio": 2.0, "peak_rss_mib": 2048}})


if __name__ == "__main__":
    main()
