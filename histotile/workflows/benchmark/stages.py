"""The benchmark's measurements: each pipeline stage through histotile's public API, and the
baseline it is compared with, measured in the same run.

Each function runs in a fresh child process (see :mod:`.child`), takes a dict of plain
parameters and returns a dict of plain results; the caller adds the wall and CPU time of
the section the function timed with its :class:`Meter`, and the process's peak memory.
Setup that a user pays once per process (imports, the tissue colour table, loading the
model) stays outside the timed section.

Baselines (as the tiling, models and postprocess issues name them):

* tissue detection, tiling: plain OpenSlide reads of the same pixels (the mask's level;
  the blocks the tiler reads, in as many processes);
* training, prediction: the bare network (forward, or forward + backward + optimiser
  step) on a ready-made tensor on the same device, its steady rate extrapolated to the
  stage's tile count;
* heatmap: an OpenSlide read of level 0 in full-width bands, as the renderer reads it.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from histotile.workflows.benchmark.inputs import CLASSES, SLIDE_MPP, TUMOUR_GREEN

TILE = 128


class Meter:
    """Accumulates wall and CPU seconds (this process, its threads and its finished child
    processes) over the ``with`` blocks it times."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    @staticmethod
    def _cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def __enter__(self) -> Meter:
        self._wall, self._cpu_start = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds += time.perf_counter() - self._wall
        self.cpu_seconds += self._cpu() - self._cpu_start


def tiling_settings():
    from histotile.tiling import TilingSettings

    return TilingSettings(tile_size=TILE, classes=CLASSES, palette={"tumour": TUMOUR_GREEN})


# --- tissue detection -------------------------------------------------------------------

def tissue(params: dict, meter: Meter) -> dict:
    from histotile.tiling import detect_tissue
    from histotile.tiling.tissue import tissue_lut
    from histotile.wsi import open_slide

    tissue_lut()  # a once-per-process colour table (about 1 s)
    with meter, open_slide(params["slide"]) as slide:
        mask = detect_tissue(slide)
    return {"mask_width": int(mask.mask.shape[1]), "mask_height": int(mask.mask.shape[0]),
            "downsample": float(mask.downsample),
            "tissue_area_fraction": mask.tissue_area_fraction}


def tissue_baseline(params: dict, meter: Meter) -> dict:
    import openslide

    with meter, openslide.OpenSlide(params["slide"]) as slide:
        level = slide.get_best_level_for_downsample(params["downsample"] + 1e-6)
        np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]))
    return {}


# --- tiling, labelling, white-tile filter ------------------------------------------------

def tiling(params: dict, meter: Meter) -> dict:
    from histotile.tiling import PaintedOverlay, extract_tiles, write_manifest
    from histotile.tiling.artefacts import ink_lut
    from histotile.tiling.tissue import tissue_lut

    tissue_lut()
    ink_lut()  # the ink test's once-per-process table, like the tissue one
    settings = tiling_settings()
    with meter:
        df = extract_tiles(params["slide"], settings, annotation=PaintedOverlay(params["overlay"]),
                           workers=int(params["workers"]))
        write_manifest(df, params["manifest"], overwrite=True)
    tissue_tiles = int((df["tissue_fraction"] >= settings.min_tissue).sum())
    return {"tiles_kept": len(df), "tissue_tiles": tissue_tiles,
            "labels": {str(k): int(v) for k, v in df["label"].value_counts().items()}}


def read_rects(args: tuple[str, list[tuple[int, int, int, int]]]) -> int:
    import openslide

    path, rects = args
    pixels = 0
    with openslide.OpenSlide(path) as slide:
        for x, y, w, h in rects:
            pixels += np.asarray(slide.read_region((x, y), 0, (w, h))).shape[0] * w
    return pixels


def read_plan(slide_path: str) -> tuple[list[list[tuple[int, int, int, int]]], int, int]:
    """The rectangles the tiler reads (level-0 x, y, width, height), grouped by the read
    regions of its plan (:func:`histotile.tiling.plan_tiles`), as it hands them to its
    workers; the grid's tile count and the number of tiles read."""
    from histotile.tiling import plan_tiles
    from histotile.tiling.reader import plan_blocks
    from histotile.wsi import open_slide

    with open_slide(slide_path) as slide:
        plan = plan_tiles(slide, tiling_settings())
    grid = plan.grid
    regions = []
    for region in plan.regions():
        rects = []
        for block in plan_blocks(grid.subset(region), None, plan.block_size):
            xs, ys = grid.xs[region][block], grid.ys[region][block]
            rects.append((int(xs.min()), int(ys.min()), int(xs.max() - xs.min()) + grid.extent,
                          int(ys.max() - ys.min()) + grid.extent))
        regions.append(rects)
    return regions, len(grid), len(plan.candidates)


