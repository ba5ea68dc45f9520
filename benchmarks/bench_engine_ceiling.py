"""How far float32 inference can go on this CPU: each registry model's arithmetic per tile,
the machine's measured float32 rate, and the engines' rates against both.

A convolutional network's forward pass is almost all multiply-adds (onnxruntime's
profiler puts ResNet18's convolutions at 94 % of its time). So no float32 engine can
run a network faster than ``peak / flops_per_tile`` tiles a second, where ``peak`` is the
machine's float32 rate. This measures:

* flops per tile: every Conv2d and Linear multiply-add of the network at the tile size
  (counted by forward hooks on the real registry network), x2 (a multiply and an add);
* the float32 ceiling: the best of ``--rounds`` large matrix products (4096 x 4096, as
  many threads as histotile uses) by torch, numpy and onnxruntime: the most a BLAS gets
  from these cores. A convolution is a matrix product (im2col or direct) of smaller,
  awkwarder shapes, so no direct float32 convolution kernel beats it (a Winograd or FFT
  convolution does fewer multiplications, and none of the engines here uses one on CPU);
* eager torch and onnxruntime fp32 rates, as in ``bench_engines.py`` (best of
  interleaved rounds), as GFLOP/s and as shares of the ceiling; and the ratio to eager
  that the ceiling allows at most.

Run: ``.venv/bin/python benchmarks/bench_engine_ceiling.py [--models resnet18 squeezenet]``;
writes ``benchmarks/results/<date>-<cores>core-cpu-engine-ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_engines import TILE, engine, model_folder, sample_tiles

HERE = Path(__file__).resolve().parent


def flops_per_tile(folder: Path) -> float:
    """Multiply-adds x 2 of one tile's forward pass: every Conv2d (output elements x
    input channels per group x kernel area) and Linear (in x out)."""
    import torch

    from histotile.models.card import read_card
    from histotile.models.torch_nets import build

    card = read_card(folder)
    model = build(card["architecture"], len(card["classes"]), int(card["tile_size"])).eval()
    macs = [0]

    def conv(module, _inputs, output) -> None:
        kernel = module.kernel_size[0] * module.kernel_size[1]
        macs[0] += output.numel() * (module.in_channels // module.groups) * kernel

    def linear(module, _inputs, output) -> None:
        macs[0] += output.numel() * module.in_features

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(conv)
        elif isinstance(module, torch.nn.Linear):
            module.register_forward_hook(linear)
    with torch.no_grad():
        model(torch.zeros(1, 3, int(card["tile_size"]), int(card["tile_size"])))
    return 2.0 * macs[0]


def matmul_rates(rounds: int, side: int = 4096) -> dict[str, float]:
    """float32 GFLOP/s of the best of ``rounds`` ``side`` x ``side`` products by each
    BLAS at hand: torch's, numpy's (OpenBLAS) and onnxruntime's (MLAS, the one its
    convolutions use), each with histotile's threads."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper

    from histotile._threads import thread_budget

    rng = np.random.default_rng(0)
    a = rng.standard_normal((side, side), dtype=np.float32)
    b = rng.standard_normal((side, side), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [side, side]) for n in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [side, side])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    options = ort.SessionOptions()
    options.intra_op_num_threads = thread_budget()
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    products = {"torch.mm": lambda: torch.mm(ta, tb), "numpy matmul": lambda: a @ b,
                "onnxruntime MatMul": lambda: session.run(None, {"a": a, "b": b})}
    best = dict.fromkeys(products, float("inf"))
    for _ in range(rounds):
        for name, product in products.items():
            started = time.perf_counter()
            product()
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: 2.0 * side**3 / seconds / 1e9 for name, seconds in best.items()}


def engine_rates(architecture: str, rounds: int, batches: int,
                 batch_size: int) -> dict[str, float]:
    """tiles/s of torch eager and onnxruntime fp32, best of interleaved rounds."""
    tiles = sample_tiles(batches * batch_size)
    engines = {name: engine(name, architecture, "cpu", tiles[:batch_size])
               for name in ("torch eager", "onnxruntime fp32")}
    for runner in engines.values():
        runner.predict(tiles[:batch_size], batch_size)  # warm up
    best = dict.fromkeys(engines, float("inf"))
    for _ in range(rounds):
        for name, runner in engines.items():
            started = time.perf_counter()
            runner.predict(tiles, batch_size)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: len(tiles) / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet18", "squeezenet", "lenet"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    import torch

    from histotile._threads import thread_budget

    torch.set_num_threads(thread_budget())
    load = os.getloadavg()
    products = matmul_rates(args.rounds)
    rows = {}
    for architecture in args.models:
        flops = flops_per_tile(model_folder(architecture))
        rates = engine_rates(architecture, args.rounds, args.batches, args.batch_size)
        rows[architecture] = {"gflop_per_tile": flops / 1e9, "tiles_per_s": rates}
        # again between models: the best each BLAS reached
        products = {k: max(v, products[k]) for k, v in matmul_rates(2).items()}
    peak = max(products.values())
    print(f"float32 ceiling ({thread_budget()} threads, best 4096^2 product): {peak:.0f} "
          "GFLOP/s (" + ", ".join(f"{k} {v:.0f}" for k, v in products.items()) + ")")
    print("| model | GFLOP/tile | ceiling tiles/s | engine | tiles/s | GFLOP/s | of ceiling "
          "| x eager |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for architecture, row in rows.items():
        flops = row["gflop_per_tile"]
        ceiling = peak / flops
        eager = row["tiles_per_s"]["torch eager"]
        row["ceiling_tiles_per_s"] = ceiling
        row["most_x_eager"] = ceiling / eager
        for name, rate in row["tiles_per_s"].items():
            print(f"| {architecture} | {flops:.3f} | {ceiling:,.0f} | {name} | {rate:,.0f} | "
                  f"{rate * flops:.0f} | {rate / ceiling:.0%} | {rate / eager:.2f}x |")
        print(f"| {architecture} | | | *ceiling* | {ceiling:,.0f} | {peak:.0f} | 100% | "
              f"{ceiling / eager:.2f}x |")
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                          "load_before": load, "load_after": os.getloadavg()},
              "tile": TILE, "batch_size": args.batch_size, "matmul_gflops": products,
              "ceiling_gflops": peak,
              "models": rows}
    cores = len(os.sched_getaffinity(0))
    out = HERE / "results" / f"{datetime.now():%Y-%m-%d}-{cores}core-cpu-engine-ceiling.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load {load[0]:.1f} -> {os.getloadavg()[0]:.1f}; written {out}")


if __name__ == "__main__":
    main()
