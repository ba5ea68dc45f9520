"""The engines that run an exported graph: ONNX Runtime and TorchScript, and the
:class:`Engine` protocol every engine (these, and the backends' runners) follows.

A leaf of the models stage: it imports no other module of it but the torch backend's
device rule (lazily), so :mod:`~histotile.models.engines` (which chooses) and
:mod:`~histotile.models.export` / :mod:`~histotile.models.quantise` (which write the
graphs) both use it without importing each other."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from histotile._threads import thread_budget
from histotile.errors import ModelError

ONNX_MODULES = ("onnx", "onnxruntime")
INSTALL_ONNX = "pip install 'histotile[onnx]' (onnx 1.23, onnxruntime 1.32 with numpy<2)"
MXNET_ONNX = ("MXNet 1.9.1's own ONNX exporter imports onnx.mapping, which onnx 1.16 "
              "removed, so MXNet models do not export with the onnx this installs")


@runtime_checkable
class Engine(Protocol):
    """What :class:`Predictor` needs of an engine.

    Attributes:
        name: the engine's name (one of :data:`ENGINES`, or ``torchscript``).
        device: where it runs (``cpu``, ``cuda:0``, an MXNet context).
    """

    name: str
    device: Any

    def predict(self, tiles: np.ndarray, batch_size: int) -> np.ndarray:
        """uint8 (N, T, T, 3) RGB tiles -> float32 (N, classes) probabilities."""
        ...


def onnx_installed() -> bool:
    """Whether the ``onnx`` extra (onnx and onnxruntime) is importable."""
    return all(importlib.util.find_spec(name) is not None for name in ONNX_MODULES)


def device_kind(device: str | None) -> str:
    """``"cuda"`` or ``"cpu"``: the kind of ``device`` (``None``: CUDA where torch sees a GPU)."""
    if device is None:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(device).startswith(("cuda", "gpu")) else "cpu"


def _card_from_text(text: str | None, path: Path) -> dict[str, Any]:
    if not text:
        raise ModelError(f"{path}: holds no histotile model card; export models with "
                         "'histotile export' (or load the model folder)")
    try:
        card = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelError(f"{path}: its embedded model card is not JSON ({error}); export "
                         "the model again") from None
    if not isinstance(card, dict) or not {"classes", "tile_size"} <= set(card):
        raise ModelError(f"{path}: its embedded model card lacks classes or tile_size; "
                         "export the model again")
    return card


class OnnxRuntimeEngine:
    """An ONNX graph that takes uint8 (N, T, T, 3) RGB tiles named ``tiles`` and returns
    ``probabilities``: normalisation and softmax are inside the graph (see
    :mod:`histotile.models.export`), so plain onnxruntime needs no pre-processing."""

    def __init__(self, path: Path, device: str | None, name: str = "onnxruntime") -> None:
        import onnxruntime as ort

        self.name = name
        self.path = Path(path)
        providers, self.device = _providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        # histotile's thread budget (HISTOTILE_THREADS or the cores), one graph at a time,
        # and no spinning threads: spinning starves everything else on shared cores, the
        # reason histotile sets OMP_WAIT_POLICY=PASSIVE for torch.
        options.intra_op_num_threads = thread_budget()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types
            raise ModelError(f"{self.path}: onnxruntime cannot load it ({type(error).__name__}"
                             f": {str(error).splitlines()[0] if str(error) else ''}); export "
                             "the model again") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.card = _card_from_text(meta.get("histotile_model_card"), self.path)
        self.input = self.session.get_inputs()[0].name
        self.output = self.session.get_outputs()[0].name

    def predict(self, tiles: np.ndarray, batch_size: int) -> np.ndarray:
        tiles = np.ascontiguousarray(tiles, dtype=np.uint8)
        parts = [self.session.run([self.output], {self.input: tiles[s:s + batch_size]})[0]
                 for s in range(0, tiles.shape[0], batch_size)]
        return np.concatenate(parts).astype(np.float32, copy=False)


def _providers(device: str | None, available: list[str]) -> tuple[list[Any], str]:
    """ONNX Runtime providers for ``device``: the CUDA provider (onnxruntime-gpu) for
    ``cuda[:N]``, and by default when it and a GPU are present; else the CPU provider.
    The CUDA path is untested here (no GPU on the machines this was written on)."""
    has_cuda = "CUDAExecutionProvider" in available
    if device is None:
        device = "cuda:0" if has_cuda and device_kind(None) == "cuda" else "cpu"
    kind, _, index = str(device).partition(":")
    if kind == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    if kind in ("cuda", "gpu"):
        if not has_cuda:
            raise ModelError(f"device={device!r}: this onnxruntime has no CUDA provider "
                             "(install onnxruntime-gpu in its place), or use device='cpu' "
                             "or engine='torch'")
        number = int(index or 0)
        return [("CUDAExecutionProvider", {"device_id": number}),
                "CPUExecutionProvider"], f"cuda:{number}"
    raise ModelError(f"device={device!r}: not a device name (use 'cpu', 'cuda' or 'cuda:N')")


class TorchScriptEngine:
    """A TorchScript file of ``histotile export --format torchscript``: the same graph
    contract as the ONNX export (uint8 tiles in, probabilities out)."""

    name = "torchscript"

    def __init__(self, path: Path, device: str | None) -> None:
        import torch

        from histotile.models.torch_backend import resolve_device

        self.path = Path(path)
        self.device = resolve_device(device)
        extra = {"model_card.json": ""}
        try:
            self.model = torch.jit.load(str(self.path), map_location=self.device,
                                        _extra_files=extra).eval()
        except Exception as error:  # noqa: BLE001 - torch raises many types for bad files
            raise ModelError(f"{self.path}: not a loadable TorchScript file "
                             f"({type(error).__name__}); export the model again") from None
        self.card = _card_from_text(extra["model_card.json"], self.path)

    def predict(self, tiles: np.ndarray, batch_size: int) -> np.ndarray:
        import torch

        tiles = np.ascontiguousarray(tiles, dtype=np.uint8)
        parts = []
        with torch.inference_mode():
            for s in range(0, tiles.shape[0], batch_size):
                x = torch.from_numpy(tiles[s:s + batch_size]).to(self.device)
                parts.append(self.model(x).float().cpu().numpy())
        return np.concatenate(parts).astype(np.float32, copy=False)
