"""Model export: a torch model folder as one self-contained ONNX or TorchScript file.

The exported graph takes what :meth:`Predictor.predict` takes, uint8 RGB tiles
``(N, tile_size, tile_size, 3)`` named ``tiles``, and returns ``probabilities``
``(N, classes)``: the card's normalisation (``(x / 255 - mean) / std``), the NHWC -> NCHW
transpose and the softmax are part of the graph, so plain onnxruntime (or
``torch.jit.load``) needs no pre-processing of its own. The model card travels inside the
file (ONNX metadata ``histotile_model_card``; TorchScript extra file ``model_card.json``)
and beside it (``<file>.card.json``).

The ONNX engine exports on first use into a cache keyed by the weights' hash
(:func:`cached_onnx`): in the model folder's ``engines/`` when the folder is writable,
else in the user's cache folder.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, get_args

from histotile._atomic import atomic_path, write_text_atomic
from histotile.errors import ModelError

ExportFormat = Literal["onnx", "torchscript"]
"""The file formats a model folder exports to (``histotile export --format``)."""
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
OPSET = 17
INPUT_NAME = "tiles"
OUTPUT_NAME = "probabilities"
CACHE_FOLDER = "engines"
# Bump when the exported graph changes (wrapper, opset, quantisation recipe): old cache
# files are then never reused.
RECIPE_VERSION = 1
RECIPE = ("uint8 RGB tiles (N, tile_size, tile_size, 3) named 'tiles', as they come from "
          "the slide; nothing else: the graph divides by 255, normalises with the card's "
          "mean and std, transposes to NCHW and applies softmax; output 'probabilities' "
          "(N, classes), float32, columns in the order of 'classes'")


def _deployable(card: dict[str, Any], model_dir: Path) -> Any:
    """The card's torch network on the CPU wrapped as uint8 tiles -> probabilities."""
    import torch
    from torch import nn

    from histotile.models.torch_backend import TorchRunner

    network = TorchRunner(card, model_dir, "cpu").model.to(memory_format=torch.contiguous_format)
    norm = card["input"]["normalisation"]

    class Deployable(nn.Module):
        scale: torch.Tensor  # buffers (register_buffer below)
        shift: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.network = network
            mean = torch.tensor(norm["mean"], dtype=torch.float32)
            std = torch.tensor(norm["std"], dtype=torch.float32)
            self.register_buffer("scale", 1.0 / (float(norm["divide_by"]) * std))
            self.register_buffer("shift", -mean / std)

        def forward(self, tiles: torch.Tensor) -> torch.Tensor:
            x = (tiles.float() * self.scale + self.shift).permute(0, 3, 1, 2)
            return torch.softmax(self.network(x).float(), dim=1)

    return Deployable().eval()


def _pooling_matrix(size_in: int, size_out: int) -> Any:
    """(size_out, size_in) averaging matrix of adaptive average pooling along one axis:
    output i averages inputs floor(i * in / out) to ceil((i + 1) * in / out) (torch's
    windows)."""
    import torch

    matrix = torch.zeros(size_out, size_in)
    for i in range(size_out):
        start, end = (i * size_in) // size_out, -(-((i + 1) * size_in) // size_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def _exportable_pools(model: Any, example: Any) -> None:
    """Replace adaptive average pools whose input side is not a multiple of their output
    side (AlexNet's 6x6 pool on tiles under 224 px) by the same pooling written as two
    matrix products: the ONNX exporter refuses those pools, and the tile size is fixed,
    so the windows are constants."""
    import torch
    from torch import nn

    sizes: dict[str, tuple[int, int]] = {}
    hooks = [module.register_forward_hook(
        lambda m, args, _out, name=name: sizes.__setitem__(name, tuple(args[0].shape[-2:])))
        for name, module in model.named_modules() if isinstance(module, nn.AdaptiveAvgPool2d)]
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()

    class MatrixPool(nn.Module):
        rows: torch.Tensor  # buffers (register_buffer below)
        columns: torch.Tensor

        def __init__(self, rows: Any, columns: Any) -> None:
            super().__init__()
            self.register_buffer("rows", rows)
            self.register_buffer("columns", columns.T.contiguous())

        def forward(self, x: Any) -> Any:
            return torch.matmul(torch.matmul(self.rows, x), self.columns)

    for name, (height, width) in sizes.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        pool = getattr(parent, child)
        out_h, out_w = (pool.output_size if isinstance(pool.output_size, tuple)
                        else (pool.output_size, pool.output_size))
        out_h, out_w = out_h or height, out_w or width
        if height % out_h or width % out_w:
            setattr(parent, child, MatrixPool(_pooling_matrix(height, out_h),
                                              _pooling_matrix(width, out_w)))


