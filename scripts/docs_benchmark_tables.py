"""The tables of the benchmark pages, one renderer per benchmark: a results file's runs
(:class:`~docs_benchmark_runs.Run`) -> the Markdown lines of its table. Part of
``scripts/docs_benchmarks.py``, which decides which file is whose."""

from __future__ import annotations

import importlib.util
from typing import Any

from docs_benchmark_runs import (
    RESULTS,
    ROOT,
    RUN_HEADER,
    RUN_RULE,
    Run,
    load_average,
)


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "" if value is None else format(value, spec)


def _ratio(value: float) -> str:
    """A ratio to a baseline, with a third decimal where two would round it to nothing."""
    return f"{value:.2f}x" if value >= 0.05 else f"{value:.3f}x"


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
            load = load_average(entry.get("load_before"))
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


# The per-stage scripts (``benchmarks/_results.py`` writes their results files): each row
# with its same-run baseline and the ratio to it, as the script printed them.


def cli_page(runs: list[Run]) -> list[str]:
    """``bench_cli.py``: start-up times against a bare Python start in the same run."""
    lines = [RUN_HEADER + "| command | median (s) | x `python -c pass` | target |",
             RUN_RULE + "|---|---:|---:|---|"]
    for run in runs:
        for row in run.data["rows"]:
            target = f"< {row['target_s']:g} s" if row.get("target_s") else ""
            lines.append(run.cells() + f"| {row['command']} | {row['median_s']:.3f} "
                         f"| {row['ratio']:.1f}x | {target} |")
    return lines + ["", "Each figure is the median of several starts in a fresh process: "
                    + "; ".join(f"`{run.name}`: {run.data['repeats']}" for run in runs) + "."]


def workflows_page(runs: list[Run]) -> list[str]:
    """``bench_workflows.py``: ``run_batch`` on a local Dask cluster, 1 worker against 2."""
    lines = [RUN_HEADER + "| slides, tissue tiles | local cluster | seconds | speed-up vs 1 "
             "worker (target) | same results |", RUN_RULE + "|---|---|---:|---:|---|"]
    for run in runs:
        d = run.data
        what = (f"{d['slides']} of {d['slide_px'][0]:,} x {d['slide_px'][1]:,} px, "
                f"{d['tiles']:,} tiles, {d['model']}")
        for row in d["rows"]:
            target = "" if row["baseline"] else f" (≥ {d['target_speed_up']:g}x)"
            workers = f"{row['workers']} worker{'s' if row['workers'] > 1 else ''}"
            baseline = " (baseline)" if row["baseline"] else ""
            lines.append(run.cells() + f"| {what} | {workers} x {row['threads_per_worker']} "
                         f"thread{baseline} | {row['seconds']:.1f} | "
                         f"{row['speed_up']:.2f}x{target} | "
                         f"{'identical' if d['identical'] else 'DIFFER'} |")
    return lines


def models_page(runs: list[Run]) -> list[str]:
    """``bench_models.py``: training and inference through histotile against the bare
    network, then (where the run made it) the LeNet backends side by side."""
    lines = [RUN_HEADER + "| model, backend | train tiles/s: pipeline, bare | train: "
             "pipeline x bare | inference tiles/s: Predictor, bare | inference: Predictor x "
             "bare (target ≥ 0.8) |", RUN_RULE + "|---|---:|---:|---:|---:|"]
    for run in runs:
        for r in run.data["rows"]:
            lines.append(run.cells() + f"| {r['model']}, {r['backend']} | "
                         f"{r['train_pipeline_per_s']:.0f}, {r['train_bare_per_s']:.0f} | "
                         f"{r['train_ratio']:.2f}x | {r['inference_pipeline_per_s']:.0f}, "
                         f"{r['inference_bare_per_s']:.0f} | {r['inference_ratio']:.2f}x |")
    lines += ["", "Bare: " + "; ".join(f"`{run.name}`: {run.data['baseline']}"
                                       + (" (`--quick`)" if run.data.get("quick") else "")
                                       for run in runs) + ". Training: the pipeline's "
              "fastest epoch against the bare network's fastest round. Inference: medians "
              "over rounds alternating the bare network and the Predictor; the ratio is the "
              "median of the rounds' own ratios."]
    for run in runs:
        if run.data.get("backends"):
            lines += ["", f"| `{run.name}`: LeNet backend (same tiles, seed and Adam "
                      "settings) | epochs | s/epoch | train tiles/s | test accuracy | test ROC "
                      "AUC | test loss |", "|---|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {b['backend']} | {b['epochs']} | {b['seconds_per_epoch']:.2f} | "
                      f"{b['train_per_s']:.0f} | {b['accuracy']:.3f} | {b['roc_auc']:.3f} | "
                      f"{b['loss']:.3f} |" for b in run.data["backends"]]
    return lines


