"""The benchmark suite: every pipeline stage on a synthetic slide, each against its same-run
baseline, plus the tiling stage at three slide sizes (see :func:`run_benchmark`)."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from histotile._atomic import write_text_atomic
from histotile._threads import thread_budget
from histotile.errors import ConfigError
from histotile.workflows.benchmark.inputs import BenchInput, cached_input
from histotile.workflows.benchmark.machine import describe_machine
from histotile.workflows.benchmark.tables import render_markdown

FULL_SIZE = (100_000, 50_000)  # 5 GP: the scale of the original workflow's slides
QUICK_SIZE = (20_000, 20_000)  # 0.4 GP: the whole quick run takes under two minutes
Progress = Callable[..., None]


@dataclass
class BenchmarkSettings:
    """What the benchmark runs.

    Attributes:
        quick: the 20,000 x 20,000 px slide instead of 100,000 x 50,000 px.
        work: folder for the cached synthetic slides and every stage's outputs.
        out: the Markdown table (a JSON of every figure is written beside it); default
            ``<work>/benchmark.md`` (``benchmark-quick.md`` with ``quick``).
        size: level-0 (width, height) of the main slide, overriding ``quick``'s choice.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` for training and prediction (None:
            CUDA when present).
        workers: tiling processes (None: this process's thread budget).
        resnet_tiles: tissue tiles ResNet18 classifies; its time for all of them is
            extrapolated (None: 2,048, or 256 with ``quick``).
        train_tiles: tiles of the training epoch, a stratified sample whose training
            steps are extrapolated to every tile (None: every tile, or 1,024 with
            ``quick``; 0: every tile).
        baseline_seconds: how long each bare network runs to measure its steady rate
            (None: 3, or 1.5 with ``quick``).
        scaling: also tile slides of 1/16 and 1/4 the main slide's area.
    """

    quick: bool = False
    work: Path = field(default_factory=lambda: Path("histotile-bench"))
    out: Path | None = None
    size: tuple[int, int] | None = None
    device: str | None = None
    workers: int | None = None
    resnet_tiles: int | None = None
    train_tiles: int | None = None
    baseline_seconds: float | None = None
    scaling: bool = True

    def resolved(self) -> BenchmarkSettings:
        size = tuple(int(v) for v in (self.size or (QUICK_SIZE if self.quick else FULL_SIZE)))
        if len(size) != 2 or min(size) < 2048:
            raise ConfigError(f"size={self.size}: need (width, height), each at least 2048 px")
        work = Path(self.work)
        out = Path(self.out) if self.out else work / (
            "benchmark-quick.md" if self.quick else "benchmark.md")
        workers = int(self.workers or thread_budget())
        resnet = int(self.resnet_tiles or (256 if self.quick else 2048))
        train_tiles = (self.train_tiles if self.train_tiles is not None
                       else (1024 if self.quick else 0))
        baseline = float(self.baseline_seconds or (1.5 if self.quick else 3.0))
        if workers < 1 or resnet < 1 or train_tiles < 0 or baseline <= 0:
            raise ConfigError(f"workers={workers}, resnet_tiles={resnet}, train_tiles="
                              f"{train_tiles}, baseline_seconds={baseline}: the first two "
                              "must be >= 1, train_tiles >= 0 and baseline_seconds > 0")
        return BenchmarkSettings(self.quick, work, out, size, self.device, workers, resnet,
                                 int(train_tiles), baseline, self.scaling)


@dataclass
class BenchmarkResult:
    """Everything measured: the machine, the inputs, each measurement's raw result, the
    table rows (see :mod:`.tables`) and where the table and the JSON were written."""

    machine: dict[str, Any]
    settings: dict[str, Any]
    inputs: list[dict[str, Any]]
    measurements: dict[str, dict[str, Any]]
    scaling: list[dict[str, Any]]
    markdown: str = ""
    markdown_path: Path | None = None
    json_path: Path | None = None
    seconds: float = 0.0


def load_result(json_path: str | Path) -> BenchmarkResult:
    """An earlier run's :class:`BenchmarkResult` from the JSON it wrote (to print its
    table again, for example after the table's layout changed)."""
    json_path = Path(json_path)
    try:
        figures = json.loads(json_path.read_text(encoding="utf-8"))
        result = BenchmarkResult(**{k: figures[k] for k in (
            "machine", "settings", "inputs", "measurements", "scaling", "seconds")})
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{json_path}: not a benchmark JSON written by histotile bench "
                          f"({error}); give the .json file written beside the table") from None
    result.markdown = render_markdown(result)
    result.markdown_path, result.json_path = json_path.with_suffix(".md"), json_path
    return result


def _no_progress(_event: str, **_info: Any) -> None:
    pass