def _example(card: dict[str, Any]) -> Any:
    import torch

    side = int(card["tile_size"])
    return torch.zeros((2, side, side, 3), dtype=torch.uint8)


def _refuse_mxnet(card: dict[str, Any], model_dir: Path, what: str) -> None:
    if card.get("backend") != "torch":
        from histotile.models.runtimes import MXNET_ONNX

        raise ModelError(f"{model_dir}: an {card.get('backend')} model cannot be exported "
                         f"to {what}: {MXNET_ONNX}; run it with engine='mxnet', or train "
                         "it with backend='torch' to export it")


def write_onnx(card: dict[str, Any], model_dir: Path, path: Path) -> None:
    """Export the model folder's network to ``path`` (ONNX, opset :data:`OPSET`, any
    batch size) with the card embedded."""
    import onnx
    import torch

    _refuse_mxnet(card, model_dir, "ONNX")
    model = _deployable(card, model_dir)
    _exportable_pools(model, _example(card))
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's notices
        with torch.no_grad():
            torch.onnx.export(model, (_example(card),), str(tmp), dynamo=False,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"},
                                            OUTPUT_NAME: {0: "batch"}},
                              opset_version=OPSET)
        graph = onnx.load(str(tmp))
        _embed_card(graph, card)
        onnx.save(graph, str(tmp))


def _embed_card(graph: Any, card: dict[str, Any]) -> None:
    entries = {p.key: p for p in graph.metadata_props}
    entry = entries.get("histotile_model_card") or graph.metadata_props.add()
    entry.key = "histotile_model_card"
    entry.value = json.dumps(card, default=str)


def write_torchscript(card: dict[str, Any], model_dir: Path, path: Path) -> None:
    """Trace the network (with pre-processing and softmax) into a TorchScript file."""
    import torch

    _refuse_mxnet(card, model_dir, "TorchScript")
    model = _deployable(card, model_dir)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (_example(card),))
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp),
                       _extra_files={"model_card.json": json.dumps(card, default=str)})