def stain_page(runs: list[Run]) -> list[str]:
    """``bench_stain.py``: accuracy on a stain-shifted copy of the test tiles per case, then
    each run's prediction speed with a normaliser against the same network without."""
    lines = [RUN_HEADER + "| case (training) | accuracy, test tiles | accuracy, "
             "stain-shifted copy | stain fallbacks |", RUN_RULE + "|---|---:|---:|---:|"]
    for run in runs:
        for case in run.data["cases"]:
            lines.append(run.cells() + f"| {case['case']} | {case['accuracy']:.3f} | "
                         f"{case['accuracy_shifted']:.3f} | {case['stain_fallbacks']} |")
    for run in runs:
        d = run.data
        lines += ["", f"`{run.name}`" + (" (`--quick`)" if d["quick"] else "")
                  + f": trained on {d['patients']} patients for {d['epochs']} epochs, tested "
                  f"on {d['test_tiles']} tiles of other patients. Prediction with each "
                  "normaliser against the same network without it (the baseline), in "
                  "interleaved rounds:", "",
                  "| network, tile px | what | normaliser | with | without | speed with x "
                  "without |", "|---|---|---|---:|---:|---:|"]
        lines += [f"| {r['network']}, {r['tile']} | {r['tiles']} | {r['normaliser']} | "
                  f"{r['with_per_s']:,.0f} tiles/s | {r['without_per_s']:,.0f} tiles/s | "
                  f"{r['ratio']:.2f}x |" for r in d["prediction"]]
        lines += [f"| {r['network']}, {r['tile']} | whole slide, {r['slide_px'][0]:,} px "
                  f"square, {r['tiles']:,} tiles | {r['normaliser']} | {r['with_s']:.2f} s | "
                  f"{r['without_s']:.2f} s | {r['ratio']:.2f}x |" for r in d["slides"]]
    return lines


def tiling_page(runs: list[Run]) -> list[str]:
    """``bench_tiling.py``: the tiling stage against plain reads of the same blocks."""
    lines = [RUN_HEADER + "| slide, tile px, processes | step | seconds | tiles read/s | x "
             "reads baseline (target ≤ 1.5) | peak RSS (MiB): largest process, all (targets "
             "< 500, < 1024) |",
             RUN_RULE + "|---|---|---:|---:|---:|---|"]
    for run in runs:
        d = run.data
        what = (f"{d['slide_px'][0]:,} x {d['slide_px'][1]:,}, {d['tile']}, {d['workers']}")
        for r in d["rows"]:
            memory = (f"{r['peak_rss_largest_mib']:.0f}, {r['peak_rss_all_mib']:.0f}"
                      if "peak_rss_all_mib" in r else "")
            lines.append(run.cells() + f"| {what} | {r['step']} | {r['seconds']:.2f} | "
                         f"{_fmt(r.get('tiles_per_s'), ',.0f')} | {_ratio(r['ratio'])} | "
                         f"{memory} |")
    return lines


def heatmap_page(runs: list[Run]) -> list[str]:
    """``bench_heatmap.py``: prediction and the heatmap slide against reading level 0."""
    lines = [RUN_HEADER + "| slide, tissue tiles | step | seconds | x read baseline (target "
             "for the heatmap ≤ 2) | peak RSS (MiB) | notes |",
             RUN_RULE + "|---|---|---:|---:|---:|---|"]
    for run in runs:
        d = run.data
        for r in d["rows"]:
            step = r["step"] + (f" (extrapolated from {r['classified']:,} tiles)"
                                if r.get("extrapolated") else "")
            lines.append(run.cells() + f"| {d['slide']}, {d['tissue_tiles']:,} | {step} | "
                         f"{r['seconds']:.1f} | {r['ratio']:.2f}x | {r['peak_rss_mib']:.0f} | "
                         f"{_heatmap_notes(r)} |")
    return lines


def _heatmap_notes(row: dict) -> str:
    """What a row of ``bench_heatmap.py`` measured besides its time."""
    notes = []
    if "tiles_per_s" in row:
        notes.append(f"{row['tiles_per_s']:,.0f} tiles/s")
    if row.get("baseline") and "megapixels" in row:
        notes.append(f"{row['megapixels'] / row['seconds']:,.0f} MP/s")
    if "coloured" in row:
        notes.append(f"{row['levels']} levels, {row['bytes'] / 2**20:,.0f} MiB, "
                     f"{row['coloured']:,} tiles coloured")
    return "; ".join(notes)
