"""Inference engines compared: every registry model x {torch eager, torch channels-last,
onnxruntime fp32, onnxruntime int8, MXNet (LeNet)} on one device, uint8 RGB tiles in,
probabilities out (what :meth:`Predictor.predict` does).

* torch eager: the network in torch's default (contiguous) memory format, normalised
  input, softmax: the baseline every ratio is to.
* torch channels-last: histotile's torch engine (``Predictor(engine="torch")``).
* onnxruntime fp32 / int8: ``Predictor(engine="onnxruntime")`` and the same graph
  quantised statically to int8 (calibrated here on the benchmark tiles: the weights are
  untrained, so this measures speed, not accuracy; see ``histotile export --int8`` for
  accuracy on a real test split).
* MXNet: the Gluon LeNet carrying the torch LeNet's weights (same architecture), so its
  probabilities are comparable.

Rates are the best of ``--rounds`` interleaved rounds (every engine once per round, in
the same process, so a shared machine's load hits them alike); max |diff| is against
torch eager on the same tiles; peak memory is the peak RSS of a separate process that
loads the engine and runs the same batches (``--no-memory`` skips it).

Run: ``.venv/bin/python benchmarks/bench_engines.py [--batches 3 --rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "bench_engines"
TILE = 128
CLASSES = ["normal", "tumour"]
ENGINES = ["torch eager", "torch channels-last", "onnxruntime fp32", "onnxruntime int8",
           "mxnet"]


def model_folder(architecture: str) -> Path:
    from histotile.workflows.benchmark.stages import untrained_model

    return untrained_model(architecture, WORK / architecture, "cpu")


def sample_tiles(count: int, seed: int = 0) -> np.ndarray:
    """H&E-like colours with texture (uint8 RGB), the same every run."""
    rng = np.random.default_rng(seed)
    base = np.array([[225, 190, 210], [150, 80, 160], [90, 40, 120]], np.float32)
    colours = base[rng.integers(0, 3, count)][:, None, None, :]
    noise = rng.normal(0, 25, (count, TILE, TILE, 3)).astype(np.float32)
    return np.clip(colours + noise, 0, 255).astype(np.uint8)


class Eager:
    """The bare network in contiguous memory, the normalisation, softmax."""

    def __init__(self, folder: Path, device: str) -> None:
        import torch

        from histotile.models.card import read_card
        from histotile.models.torch_backend import InputTransform, resolve_device
        from histotile.models.torch_nets import build, read_state_dict

        card = read_card(folder)
        self.device = resolve_device(device)
        model = build(card["architecture"], len(card["classes"]), int(card["tile_size"]))
        model.load_state_dict(read_state_dict(folder / card["weights_file"]))
        self.model = model.to(self.device).eval()
        self.transform = InputTransform(card["input"]["normalisation"], self.device)
        self.torch = torch

    def predict(self, tiles: np.ndarray, batch_size: int) -> np.ndarray:
        torch = self.torch
        parts = []
        with torch.inference_mode():
            for s in range(0, len(tiles), batch_size):
                x = self.transform(tiles[s:s + batch_size]).contiguous()
                parts.append(torch.softmax(self.model(x).float(), 1).cpu().numpy())
        return np.concatenate(parts)


class MXNetLeNet:
    """The Gluon LeNet with the torch LeNet's weights copied in (same layer order)."""

    def __init__(self, folder: Path, device: str) -> None:
        from histotile.models import mxnet_backend
        from histotile.models.card import read_card
        from histotile.models.torch_nets import read_state_dict

        card = read_card(folder)
        mx = mxnet_backend.mx()
        self.ctx = mxnet_backend.resolve_device(device)
        self.net = mxnet_backend.build_lenet(len(card["classes"]), TILE, ctx=self.ctx)
        state = list(read_state_dict(folder / card["weights_file"]).values())
        for param, tensor in zip(self.net.collect_params().values(), state):
            param.set_data(mx.nd.array(tensor.numpy(), ctx=self.ctx))
        self.transform = mxnet_backend._Transform(card["input"]["normalisation"], self.ctx)
        self.mx = mx

    def predict(self, tiles: np.ndarray, batch_size: int) -> np.ndarray:
        parts = [self.mx.nd.softmax(self.net(self.transform(tiles[s:s + batch_size])),
                                    axis=1).asnumpy()
                 for s in range(0, len(tiles), batch_size)]
        return np.concatenate(parts)


