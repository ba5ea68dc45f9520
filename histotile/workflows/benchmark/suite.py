"""The benchmark suite: every pipeline stage on a synthetic slide, each against its same-run
baseline, plus the tiling stage at three slide sizes (see :func:`run_benchmark`)."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from histotile._atomic import write_text_atomic
from histotile._settings import refuse_unknown, required
from histotile._threads import thread_budget
from histotile.errors import ConfigError
from histotile.workflows.benchmark.inputs import BenchInput, cached_input
from histotile.workflows.benchmark.machine import describe_machine
from histotile.workflows.benchmark.tables import render_markdown

FULL_SIZE = (100_000, 50_000)  # 5 GP: the scale of the original workflow's slides
QUICK_SIZE = (20_000, 20_000)  # 0.4 GP: the whole quick run takes under two minutes
MIN_SIZE = 2048  # the smallest side of a benchmark slide (px)
WORK = Path("histotile-bench")
RESNET_TILES, QUICK_RESNET_TILES = 2048, 256  # tiles ResNet18 classifies (extrapolated)
QUICK_TRAIN_TILES = 1024  # tiles of the quick run's timed epoch (the full run: every tile)
BASELINE_SECONDS, QUICK_BASELINE_SECONDS = 3.0, 1.5  # a bare network's timed run
Progress = Callable[..., None]


@dataclass(frozen=True)
class BenchmarkSettings:
    """What the benchmark runs (built by ``histotile bench``, ``benchmarks/run.py`` or the
    API; ``None`` fields are filled in by :meth:`resolved`).

    Attributes:
        quick: the :data:`QUICK_SIZE` slide instead of :data:`FULL_SIZE`.
        work: folder for the cached synthetic slides and every stage's outputs.
        out: the Markdown table (a JSON of every figure is written beside it); default
            ``<work>/benchmark.md`` (``benchmark-quick.md`` with ``quick``).
        size: level-0 (width, height) of the main slide, overriding ``quick``'s choice.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` for training and prediction (None:
            CUDA when present).
        workers: tiling processes (None: this process's thread budget).
        resnet_tiles: tissue tiles ResNet18 classifies; its time for all of them is
            extrapolated (None: :data:`RESNET_TILES`, or :data:`QUICK_RESNET_TILES` with
            ``quick``).
        train_tiles: tiles of the training epoch, a stratified sample whose training
            steps are extrapolated to every tile (None: every tile, or
            :data:`QUICK_TRAIN_TILES` with ``quick``; 0: every tile).
        baseline_seconds: how long each bare network runs to measure its steady rate
            (None: :data:`BASELINE_SECONDS`, or :data:`QUICK_BASELINE_SECONDS` with
            ``quick``).
        scaling: also tile slides of 1/16 and 1/4 the main slide's area.
    """

    quick: bool = False
    work: Path = WORK
    out: Path | None = None
    size: tuple[int, int] | None = None
    device: str | None = None
    workers: int | None = None
    resnet_tiles: int | None = None
    train_tiles: int | None = None
    baseline_seconds: float | None = None
    scaling: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "work", Path(self.work))
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        if self.size is not None:
            size = tuple(int(v) for v in self.size)
            if len(size) != 2 or min(size) < MIN_SIZE:
                raise ConfigError(f"size={self.size}: need (width, height), each at least "
                                  f"{MIN_SIZE} px")
            object.__setattr__(self, "size", size)
        checks = (("workers", 1), ("resnet_tiles", 1), ("train_tiles", 0))
        for name, least in checks:
            value = getattr(self, name)
            if value is not None and value < least:
                raise ConfigError(f"{name}={value}: must be >= {least}")
        if self.baseline_seconds is not None and not self.baseline_seconds > 0:
            raise ConfigError(f"baseline_seconds={self.baseline_seconds}: must be > 0")

    def resolved(self) -> BenchmarkSettings:
        """A copy with every ``None`` filled in (for ``quick`` or the full run)."""
        quick = self.quick
        out = self.out or self.work / ("benchmark-quick.md" if quick else "benchmark.md")
        train_tiles = (self.train_tiles if self.train_tiles is not None
                       else (QUICK_TRAIN_TILES if quick else 0))
        return BenchmarkSettings(
            quick, self.work, out, self.size or (QUICK_SIZE if quick else FULL_SIZE),
            self.device, int(self.workers or thread_budget()),
            int(self.resnet_tiles or (QUICK_RESNET_TILES if quick else RESNET_TILES)),
            int(train_tiles),
            float(self.baseline_seconds or (QUICK_BASELINE_SECONDS if quick
                                            else BASELINE_SECONDS)),
            self.scaling)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BenchmarkSettings:
        """From option names and values; unknown names are a :class:`ConfigError`."""
        refuse_unknown(cls, values, "benchmark")
        return cls(**values)


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
    main_size = required(settings.size, "size")
    sizes = scaling_sizes(main_size) if settings.scaling else [main_size]
    progress("inputs", sizes=sizes)
    inputs: dict[tuple[int, int], BenchInput] = {}
    for index, size in enumerate(sizes):
        # The main slide keeps seed 7 (the cache the older benchmarks share).
        seed = 7 if size == main_size else 8 + index
        inputs[size] = cached_input(settings.work, *size, seed=seed)
        progress("input_ready", slide=str(inputs[size].slide),
                 seconds=inputs[size].seconds_written)
    main = inputs[main_size]
    plan = _plan(settings, main)
    extra = [size for size in sizes if size != main_size]
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
        figures = measure("tiling", {"slide": str(inputs[size].slide),
                                     "overlay": str(inputs[size].overlay),
                                     "manifest": str(folder / f"tiles_{size[0]}x{size[1]}.csv"),
                                     "workers": settings.workers})
        measured[key] = figures
        progress("end", key=key, result=figures)
    for size in sizes:
        key = "tiling" if size == main_size else f"tiling_{size[0]}x{size[1]}"
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
    result.markdown_path = required(settings.out, "out")
    result.json_path = result.markdown_path.with_suffix(".json")
    write_text_atomic(result.markdown_path, result.markdown)
    write_text_atomic(result.json_path, json.dumps(
        {k: v for k, v in asdict(result).items() if k not in ("markdown_path", "json_path")},
        indent=2, default=str))
    return result