def tiling_baseline(params: dict, meter: Meter) -> dict:
    regions, grid_tiles, tiles_read = read_plan(params["slide"])
    workers = int(params["workers"])
    jobs = [(params["slide"], rects) for rects in regions]
    with meter:
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                pixels = sum(pool.map(read_rects, jobs, chunksize=1))
        else:
            pixels = sum(map(read_rects, jobs))
    return {"grid_tiles": grid_tiles, "tiles_read": tiles_read,
            "blocks": sum(len(r) for r in regions), "pixels_read": pixels}


# --- training -----------------------------------------------------------------------------

def train_epoch(params: dict, meter: Meter) -> dict:
    """One epoch of LeNet (histotile's defaults) on the tiles of the manifest the tiling
    stage wrote (all of them, or a stratified sample of ``max_tiles``): tiles read from
    the slide by DataLoader workers, augmented, normalised; the model folder written."""
    import pandas as pd

    from histotile.models import TrainSettings, train

    settings = TrainSettings(model="lenet", epochs=1, folds=0, test_fraction=0.0, patience=0,
                             device=params["device"], seed=0,
                             max_tiles=params.get("max_tiles"))
    started: dict[str, Any] = {}

    def on_event(event: str, **info: Any) -> None:
        if event == "start":
            started.update(info)

    with meter:
        train(params["manifest"], params["model_dir"], settings, progress=on_event,
              overwrite=True)
    history = pd.read_csv(Path(params["model_dir"]) / "history.csv")
    log = (Path(params["model_dir"]) / "train.log").read_text(encoding="utf-8")
    cache = next((line.split(" INFO tiles ", 1)[1].strip() for line in log.splitlines()
                  if " INFO tiles " in line), "")
    return {"tiles": int(started["tiles"]), "device": str(started["device"]),
            "epoch_seconds": float(history["seconds"].iloc[-1]), "tile_cache": cache}