def engine(name: str, architecture: str, device: str, calibration: np.ndarray):
    """A ready engine (anything with ``predict(tiles, batch_size)``), or None where the
    combination does not exist (MXNet for models other than LeNet, or no mxnet)."""
    from histotile.models import Predictor

    folder = model_folder(architecture)
    if name == "torch eager":
        return Eager(folder, device)
    if name == "torch channels-last":
        return Predictor(folder, device=device, engine="torch")._runner
    if name == "onnxruntime fp32":
        return Predictor(folder, device=device, engine="onnxruntime")._runner
    if name == "onnxruntime int8":
        from histotile.models import export
        from histotile.models.card import read_card
        from histotile.models.engines import OnnxRuntimeEngine
        from histotile.models.quantise import quantise_onnx

        card = read_card(folder)
        float_path = export.cached_onnx(folder, card)
        int8_path = float_path.with_name(float_path.stem + ".bench-int8.onnx")
        if not int8_path.exists():
            quantise_onnx(float_path, int8_path, calibration)
        return OnnxRuntimeEngine(int8_path, device, name="onnxruntime-int8")
    if name == "mxnet" and architecture == "lenet":
        try:
            return MXNetLeNet(folder, device)
        except Exception as error:  # noqa: BLE001 - optional backend: report and skip
            print(f"(mxnet skipped: {error})")
    return None


def measure(architecture: str, device: str, batches: int, batch_size: int,
            rounds: int) -> dict[str, dict]:
    tiles = sample_tiles(batches * batch_size)
    calibration = sample_tiles(128, seed=1)
    ready = {name: engine(name, architecture, device, calibration) for name in ENGINES}
    ready = {name: e for name, e in ready.items() if e is not None}
    for e in ready.values():  # warm-up: first-call allocations and graph optimisation
        e.predict(tiles[:batch_size], batch_size)
    best = dict.fromkeys(ready, 0.0)
    for _ in range(rounds):
        for name, e in ready.items():
            started = time.perf_counter()
            e.predict(tiles, batch_size)
            best[name] = max(best[name], len(tiles) / (time.perf_counter() - started))
    reference = ready["torch eager"].predict(tiles[:batch_size], batch_size)
    return {name: {"tiles_per_s": best[name], "ratio": best[name] / best["torch eager"],
                   "max_abs_diff": float(np.abs(e.predict(tiles[:batch_size], batch_size)
                                                - reference).max())}
            for name, e in ready.items()}


def peak_memory(architecture: str, name: str, device: str, batches: int,
                batch_size: int) -> float | None:
    """Peak RSS (MiB) of a fresh process that loads one engine and runs the batches."""
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report
    # the parent's peak; the high-water mark of the new process's memory starts afresh.
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_engines as b; "
            f"e = b.engine({name!r}, {architecture!r}, {device!r}, b.sample_tiles(128, 1)); "
            f"e is None and sys.exit(3); e.predict(b.sample_tiles({batches * batch_size}), "
            f"{batch_size}); print([int(l.split()[1]) / 1024 for l in "
            "open('/proc/self/status') if l.startswith('VmHWM')][0])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode != 0:
        return None
    return float(done.stdout.strip().splitlines()[-1])


def table(results: dict[str, dict[str, dict]]) -> str:
    lines = ["| model | engine | tiles/s | x eager | peak RSS MiB | max abs diff |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for architecture, rows in results.items():
        for name, row in rows.items():
            memory = row.get("peak_rss_mib")
            lines.append(f"| {architecture} | {name} | {row['tiles_per_s']:.0f} | "
                         f"{row['ratio']:.2f}x | "
                         f"{'-' if memory is None else f'{memory:.0f}'} | "
                         f"{row['max_abs_diff']:.1e} |")
    return "\n".join(lines)


def main() -> None:
    from histotile._threads import thread_budget
    from histotile.models import available_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=available_models("torch"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, default=3, help="batches per round")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="JSON of every figure")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(thread_budget())
    results = {}
    for architecture in args.models:
        results[architecture] = measure(architecture, args.device, args.batches,
                                        args.batch_size, args.rounds)
        if not args.no_memory:
            for name, row in results[architecture].items():
                row["peak_rss_mib"] = peak_memory(architecture, name, args.device,
                                                  args.batches, args.batch_size)
        print(table({architecture: results[architecture]}), flush=True)
    with open("/proc/loadavg") as load:
        machine = {"platform": platform.platform(), "processor": platform.processor(),
                   "threads": thread_budget(), "device": args.device,
                   "load_average_after": load.read().split()[:3],
                   "date": datetime.now(timezone.utc).isoformat(timespec="minutes"),
                   "batches": args.batches, "batch_size": args.batch_size,
                   "rounds": args.rounds, "tile": TILE,
                   "peak_rss_self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                   / 1024}
    print(f"\n{table(results)}\n\n{json.dumps(machine)}")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
