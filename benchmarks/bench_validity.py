"""Does a model trained with the command line's defaults hold up on patients it never saw?

The data: real H&E patches of invasive ductal carcinoma (IDC) against everything else, 50 x
50 px from 140 patients (``../shared/data/idc-dev``, read its README; never copied into the
project and never used by a test). The benchmark lays the patches out as a lab would, one
folder per class with the natural names ``idc/`` and ``non_idc/`` (symbolic links in a
temporary folder), and runs the command line with its defaults and only what a lab must
say about its data::

    histotile train VIEW --out MODEL --group-by patient \\
        --group-pattern '^(?P<group>[0-9]+)_' --positive-class idc --seed S

Everything is grouped by patient: the 4 cross-validation folds, and the held-out test split
(20 % of the patients), which is used for nothing but the figures below: the operating
point comes from the folds' pooled out-of-fold predictions, the final model is the fold
ensemble. Each seed draws another test split of patients; the table gives each seed's
figures and their mean. Every figure is recomputed here with scikit-learn from the model
folder's ``predictions_oof.csv`` at the model card's threshold, not read from the card.

``--ablation`` trains once more per seed with each part of the recipe off in turn (class
balance, schedule, colour augmentation, early stopping on balanced accuracy, the fold
ensemble) and with the network of the previous default (LeNet).

Run: ``.venv/bin/python benchmarks/bench_validity.py [--seeds 0 1 2] [--ablation]
[--out benchmarks/results/NAME.json]``. A tool, not a test: each run trains for minutes.
``--add-to FILE`` adds the configurations FILE lacks to it (the ablation beside an earlier
run of the defaults), rewriting FILE after each configuration, so a stopped run resumes; each
configuration records its own start and machine load. The documentation's page of held-out
figures is generated from the results files (``scripts/docs_benchmarks.py``): commit the
file and the next docs build shows it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "idc-dev"
POSITIVE, NEGATIVE = "idc", "non_idc"
PATIENT_PATTERN = r"^(?P<group>[0-9]+)_"
PUBLISHED = [
    {"model": "Cruz-Roa et al. 2014 (3-layer CNN, full set)", "balanced_accuracy": 0.842,
     "f1": 0.718},
    {"model": "Janowczyk & Madabhushi 2016 (AlexNet, full set)", "balanced_accuracy": 0.847,
     "f1": 0.765},
]
ABLATION = {
    "defaults": [],
    "no class balance": ["--balance", "none"],
    "constant learning rate": ["--schedule", "constant"],
    "no colour augmentation": ["--augment", "flip"],
    "early stopping on loss": ["--monitor", "loss"],
    "retrained final model": ["--final", "retrain"],
    "previous default network (lenet)": ["--model", "lenet", "--tile-size", "64"],
}


def class_view(data: Path, folder: Path) -> tuple[Path, int]:
    """``folder/idc`` and ``folder/non_idc`` of links to the set's patches
    (``<patient>/<0|1>/<patient>_idx5_x.._y.._class<0|1>.png``); the number linked."""
    count = 0
    for label, name in (("1", POSITIVE), ("0", NEGATIVE)):
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        for image in sorted(data.glob(f"*/{label}/*.png")):
            (target / image.name).symlink_to(image)
            count += 1
    return folder, count


def figures(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Balanced accuracy, AUC, F1, sensitivity and specificity of IDC at ``threshold``
    (scikit-learn's definitions)."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score, roc_auc_score

    called = (p >= threshold).astype(int)
    return {"threshold": float(threshold),
            "balanced_accuracy": float(balanced_accuracy_score(y, called)),
            "auc": float(roc_auc_score(y, p)), "f1": float(f1_score(y, called)),
            "sensitivity": float(recall_score(y, called)),
            "specificity": float(recall_score(1 - y, 1 - called)),
            "tiles": int(y.size), "positives": int(y.sum())}


def card_threshold(card: dict) -> float:
    """The positive-class threshold the model card records (0.5 when it records none)."""
    point = card.get("operating_point") or {}
    return float(point.get("threshold", 0.5))


def train_once(view: Path, out: Path, seed: int, extra: list[str]) -> dict:
    """One command-line training run, and its held-out figures."""
    command = [sys.executable, "-m", "histotile", "train", str(view), "--out", str(out),
               "--group-by", "patient", "--group-pattern", PATIENT_PATTERN,
               "--positive-class", POSITIVE, "--seed", str(seed), *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"training failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                         f"{done.stderr[-3000:]}")
    card = json.loads((out / "model_card.json").read_text())
    frame = pd.read_csv(out / "predictions_oof.csv")
    test = frame[frame["part"] == "test"]
    folds = frame[frame["part"].str.startswith("fold")]
    y = (test["label"] == POSITIVE).to_numpy(int)
    p = test[f"prob_{POSITIVE}"].to_numpy(float)
    threshold = card_threshold(card)
    return {"seed": seed, "flags": extra, "seconds": round(seconds, 1),
            "test_patients": int(test["group"].nunique()),
            "development_patients": int(folds["group"].nunique()),
            "positive_class": card.get("positive_class")
            or (card.get("training") or {}).get("positive_class"),
            "operating_point": figures(y, p, threshold),
            "at_0.5": figures(y, p, 0.5),
            "cross_validation": figures((folds["label"] == POSITIVE).to_numpy(int),
                                        folds[f"prob_{POSITIVE}"].to_numpy(float),
                                        threshold)}


def summarise(runs: list[dict], key: str) -> dict[str, float]:
    names = ("balanced_accuracy", "auc", "f1", "sensitivity", "specificity")
    return {name: float(np.mean([r[key][name] for r in runs])) for name in names} | {
        f"{name}_sd": float(np.std([r[key][name] for r in runs], ddof=1))
        if len(runs) > 1 else 0.0 for name in names}


def table(results: dict) -> str:
    lines = ["| configuration | seeds | balanced accuracy | AUC | F1 | sensitivity (idc) | "
             "specificity (idc) | Δ balanced accuracy, Δ AUC vs defaults (same seeds) | "
             "minutes per run | load at start |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in results["configurations"].items():
        m = entry["held_out"]
        minutes = np.mean([r["seconds"] for r in entry["runs"]]) / 60
        load = entry.get("load_before", results["machine"]["load_before"])[0]
        spread = len(entry["runs"]) > 1  # one run has no spread to show
        ba = f"{m['balanced_accuracy']:.3f}" + (
            f" ± {m['balanced_accuracy_sd']:.3f}" if spread else "")
        auc = f"{m['auc']:.3f}" + (f" ± {m['auc_sd']:.3f}" if spread else "")
        lines.append(f"| {name} | {len(entry['runs'])} | {ba} | {auc} "
                     f"| {m['f1']:.3f} | {m['sensitivity']:.3f} | {m['specificity']:.3f} "
                     f"| {versus_defaults(results, entry)} | {minutes:.1f} | {load:.1f} |")
    for paper in PUBLISHED:
        lines.append(f"| {paper['model']} | | {paper['balanced_accuracy']:.3f} | | "
                     f"{paper['f1']:.3f} | | | | | |")
    return "\n".join(lines)


def versus_defaults(results: dict, entry: dict) -> str:
    """How far a configuration's held-out balanced accuracy and AUC are from the defaults'
    runs with the same seeds (the seed draws the test patients, so only those compare)."""
    defaults = {r["seed"]: r for r in results["configurations"].get("defaults", {})
                .get("runs", [])}
    pairs = [(r, defaults[r["seed"]]) for r in entry["runs"] if r["seed"] in defaults]
    if not pairs or entry is results["configurations"].get("defaults"):
        return ""
    delta = {name: np.mean([a["operating_point"][name] - b["operating_point"][name]
                            for a, b in pairs]) for name in ("balanced_accuracy", "auc")}
    # + 0.0 turns a rounded -0.0 into 0.0 (no "-0.000" in the table)
    ba, auc = (round(float(delta[k]), 3) + 0.0 for k in ("balanced_accuracy", "auc"))
    return f"{ba:+.3f}, {auc:+.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ablation", action="store_true")
    parser.add_argument("--only", nargs="+", default=None,
                        help="configurations to run (names of the ablation table)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--add-to", type=Path, default=None,
                        help="a results file to add the configurations it lacks to")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the model folders in this folder (default: deleted)")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no such folder (the IDC development set)")
    names = args.only or (list(ABLATION) if args.ablation else ["defaults"])
    started = dt.datetime.now(dt.timezone.utc)
    if args.add_to:
        results = json.loads(args.add_to.read_text())
        names = [name for name in names if name not in results["configurations"]]
    else:
        results = {"benchmark": "validity", "started": started.isoformat(timespec="seconds"),
                   "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                               "load_before": os.getloadavg()},
                   "data": str(args.data), "published": PUBLISHED, "configurations": {}}
    out = args.add_to or args.out or (
        HERE / "results" / f"{started:%Y-%m-%d}-2core-cpu-validity.json")
    with tempfile.TemporaryDirectory(prefix="histotile-validity-") as temporary:
        work = args.keep or Path(temporary)
        view, count = class_view(args.data, Path(work) / "view")
        results["data_patches"] = count
        for name in names:
            results["configurations"][name] = run_configuration(name, args.seeds, view, work)
            save(results, out)
    finished = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    if not args.add_to:
        results["machine"]["load_after"] = os.getloadavg()
        results["finished"] = finished
    elif names:  # the first run's own end stays as it was; each addition records its own
        results.setdefault("added", []).append(
            {"configurations": names, "finished": finished, "load_after": os.getloadavg()})
    save(results, out)
    print(results["table"])
    print(f"written {out}")


def run_configuration(name: str, seeds: list[int], view: Path, work: Path) -> dict:
    """Train one configuration of :data:`ABLATION` once per seed; its runs and summaries."""
    entry = {"flags": ABLATION[name],
             "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "load_before": os.getloadavg(), "runs": []}
    for seed in seeds:
        out = Path(work) / f"model-{name.replace(' ', '-')}-{seed}"
        run = train_once(view, out, seed, ABLATION[name])
        entry["runs"].append(run)
        m = run["operating_point"]
        print(f"{name}, seed {seed}: balanced accuracy {m['balanced_accuracy']:.3f}, "
              f"AUC {m['auc']:.3f} (threshold {m['threshold']:.2f}; "
              f"{run['seconds'] / 60:.1f} min)", flush=True)
    runs = entry["runs"]
    return entry | {"held_out": summarise(runs, "operating_point"),
                    "held_out_at_0.5": summarise(runs, "at_0.5"),
                    "cross_validation": summarise(runs, "cross_validation")}


def save(results: dict, out: Path) -> None:
    """Write the results with their table, atomically (a stopped run leaves the last one)."""
    results["table"] = table(results)
    partial = out.with_suffix(".json.partial")
    partial.write_text(json.dumps(results, indent=1) + "\n")
    partial.replace(out)


if __name__ == "__main__":
    main()
