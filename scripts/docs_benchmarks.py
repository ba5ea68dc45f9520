"""The documentation's benchmark pages, generated from ``benchmarks/results/*.json``.

Each results file is recognised by the keys the benchmark that wrote it records, and each
benchmark gets one page (``docs/benchmarks/<slug>.md``): one table in which every run
says the date, machine and load it recorded, then the run's figures. Nothing on these
pages is typed: a new results file appears on the next build. The docs build calls
:func:`pages` (``docs/hooks/benchmarks.py``); to look at the pages without building::

    python scripts/docs_benchmarks.py --out /tmp/benchmark-pages

The demo's figures (``docs/generated/demo-summary.json``, refreshed by ``make
docs-images``) get a page here too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEMO_SUMMARY = ROOT / "docs" / "generated" / "demo-summary.json"
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Run:
    """One results file: its name, what it recorded about when and where, its figures."""

    name: str
    date: str
    machine: str
    load: str
    note: str
    data: dict[str, Any]

    def cells(self) -> str:
        """The run's own cell of a table row: its file, date, machine and load (shown on
        the first row of the run only, see :func:`page`)."""
        return f"| `{self.name}`<br>{self.date}<br>{self.machine}<br>load {self.load} "


RUN_HEADER = "| run: file, date, machine, load average (1 min) "
RUN_RULE = "|---"


def _first(data: dict, *paths: str) -> Any:
    """The first value found at one of the dotted ``paths`` (None when none is)."""
    for path in paths:
        value: Any = data
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value not in (None, "", []):
            return value
    return None


def _load(value: Any) -> str | None:
    """The 1-minute load average of a ``getloadavg()`` triple (numbers or strings)."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    try:
        return f"{float(value):.1f}"
    except (TypeError, ValueError):
        return None


def describe(path: Path, data: dict) -> Run:
    """The run's date, machine and load as the results file recorded them; what it did not
    record says so (the date then comes from the file's name, and says that too)."""
    date = _first(data, "date", "started", "machine.date")
    if date:
        date = str(date).replace("T", " ")[:16].removesuffix(" 00:00")
    else:
        date = path.name[:10] + " (file name)"
    cores = _first(data, "machine.cores", "machine.cpus", "machine.threads", "cores")
    cpu = _first(data, "machine.cpu")
    system = _first(data, "machine.system", "machine.platform")
    machine = ", ".join(str(part) for part in (
        f"{cores} cores" if cores else None, cpu,
        system.split("-with-")[0] if system else None) if part) or NOT_RECORDED
    pipeline = _first(data, "machine.load_average")  # histotile bench: [before, after]
    before = _load(_first(data, "load_before", "load_average_before", "machine.load_before")
                   or (pipeline[:1] if pipeline else None))
    after = _load(_first(data, "load_after", "load_average_after", "machine.load_after",
                         "machine.load_average_after")
                  or (pipeline[1:] if pipeline else None))
    load = ", ".join(part for part in (before and f"{before} before",
                                       after and f"{after} after") if part) or NOT_RECORDED
    return Run(path.stem, date, machine, load, str(data.get("note") or ""), data)


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "" if value is None else format(value, spec)


def _notes(runs: list[Run]) -> list[str]:
    """The runs' own notes, as they wrote them."""
    noted = [run for run in runs if run.note]
    return ["", "Notes recorded with the runs:", ""] + [
        f"- `{run.name}`: {run.note}" for run in noted] if noted else []


def pipeline_page(runs: list[Run]) -> list[str]:
    """``histotile bench``: the headline ratios per run, then each run's own report."""
    from histotile.workflows.benchmark.tables import stage_rows

    keys = ("tiling", "predict_lenet", "predict_resnet18", "heatmap")
    lines = [RUN_HEADER + "| tiling x reads | LeNet prediction x bare | ResNet18 prediction "
             "x bare | heatmap x reads | slide size (px) |",
             RUN_RULE + "|---:|---:|---:|---:|---|"]
    for run in runs:
        rows = {row["key"]: row for row in stage_rows(run.data["measurements"])}
        width, height = run.data["settings"]["size"]
        lines.append(run.cells() + "".join(
            f"| {_fmt(rows[key]['ratio'])}x " if key in rows else "| " for key in keys)
            + f"| {width:,} x {height:,} |")
    lines += ["", "Each run's own report, as `histotile bench --from-json FILE` prints it:"]
    for run in reversed(runs):
        from histotile.workflows.benchmark.suite import load_result

        report = load_result(RESULTS / f"{run.name}.json").markdown
        lines += ["", f"### `{run.name}`", ""] + [
            "#" + line if line.startswith("##") else line
            for line in report.splitlines()[1:]]
    return lines


