"""The documentation's benchmark pages, generated from ``benchmarks/results/*.json``.

Each results file is recognised by the keys the benchmark that wrote it records, and each
benchmark gets one page (``docs/benchmarks/<slug>.md``): one table in which every run
says the date, machine and load it recorded, then the run's figures. Nothing on these
pages is typed: a new results file appears on the next build. The docs build calls
:func:`pages` (``docs/hooks/benchmarks.py``); to look at the pages without building::

    python scripts/docs_benchmarks.py --out /tmp/benchmark-pages

The runs are read by ``docs_benchmark_runs.py``, the tables made by
``docs_benchmark_tables.py`` (beside this script). The demo's figures
(``docs/generated/demo-summary.json``, refreshed by ``make docs-images``) get a page here
too.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The pages' parts sit beside this script, which the docs build loads by its path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from docs_benchmark_runs import DEMO_SUMMARY, RESULTS, Run, describe
from docs_benchmark_tables import (
    ceiling_page,
    cli_page,
    demo_page,
    engines_page,
    heatmap_page,
    image_page,
    models_page,
    pipeline_page,
    serve_page,
    stain_page,
    tiling_page,
    training_page,
    validity_page,
    watch_page,
    workflows_page,
)


@dataclass(frozen=True)
class Benchmark:
    """A page: which results files are this benchmark's, and how its table is made."""

    slug: str
    title: str
    source: str  # the command that writes its results files
    recognise: Callable[[dict], bool]
    render: Callable[[list[Run]], list[str]]


def named(slug: str) -> Callable[[dict], bool]:
    """A results file that names its benchmark (``"benchmark": slug``)."""
    return lambda d: d.get("benchmark") == slug


def shaped(test: Callable[[dict], bool]) -> Callable[[dict], bool]:
    """A results file of a benchmark that does not name itself, known by its keys; a file
    that names its benchmark is never taken for another by its shape."""
    return lambda d: "benchmark" not in d and test(d)


BENCHMARKS = (
    Benchmark("pipeline", "The whole pipeline", "histotile bench",
              shaped(lambda d: "measurements" in d), pipeline_page),
    Benchmark("validity", "Held-out patients", "benchmarks/bench_validity.py",
              named("validity"), validity_page),
    Benchmark("engines", "Inference engines", "benchmarks/bench_engines.py",
              shaped(lambda d: "results" in d and "threads" in d.get("machine", {})),
              engines_page),
    Benchmark("engine-ceiling", "The CPU's ceiling for inference",
              "benchmarks/bench_engine_ceiling.py", shaped(lambda d: "ceiling_gflops" in d),
              ceiling_page),
    Benchmark("training", "Training beyond one process", "benchmarks/bench_training.py",
              shaped(lambda d: "results" in d and "folds" in d), training_page),
    Benchmark("serve", "The web service", "benchmarks/bench_serve.py",
              shaped(lambda d: "tiles" in d and "size" in d), serve_page),
    Benchmark("watch", "Watching a folder", "benchmarks/bench_watch.py",
              shaped(lambda d: "watch_over_run_throughput" in d), watch_page),
    Benchmark("image", "The container image", "benchmarks/image_size.py",
              shaped(lambda d: "image_mb" in d), image_page),
    # The per-stage scripts, whose results files (benchmarks/_results.py) name their kind.
    Benchmark("tiling", "The tiling stage", "benchmarks/bench_tiling.py", named("tiling"),
              tiling_page),
    Benchmark("heatmap", "Slide prediction and the heatmap", "benchmarks/bench_heatmap.py",
              named("heatmap"), heatmap_page),
    Benchmark("models", "Models: pipeline against the bare network",
              "benchmarks/bench_models.py", named("models"), models_page),
    Benchmark("workflows", "Slides on a local cluster", "benchmarks/bench_workflows.py",
              named("workflows"), workflows_page),
    Benchmark("cli", "Start-up of the command line", "benchmarks/bench_cli.py",
              named("cli"), cli_page),
    Benchmark("stain", "Stain: normalisation and augmentation", "benchmarks/bench_stain.py",
              named("stain"), stain_page),
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