def _synchronise(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _steady_rate(step: Callable[[], int], device, seconds: float) -> float:
    """Tiles per second of ``step`` (returns the tiles it processed) after a warm-up,
    over about ``seconds``."""
    step()
    _synchronise(device)
    tiles, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        tiles += step()
    _synchronise(device)
    return tiles / (time.perf_counter() - started)


def train_baseline(params: dict, meter: Meter) -> dict:
    """Forward + backward + the optimiser step of a bare LeNet (histotile's training
    defaults: optimiser, batch size, channels-last; on CUDA mixed precision with a grad
    scaler, as training runs there) on a ready-made tensor."""
    import torch

    from histotile.models import TrainSettings, create, get_spec
    from histotile.models.torch_backend import autocast, prepare, resolve_device

    settings = TrainSettings(model="lenet", device=params["device"]).resolved()
    device = resolve_device(settings.device)
    spec = get_spec("lenet")
    model = prepare(create("lenet", len(CLASSES), TILE), spec, device).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    batch = settings.batch_size
    x = torch.randn(batch, 3, TILE, TILE, device=device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, len(CLASSES), (batch,), device=device)

    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None

    def step() -> int:
        optimiser.zero_grad(set_to_none=True)
        with autocast(device):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        if scaler is None:
            loss.backward()
            optimiser.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
        return batch

    with meter:
        rate = _steady_rate(step, device, float(params.get("seconds", 3.0)))
    return {"rate": rate, "batch_size": batch, "device": str(device)}


# --- prediction ---------------------------------------------------------------------------

def untrained_model(architecture: str, directory: str | Path, device: str | None) -> Path:
    """A model folder holding a freshly initialised ``architecture`` (seeded): the speed of
    a trained one, not its answers. Written by the models stage's own card writer."""
    import torch

    from histotile.models import create, get_spec
    from histotile.models.card import build_card, write_card
    from histotile.models.torch_backend import save

    directory = Path(directory)
    if (directory / "model_card.json").exists():
        return directory
    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    weights = save(create(architecture, len(CLASSES), TILE), directory)
    write_card(build_card(architecture=architecture, backend="torch",
                          description=f"untrained {architecture} (benchmark: speed only)",
                          classes=list(CLASSES), tile_size=TILE, weights_file=weights,
                          normalisation=get_spec(architecture).normalisation(),
                          geometry={"tile_mpp": SLIDE_MPP, "tile_downsample": 1.0},
                          settings={}, data={}, metrics={}, final_epochs=None), directory)
    return directory


def predict(params: dict, meter: Meter) -> dict:
    """:func:`predict_slide` over every tissue tile, or with ``parts`` > 1 over one
    contiguous slice (the middle one) of them; then the time for every tile is the
    measured time plus the rest at the steady rate (after the first batch)."""
    from histotile.models import Predictor
    from histotile.postprocess import predict_slide

    model_dir = params["model_dir"]
    if params.get("architecture"):
        model_dir = untrained_model(params["architecture"], model_dir, params["device"])
    # engine "auto": the fastest installed engine for the device (onnxruntime on CPU)
    predictor = Predictor(model_dir, device=params["device"])
    parts = int(params.get("parts") or 1)
    part = (parts // 2, parts) if parts > 1 else None
    stamps: list[tuple[float, int]] = []

    def on_progress(done: int, _total: int) -> None:
        stamps.append((time.perf_counter(), done))

    with meter:
        result = predict_slide(params["slide"], predictor, tiling=tiling_settings(),
                               part=part, progress=on_progress)
    if params.get("predictions"):
        result.save(params["predictions"], overwrite=True)
    tiles = len(result)
    out = {"tiles": tiles, "device": predictor.device, "batch_size": predictor.batch_size,
           "engine": predictor.engine}
    if len(stamps) >= 3:
        (t0, n0), (t1, n1) = stamps[0], stamps[-1]
        out["steady_rate"] = (n1 - n0) / (t1 - t0)
    return out


def predict_baseline(params: dict, meter: Meter) -> dict:
    """The loaded network's forward pass and softmax on a ready-made normalised batch on
    its device (mixed precision on CUDA, as the Predictor runs it)."""
    import torch

    from histotile.models import Predictor
    from histotile.models.torch_backend import autocast

    model_dir = params["model_dir"]
    if params.get("architecture"):
        model_dir = untrained_model(params["architecture"], model_dir, params["device"])
    # The baseline stays the bare eager torch network, whatever engine predicts.
    predictor = Predictor(model_dir, device=params["device"], engine="torch")
    device = torch.device(predictor.device)
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (predictor.batch_size, TILE, TILE, 3), dtype=np.uint8)
    batch = predictor.to_input(tiles)

    def step() -> int:
        with autocast(device):
            torch.softmax(predictor.network(batch).float(), dim=1).cpu()
        return batch.shape[0]

    with meter, torch.inference_mode():
        rate = _steady_rate(step, device, float(params.get("seconds", 3.0)))
    return {"rate": rate, "batch_size": predictor.batch_size, "device": predictor.device}


# --- heatmap ------------------------------------------------------------------------------

def heatmap(params: dict, meter: Meter) -> dict:
    """Heatmap TIFF (every pyramid level) + PNG preview. The threshold is the median
    probability, so about half the tissue tiles are coloured whatever one epoch taught
    the model (its probabilities sit in a narrow band)."""
    from histotile.postprocess import load_predictions, write_heatmap

    predictions = load_predictions(params["predictions"])
    threshold = float(np.median(predictions.probabilities("tumour")))
    with meter:
        result = write_heatmap(params["slide"], predictions, params["heatmap"],
                               class_name="tumour", threshold=threshold,
                               preview_path=params["preview"], overwrite=True)
    return {"levels": len(result.level_dimensions), "tiles": len(predictions),
            "tiles_coloured": int(result.tiles_coloured),
            "megapixels_written": sum(w * h for w, h in result.level_dimensions) / 1e6,
            "bytes": Path(params["heatmap"]).stat().st_size}


def heatmap_baseline(params: dict, meter: Meter) -> dict:
    import openslide

    rows = 512
    with meter, openslide.OpenSlide(params["slide"]) as slide:
        width, height = slide.level_dimensions[0]
        for top in range(0, height, rows):
            np.asarray(slide.read_region((0, top), 0, (width, min(rows, height - top))))
    return {"megapixels": width * height / 1e6}


STAGES: dict[str, Callable[[dict, Meter], dict]] = {
    "tissue": tissue, "tissue_baseline": tissue_baseline,
    "tiling": tiling, "tiling_baseline": tiling_baseline,
    "train": train_epoch, "train_baseline": train_baseline,
    "predict": predict, "predict_baseline": predict_baseline,
    "heatmap": heatmap, "heatmap_baseline": heatmap_baseline,
}


def own_peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB. Linux's ``VmHWM`` starts afresh at
    exec; ``ru_maxrss`` does not (a child inherits the high-water mark of the process that
    started it, which would charge every stage with the benchmark runner's memory)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_stage(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this process; adds ``seconds``, ``cpu_seconds`` (the timed
    section) and the peak resident memory of this process and of its largest child (whose
    inherited mark is at most this process's own peak, so the larger of the two is
    exact)."""
    meter = Meter()
    result = STAGES[name](params, meter)
    own = own_peak_rss_mib()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    result.update(seconds=meter.seconds, cpu_seconds=meter.cpu_seconds,
                  peak_rss_mib=own, peak_rss_children_mib=children)
    torch = sys.modules.get("torch")  # only stages that ran a network imported it
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu_name"] = torch.cuda.get_device_name()
    return result