def exported_card(card: dict[str, Any], model_dir: Path, path: Path, fmt: str,
                  quantisation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model card of an exported file: the folder's card plus an ``export`` entry
    (format, input and output, the pre-processing recipe, the positive class, source)."""
    # The digest histotile.postprocess.predict.model_reference records for the folder.
    digest = hashlib.sha256(json.dumps(card, sort_keys=True, default=str).encode()
                            ).hexdigest()[:16]
    positive = card.get("positive_class") or (card.get("training") or {}).get("positive_class")
    side = int(card["tile_size"])
    exported = copy.deepcopy(card)
    exported["weights_file"] = path.name
    exported["export"] = {
        "format": fmt,
        "file": path.name,
        "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": ["N", side, side, 3],
                  "layout": "NHWC", "channel_order": "RGB"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["N", len(card["classes"])],
                   "columns": list(card["classes"])},
        "preprocessing": RECIPE,
        "normalisation_in_graph": card["input"]["normalisation"],
        "positive_class": positive,
        "opset": OPSET if fmt == "onnx" else None,
        "source": {"model_dir": str(model_dir), "card_sha256": digest},
        "versions": _versions(),
        "quantisation": quantisation,
    }
    return exported


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in ("torch", "onnx", "onnxruntime"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# -- the engine's cache -------------------------------------------------------------------

def cache_key(card: dict[str, Any], model_dir: Path) -> str:
    """Hash of the weights file, the card entries the graph bakes in, and the recipe."""
    digest = hashlib.sha256()
    with open(model_dir / card["weights_file"], "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    baked = {k: card.get(k) for k in ("architecture", "classes", "tile_size", "input")}
    digest.update(json.dumps([baked, RECIPE_VERSION, OPSET], sort_keys=True).encode())
    return digest.hexdigest()[:20]


def user_cache() -> Path:
    """``$XDG_CACHE_HOME/histotile/engines`` (default ``~/.cache``), or the temporary
    folder when the home folder is not writable."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "histotile" / CACHE_FOLDER


def _writable(folder: Path) -> bool:
    """Whether files can be created in ``folder`` (made when missing); tried, not
    guessed from permission bits (root, read-only mounts)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".probe.", dir=folder)
        os.close(fd)
        os.unlink(name)
        return True
    except OSError:
        return False


def cache_folders(model_dir: Path) -> list[Path]:
    """Where cached engine files are looked for, first to last: the model folder's own
    ``engines/``, the user cache, the temporary folder."""
    user = os.getuid() if hasattr(os, "getuid") else "user"
    return [model_dir / CACHE_FOLDER, user_cache(),
            Path(tempfile.gettempdir()) / f"histotile-{user}" / CACHE_FOLDER]


def cached_onnx(model_dir: Path, card: dict[str, Any], int8: bool = False) -> Path:
    """The ONNX file of a model folder (exported now when no cache holds it). ``int8``:
    the statically quantised one (see :mod:`histotile.models.quantise`)."""
    name = f"model-{cache_key(card, model_dir)}{'.int8' if int8 else ''}.onnx"
    folders = cache_folders(model_dir)
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    target = next((folder for folder in folders if _writable(folder)), None)
    if target is None:
        raise ModelError(f"{model_dir}: no writable folder for the exported ONNX model "
                         f"(tried {', '.join(map(str, folders))}); set XDG_CACHE_HOME to a "
                         "writable folder or use engine='torch'")
    if not int8:
        write_onnx(card, model_dir, target / name)
        return target / name
    from histotile.models.quantise import quantise_model

    float_path = cached_onnx(model_dir, card)
    report = quantise_model(model_dir, card, float_path, target / name)
    write_text_atomic(target / f"{name}.json", json.dumps(report, indent=2) + "\n")
    return target / name


def export_model(model: str | Path, out: str | Path, fmt: ExportFormat = "onnx", *,
                 int8: bool = False,
                 calibration: str | Path | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Write ``out`` (the model as one file) and ``<out>.card.json`` (its card).

    Args:
        model: a model folder written by ``histotile train``.
        out: the file to write (``.onnx`` or ``.pt`` by convention).
        fmt: one of :data:`EXPORT_FORMATS`.
        int8: ONNX only: quantise statically to int8, calibrated on the training tiles
            (or on ``calibration``, a tile manifest or image folder); the card's
            ``export.quantisation`` reports its accuracy against float32.
        overwrite: replace existing files.

    Returns:
        The exported card.
    """
    from histotile._atomic import check_writable
    from histotile.models.card import read_card

    model_dir = Path(model)
    card = read_card(model_dir)
    out = check_writable(out, overwrite)
    card_path = check_writable(out.with_name(out.name + ".card.json"), overwrite)
    if fmt not in EXPORT_FORMATS:
        raise ModelError(f"format={fmt!r}: choose " + " or ".join(map(repr, EXPORT_FORMATS)))
    if int8 and fmt != "onnx":
        raise ModelError("int8 quantisation is for --format onnx (ONNX Runtime); drop "
                         "--int8 or export to ONNX")
    quantisation = None
    if fmt == "torchscript":
        write_torchscript(card, model_dir, out)
    elif not int8:
        write_onnx(card, model_dir, out)
    else:
        from histotile.models.quantise import quantise_model

        _refuse_mxnet(card, model_dir, "ONNX")
        with tempfile.TemporaryDirectory() as scratch:
            float_path = Path(scratch) / "float.onnx"
            write_onnx(card, model_dir, float_path)
            quantisation = quantise_model(model_dir, card, float_path, out,
                                                   calibration=calibration)
    exported = exported_card(card, model_dir, out, fmt, quantisation)
    _embed_in_file(out, fmt, exported)
    write_text_atomic(card_path, json.dumps(exported, indent=2, default=str) + "\n")
    return exported


def _embed_in_file(path: Path, fmt: str, card: dict[str, Any]) -> None:
    """Replace the file's embedded card by the exported one (which names the file)."""
    if fmt == "onnx":
        import onnx

        graph = onnx.load(str(path))
        _embed_card(graph, card)
        with atomic_path(path) as tmp:
            onnx.save(graph, str(tmp))
        return
    import torch

    model = torch.jit.load(str(path), map_location="cpu")
    with atomic_path(path) as tmp:
        torch.jit.save(model, str(tmp),
                       _extra_files={"model_card.json": json.dumps(card, default=str)})
