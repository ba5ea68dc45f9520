"""Inference engines behind :class:`histotile.models.Predictor`.

An engine turns uint8 RGB tiles into class probabilities. ``torch`` and ``mxnet`` run the
network of the framework that trained it (:class:`~histotile.models.torch_backend.
TorchRunner`, :class:`~histotile.models.mxnet_backend.MXNetRunner`); ``onnxruntime`` runs
the same torch network exported to ONNX (on the CPU, or with ONNX Runtime's CUDA provider
when that is installed); ``onnxruntime-int8`` runs it quantised to 8-bit integers (an
explicit choice, never the default: it changes the probabilities slightly); ``torchscript``
runs a file written by ``histotile export --format torchscript``.

``auto`` picks the fastest engine installed for the device from :data:`FASTEST`, a table
of measurements. It never falls back silently: an engine that was asked for and cannot run
is an error that says what to install or choose instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from histotile.errors import ModelError
from histotile.models.backends import BACKENDS, load_backend
from histotile.models.runtimes import (
    INSTALL_ONNX,
    MXNET_ONNX,
    ONNX_MODULES,
    Engine,
    OnnxRuntimeEngine,
    TorchScriptEngine,
    device_kind,
    onnx_installed,
)

__all__ = ["ENGINES", "FASTEST", "INSTALL_ONNX", "MXNET_ONNX", "ONNX_MODULES", "Engine",
           "EngineName", "OnnxRuntimeEngine", "TorchScriptEngine", "choose_engine", "load_engine",
           "onnx_installed"]

EngineName = Literal["auto", "torch", "mxnet", "onnxruntime", "onnxruntime-int8"]
"""An engine a model folder accepts (an exported file runs on its own format's): ``auto``,
a training backend's own (:data:`~histotile.models.backends.BACKENDS`), or ONNX Runtime."""
ENGINES: tuple[str, ...] = get_args(EngineName)
"""The names of :data:`EngineName`, in order (the CLI's choices)."""

# The fastest engine per device and registry model, measured with
# benchmarks/bench_engines.py on 2 x86_64 cores, 2026-11-30 01:02, quiet machine (load
# average 1.2), 128-px tiles, batch 64, best of 3 interleaved rounds, tiles/s with uint8
# tiles in and probabilities out (benchmarks/results/2026-11-30-2core-cpu-engines-quiet.json):
#   model           torch eager  torch channels-last  onnxruntime  (int8)
#   lenet                   172                  305          333     500
#   squeezenet              170                  354          596     614
#   resnet18                 98                  115          151     319
#   alexnet                 182                  291          305     460
#   shufflenet_v2           299                  469          551     438
# "torch" is histotile's torch engine (channels-last): onnxruntime is ahead for every model
# (ShuffleNet V2 was behind in an earlier run under a load of 12-17, ahead here; it follows
# the quiet run). On CUDA nothing was measured here (no GPU): torch with fp16 autocast
# stays the choice. int8 is faster still but changes the probabilities (up to about 1e-2
# here), so auto never picks it.
FASTEST: dict[str, dict[str, str]] = {
    "cpu": {"lenet": "onnxruntime", "squeezenet": "onnxruntime", "resnet18": "onnxruntime",
            "alexnet": "onnxruntime", "shufflenet_v2": "onnxruntime"},
    "cuda": {},
}
def choose_engine(engine: str, card: dict[str, Any], device: str | None,
                  source: Path) -> str:
    """The engine that will run: ``engine`` checked against the model and what is
    installed, or for ``auto`` the fastest installed one in :data:`FASTEST`."""
    backend = str(card.get("backend"))
    if engine not in ENGINES:
        raise ModelError(f"engine={engine!r}: unknown engine (choose one of "
                         f"{', '.join(ENGINES)})")
    if engine == "auto":
        if backend != "torch":
            return backend  # MXNet models run on MXNet (see MXNET_ONNX)
        fastest = FASTEST.get(device_kind(device), {}).get(str(card.get("architecture")))
        return fastest if fastest is not None and onnx_installed() else "torch"
    if engine in BACKENDS and engine != backend:
        raise ModelError(f"{source}: the model was trained with {backend}, so engine="
                         f"{engine!r} cannot run it; use engine={backend!r} or 'auto'")
    if engine.startswith("onnxruntime"):
        if backend != "torch":
            raise ModelError(f"{source}: engine={engine!r} runs torch models only: "
                             f"{MXNET_ONNX}; use engine={backend!r}")
        if not onnx_installed():
            raise ModelError(f"engine={engine!r} needs the optional onnx extra: "
                             f"{INSTALL_ONNX}; or use engine='torch'")
    return engine


def load_engine(path: Path, engine: str, device: str | None
                ) -> tuple[dict[str, Any], Engine]:
    """The model card and a ready engine for a model folder, or for a file written by
    ``histotile export`` (``.onnx`` or TorchScript ``.pt``)."""
    if path.is_file():
        return _exported(path, engine, device)
    from histotile.models.card import read_card

    card = read_card(path)
    name = choose_engine(engine, card, device, path)
    if name in BACKENDS:  # the network of the framework that trained it
        return card, load_backend(name).load(card, path, device)
    from histotile.models.export import cached_onnx

    onnx_path = cached_onnx(path, card, int8=name == "onnxruntime-int8")
    return card, OnnxRuntimeEngine(onnx_path, device, name=name)


def _exported(path: Path, engine: str, device: str | None) -> tuple[dict[str, Any], Engine]:
    """An exported file: ONNX runs on onnxruntime, TorchScript on torch."""
    if path.suffix.lower() == ".onnx":
        if engine not in ("auto", "onnxruntime", "onnxruntime-int8"):
            raise ModelError(f"{path}: an exported ONNX model runs on onnxruntime, not "
                             f"engine={engine!r}; use engine='auto'")
        if not onnx_installed():
            raise ModelError(f"{path}: running an ONNX model needs the optional onnx extra: "
                             f"{INSTALL_ONNX}")
        runner = OnnxRuntimeEngine(path, device)
        if runner.card.get("export", {}).get("quantisation"):
            runner.name = "onnxruntime-int8"
        return runner.card, runner
    if engine not in ("auto", "torch"):
        raise ModelError(f"{path}: an exported TorchScript model runs on torch, not "
                         f"engine={engine!r}; use engine='auto'")
    script = TorchScriptEngine(path, device)
    return script.card, script