def engines_page(runs: list[Run]) -> list[str]:
    """``bench_engines.py``: every model and engine of every run."""
    lines = [RUN_HEADER + "| model | engine | tiles/s | x torch eager | peak RSS (MiB) "
             "| max abs diff |", RUN_RULE + "|---|---|---:|---:|---:|---:|"]
    for run in runs:
        for model, engines in run.data["results"].items():
            for engine, m in engines.items():
                lines.append(run.cells() + f"| {model} | {engine} | {m['tiles_per_s']:.0f} | "
                             f"{m['ratio']:.2f}x | {_fmt(m.get('peak_rss_mib'), '.0f')} | "
                             f"{m['max_abs_diff']:.1e} |")
    return lines


def ceiling_page(runs: list[Run]) -> list[str]:
    """``bench_engine_ceiling.py``: each model's rate against the machine's matmul peak."""
    lines = [RUN_HEADER + "| model | GFLOP a tile | engine | tiles/s | GFLOP/s | share of "
             "the matmul peak |", RUN_RULE + "|---|---:|---|---:|---:|---:|"]
    for run in runs:
        peak = run.data["ceiling_gflops"]
        for model, m in run.data["models"].items():
            for engine, rate in m["tiles_per_s"].items():
                lines.append(run.cells() + f"| {model} | {m['gflop_per_tile']:.2f} | {engine} "
                             f"| {rate:.0f} | {rate * m['gflop_per_tile']:.0f} | "
                             f"{rate * m['gflop_per_tile'] / peak:.0%} |")
    lines += ["", "The matmul peak of each run: the fastest float32 4096 x 4096 matrix "
              "product of the libraries it tried:", ""]
    lines += [f"- `{run.name}`: " + ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value
                                               in run.data["matmul_gflops"].items())
              for run in runs]
    return lines


SERVE_CASES = {"baseline": "in-process get_tile + JPEG", "cold_1": "served, cold cache, 1",
               "cold_4": "served, cold cache, 4", "cold_16": "served, cold cache, 16",
               "warm_1": "served, warm cache, 1", "warm_4": "served, warm cache, 4",
               "warm_16": "served, warm cache, 16",
               "baseline_end": "in-process get_tile + JPEG, again at the end"}


def serve_page(runs: list[Run]) -> list[str]:
    """``bench_serve.py``: served tiles per second and latency, and ``/api/classify``."""
    lines = [RUN_HEADER + "| tiles; clients | per s | p50 ms | p99 ms | server CPU ms "
             "a tile |", RUN_RULE + "|---|---:|---:|---:|---:|"]
    for run in runs:
        for case, label in SERVE_CASES.items():
            m = run.data["tiles"].get(case)
            if m:
                cpu = m.get("server_cpu_ms", m.get("cpu_ms"))
                lines.append(run.cells() + f"| {label} | {m['per_s']:,.0f} | "
                             f"{m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {_fmt(cpu)} |")
        classify = run.data.get("classify")
        if classify:
            lines.append(run.cells() + f"| `/api/classify` (x the bare predictor: "
                         f"{classify['ratio']:.2f}) | {classify['served_per_s']:.2f} | | | |")
    return lines + _notes(runs)


def training_page(runs: list[Run]) -> list[str]:
    """``bench_training.py``: one model trained one process, data-parallel or fold-parallel."""
    lines = [RUN_HEADER + "| model, folds x epochs | configuration | tiles | seconds | "
             "tiles/s | speed-up |", RUN_RULE + "|---|---|---:|---:|---:|---:|"]
    for run in runs:
        d = run.data
        for name, m in d["results"].items():
            lines.append(run.cells() + f"| {d['model']}, {d['folds']} x {d['epochs']} | {name} "
                         f"| {m['tiles']:,} | {m['seconds']:.1f} | {m['tiles_per_s']:.0f} | "
                         f"{m['speed_up']:.2f}x |")
    bounded = [run for run in runs if "ceiling_speed_up" in run.data]
    if bounded:
        lines += ["", "Where a run measured one process on one thread, that rate times the "
                  "number of processes bounds what any split into one-thread processes can "
                  "reach:", ""] + [f"- `{run.name}`: at most "
                                   f"{run.data['ceiling_speed_up']:.2f}x" for run in bounded]
    return lines