def _plan(settings: BenchmarkSettings, main: BenchInput) -> list[tuple[str, str, Callable]]:
    """(key, stage, params(measured so far)) in running order."""
    work = settings.work
    device = settings.device
    bare = settings.baseline_seconds
    out = work / ("quick" if settings.quick else "full")
    slide, overlay = str(main.slide), str(main.overlay)
    manifest = str(out / "tiles.csv")
    lenet = str(out / "lenet")
    resnet = str(out / "resnet18_untrained")
    predictions = str(out / "predictions_lenet.csv")

    def resnet_parts(m: dict) -> int:
        return max(1, math.ceil(m["predict_lenet"]["tiles"] / settings.resnet_tiles))

    return [
        ("tissue", "tissue", lambda m: {"slide": slide}),
        ("tissue_baseline", "tissue_baseline",
         lambda m: {"slide": slide, "downsample": m["tissue"]["downsample"]}),
        ("tiling_baseline", "tiling_baseline",
         lambda m: {"slide": slide, "workers": settings.workers}),
        ("tiling", "tiling", lambda m: {"slide": slide, "overlay": overlay,
                                        "manifest": manifest, "workers": settings.workers}),
        ("train", "train", lambda m: {"manifest": manifest, "model_dir": lenet,
                                      "device": device,
                                      "max_tiles": settings.train_tiles or None}),
        ("train_baseline", "train_baseline", lambda m: {"device": device, "seconds": bare}),
        ("predict_lenet", "predict", lambda m: {"slide": slide, "model_dir": lenet,
                                                "device": device,
                                                "predictions": predictions}),
        ("predict_lenet_baseline", "predict_baseline",
         lambda m: {"model_dir": lenet, "device": device, "seconds": bare}),
        ("predict_resnet18", "predict",
         lambda m: {"slide": slide, "model_dir": resnet, "architecture": "resnet18",
                    "device": device, "parts": resnet_parts(m)}),
        ("predict_resnet18_baseline", "predict_baseline",
         lambda m: {"model_dir": resnet, "architecture": "resnet18", "device": device,
                    "seconds": bare}),
        ("heatmap_baseline", "heatmap_baseline", lambda m: {"slide": slide}),
        ("heatmap", "heatmap", lambda m: {"slide": slide, "predictions": predictions,
                                          "heatmap": str(out / "heatmap.tif"),
                                          "preview": str(out / "heatmap.png")}),
    ]


def scaling_sizes(size: tuple[int, int]) -> list[tuple[int, int]]:
    """1/16, 1/4 and all of the main slide's area (same aspect ratio)."""
    return [(size[0] // 4, size[1] // 4), (size[0] // 2, size[1] // 2), size]


def run_benchmark(settings: BenchmarkSettings | None = None, *,
                  progress: Progress | None = None) -> BenchmarkResult:
    """Time every stage of the pipeline on a synthetic slide against its baseline.

    Writes (once, cached in ``settings.work``) the slide and its painted overlay, then runs
    each measurement in a fresh process: tissue detection; tiling + labelling +
    white-tile filter; one LeNet training epoch on the extracted tiles; LeNet prediction
    of every tissue tile; ResNet18 prediction of a sample (extrapolated); the heatmap TIFF
    + preview; each with its baseline. With ``settings.scaling`` the tiling stage also
    runs on slides of 1/16 and 1/4 the area. Writes the Markdown table and a JSON of every
    figure (atomically).

    Args:
        settings: :class:`BenchmarkSettings`.
        progress: ``progress(event, **info)``: ``inputs`` (sizes), ``input_ready``
            (slide, seconds), ``start`` (key, index, total), ``end`` (key, result).
    """
    # Imported here so that ``python -m histotile.workflows.benchmark.child`` does not
    # find its own module already imported by the package.
    from histotile.workflows.benchmark.child import measure

    started = time.perf_counter()
    settings = (settings or BenchmarkSettings()).resolved()
    progress = progress or _no_progress
    sizes = scaling_sizes(settings.size) if settings.scaling else [settings.size]
    progress("inputs", sizes=sizes)
    inputs: dict[tuple[int, int], BenchInput] = {}
    for index, size in enumerate(sizes):
        # The main slide keeps seed 7 (the cache the older benchmarks share).
        seed = 7 if size == settings.size else 8 + index
        inputs[size] = cached_input(settings.work, *size, seed=seed)
        progress("input_ready", slide=str(inputs[size].slide),
                 seconds=inputs[size].seconds_written)
    main = inputs[settings.size]
    plan = _plan(settings, main)
    extra = [size for size in sizes if size != settings.size]
    total = len(plan) + len(extra)
    load_before = os.getloadavg()[0]
    measured: dict[str, dict[str, Any]] = {}
    for index, (key, stage, params) in enumerate(plan):
        progress("start", key=key, index=index, total=total)
        measured[key] = measure(stage, params(measured))
        progress("end", key=key, result=measured[key])
    scaling = []
    for offset, size in enumerate(extra):
        key = f"tiling_{size[0]}x{size[1]}"
        progress("start", key=key, index=len(plan) + offset, total=total)
        folder = settings.work / "scaling"
        result = measure("tiling", {"slide": str(inputs[size].slide),
                                    "overlay": str(inputs[size].overlay),
                                    "manifest": str(folder / f"tiles_{size[0]}x{size[1]}.csv"),
                                    "workers": settings.workers})
        measured[key] = result
        progress("end", key=key, result=result)
    for size in sizes:
        key = "tiling" if size == settings.size else f"tiling_{size[0]}x{size[1]}"
        scaling.append({"width": size[0], "height": size[1], **measured[key]})
    machine = describe_machine(measured)
    machine["load_average"] = [load_before, os.getloadavg()[0]]
    result = BenchmarkResult(
        machine=machine,
        settings={k: (str(v) if isinstance(v, Path) else v)
                  for k, v in asdict(settings).items()},
        inputs=[{"slide": str(i.slide), "overlay": str(i.overlay), "width": i.width,
                 "height": i.height, "seconds_written": i.seconds_written}
                for i in inputs.values()],
        measurements=measured, scaling=scaling)
    result.seconds = time.perf_counter() - started
    result.markdown = render_markdown(result)
    result.markdown_path = Path(settings.out)
    result.json_path = result.markdown_path.with_suffix(".json")
    write_text_atomic(result.markdown_path, result.markdown)
    write_text_atomic(result.json_path, json.dumps(
        {k: v for k, v in asdict(result).items() if k not in ("markdown_path", "json_path")},
        indent=2, default=str))
    return result