def validity_page(runs: list[Run]) -> list[str]:
    """``bench_validity.py``: held-out patients, each configuration with its own start."""
    versus_defaults = _bench_validity().versus_defaults
    lines = [RUN_HEADER + "| configuration (its own start and load, where recorded) | seeds | "
             "balanced accuracy | AUC | F1 | sensitivity | specificity | Δ balanced "
             "accuracy, Δ AUC vs defaults (same seeds) | minutes a run |",
             RUN_RULE + "|---|---:|---|---|---:|---:|---:|---|---:|"]
    for run in runs:
        d = run.data
        for name, entry in d["configurations"].items():
            m, seeds = entry["held_out"], entry["runs"]
            started = str(entry.get("started", "")).replace("T", " ")[:16]
            load = _load(entry.get("load_before"))
            own = "".join(f"<br>{part}" for part in (started, load and f"load {load}")
                          if part)
            minutes = sum(r["seconds"] for r in seeds) / len(seeds) / 60
            spread = len(seeds) > 1  # one run has no spread to show
            lines.append(
                run.cells() + f"| {name}{own} | {len(seeds)} | "
                + " | ".join(f"{m[key]:.3f}" + (f" ± {m[key + '_sd']:.3f}" if spread else "")
                             for key in ("balanced_accuracy", "auc"))
                + f" | {m['f1']:.3f} | "
                f"{m['sensitivity']:.3f} | {m['specificity']:.3f} | "
                f"{versus_defaults(d, entry)} | {minutes:.1f} |")
        for paper in d.get("published", []):
            lines.append(f"| published | {paper['model']} | | "
                         f"{paper['balanced_accuracy']:.3f} | | {paper['f1']:.3f} | | | | |")
    lines += ["", "Data: " + "; ".join(
        f"`{run.name}`: {run.data.get('data_patches', '?')} patches, positive class "
        f"`{_positive(run)}`" for run in runs) + "."]
    return lines


def _positive(run: Run) -> str:
    for entry in run.data["configurations"].values():
        for seed in entry["runs"]:
            return str(seed.get("positive_class"))
    return "?"


def _bench_validity():
    """``benchmarks/bench_validity.py`` (its difference from the defaults' seeds)."""
    spec = importlib.util.spec_from_file_location(
        "bench_validity", ROOT / "benchmarks" / "bench_validity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def watch_page(runs: list[Run]) -> list[str]:
    """``bench_watch.py``: slides a second through ``histotile watch`` against ``run``."""
    lines = [RUN_HEADER + "| slides | slide px | run: slides/s | watch: slides/s | "
             "watch x run |", RUN_RULE + "|---:|---|---:|---:|---:|"]
    for run in runs:
        d = run.data
        lines.append(run.cells() + f"| {d['slides']} | {d['slide_px'][0]} x {d['slide_px'][1]}"
                     f" | {d['slides_per_s']['run']:.2f} | {d['slides_per_s']['watch']:.2f} | "
                     f"{d['watch_over_run_throughput']:.2f}x |")
    return lines


def demo_page(runs: list[Run]) -> list[str]:
    """``histotile demo``'s own summary (the committed copy of one run): the run, then its
    metrics on the cross-validation, the held-out test split and every predicted tile."""
    lines = ["`docs/generated/demo-summary.json` is the `summary.json` of the demo run that made "
             "the documentation's pictures; `make docs-images` runs the demo again and "
             "replaces both.", "",
             RUN_HEADER + "| time (s) | tiles: tiled, trained, region groups, predicted |",
             RUN_RULE + "|---:|---|"]
    for run in runs:
        f = run.data["figures"]
        tiles = f.get("tiles", {})
        lines.append(run.cells() + f"| {f.get('seconds', 0):.1f} | " + ", ".join(
            str(tiles.get(k, "")) for k in ("tiled", "trained", "region_groups", "predicted"))
            + " |")
    for run in runs:
        f = run.data["figures"]
        cv, test = f.get("cross_validation", {}), f.get("test", {})
        against = f.get("against_the_annotation", {})
        lines += ["", f"| `{run.name}`: metric (the positive class's sensitivity and "
                  f"specificity) | cross-validation ({cv.get('folds')} folds: mean ± sd) | "
                  f"held-out test split ({test.get('tiles')} tiles) | every predicted tile "
                  f"against the annotation ({against.get('tiles')} tiles) |",
                  "|---|---|---:|---:|"]
        for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                           ("roc_auc", "AUC"), ("sensitivity", "sensitivity"),
                           ("specificity", "specificity")):
            folds = cv.get(key) or {}
            spread = (f"{folds['mean']:.3f} ± {folds['std']:.3f}"
                      if folds.get("mean") is not None else "")
            lines.append(f"| {label} | {spread} | {_fmt(test.get(key), '.3f')} | "
                         f"{_fmt(against.get(key), '.3f')} |")
        decision = f.get("slide_decision")
        if decision:
            lines += ["", f"Slide decision of `{run.name}`: "
                      f"{'positive' if decision['positive'] else 'negative'}, "
                      f"{decision['fraction_positive']:.1%} of the tiles at or above the "
                      f"tile threshold {decision['tile_threshold']:.3f} (the model card's)."]
    return lines


def image_page(runs: list[Run]) -> list[str]:
    """``benchmarks/image_size.py``: the OCI image's size and its largest distributions."""
    lines = [RUN_HEADER + "| image | image MB | venv MB | outside the venv MB | largest (MB) |",
             RUN_RULE + "|---|---:|---:|---:|---|"]
    for run in runs:
        d = run.data
        largest = ", ".join(f"{name} {mb}" for name, mb in list(d["largest_mb"].items())[:5])
        lines.append(run.cells() + f"| {d['image']} | {d['image_mb']} | {d['venv_mb']} | "
                     f"{d['outside_venv_mb']} | {largest} |")
    return lines


@dataclass(frozen=True)
class Benchmark:
    """A page: which results files are this benchmark's, and how its table is made."""

    slug: str
    title: str
    source: str  # the command that writes its results files
    recognise: Callable[[dict], bool]
    render: Callable[[list[Run]], list[str]]


BENCHMARKS = (
    Benchmark("pipeline", "The whole pipeline", "histotile bench",
              lambda d: "measurements" in d, pipeline_page),
    Benchmark("validity", "Held-out patients", "benchmarks/bench_validity.py",
              lambda d: d.get("benchmark") == "validity", validity_page),
    Benchmark("engines", "Inference engines", "benchmarks/bench_engines.py",
              lambda d: "results" in d and "threads" in d.get("machine", {}), engines_page),
    Benchmark("engine-ceiling", "The CPU's ceiling for inference",
              "benchmarks/bench_engine_ceiling.py", lambda d: "ceiling_gflops" in d,
              ceiling_page),
    Benchmark("training", "Training beyond one process", "benchmarks/bench_training.py",
              lambda d: "results" in d and "folds" in d, training_page),
    Benchmark("serve", "The web service", "benchmarks/bench_serve.py",
              lambda d: "tiles" in d and "size" in d, serve_page),
    Benchmark("watch", "Watching a folder", "benchmarks/bench_watch.py",
              lambda d: "watch_over_run_throughput" in d, watch_page),
    Benchmark("image", "The container image", "benchmarks/image_size.py",
              lambda d: "image_mb" in d, image_page),
)
DEMO = Benchmark("demo", "The demo", "histotile demo",
                 lambda d: d.get("command") == "histotile demo", demo_page)


def kind(data: dict) -> Benchmark | None:
    """The benchmark that wrote ``data`` (None: a results file no page knows)."""
    return next((b for b in BENCHMARKS if b.recognise(data)), None)


def results(folder: Path = RESULTS) -> dict[str, list[Run]]:
    """The runs of every results file under ``folder``, by benchmark, oldest first (by the
    date each recorded, then by name)."""
    found: dict[str, list[Run]] = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        benchmark = kind(data)
        if benchmark is None:
            raise ValueError(f"{path}: a results file no benchmark page recognises (add its "
                             "kind to BENCHMARKS in scripts/docs_benchmarks.py)")
        found.setdefault(benchmark.slug, []).append(describe(path, data))
    return {slug: sorted(runs, key=lambda run: (run.date, run.name))
            for slug, runs in found.items()}


def page(benchmark: Benchmark, runs: list[Run]) -> str:
    """One benchmark's page: its title, where it comes from, the table."""
    files = ", ".join(f"`{run.name}.json`" for run in runs)
    lines = [f"# {benchmark.title}", "",
             f"Generated from {files} (written by `{benchmark.source}`); how it measures "
             "and what it cannot say: [Benchmarks](index.md).", ""]
    return "\n".join(lines + _once_per_run(benchmark.render(runs), runs)) + "\n"


def _once_per_run(lines: list[str], runs: list[Run]) -> list[str]:
    """The run's cell on the first of its consecutive rows only (the others left blank)."""
    cells = [run.cells() for run in runs]
    out, previous = [], None
    for line in lines:
        cell = next((c for c in cells if line.startswith(c)), None)
        out.append("| " + line[len(cell):] if cell is not None and cell == previous else line)
        previous = cell
    return out


def pages(folder: Path = RESULTS, demo: Path = DEMO_SUMMARY) -> dict[str, str]:
    """``benchmarks/<slug>.md`` -> the page's Markdown, for every benchmark with a run
    (and the demo, when its summary is committed)."""
    found = results(folder)
    made = {f"benchmarks/{b.slug}.md": page(b, found[b.slug])
            for b in BENCHMARKS if b.slug in found}
    if demo.is_file():
        run = describe(demo, json.loads(demo.read_text(encoding="utf-8")))
        made[f"benchmarks/{DEMO.slug}.md"] = page(DEMO, [run])
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a folder for the pages")
    args = parser.parse_args()
    for name, text in pages().items():
        target = args.out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(target)


if __name__ == "__main__":
    main()
