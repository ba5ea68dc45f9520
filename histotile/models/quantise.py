"""Static int8 quantisation of an exported ONNX model with ONNX Runtime, calibrated on the
model's training tiles, and its accuracy against float32.

ONNX Runtime's ``quantize_static`` (QDQ format, int8 weights per channel, uint8
activations, MinMax calibration) does the work; this module only finds the tiles: by
default the training data named by the model card (the development part for calibration,
the held-out test split for the accuracy report, both rebuilt from the card's settings and
the folder's ``splits.csv``), or tiles the caller names when the training data is not at
hand (then the report says that it was measured on those tiles, not on the test split).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from histotile.errors import HistotileError, ModelError

CALIBRATION_TILES = 256
REPORT_TILES = 4096
BATCH = 32


def _read(reader: Any, rows: np.ndarray) -> np.ndarray:
    return np.stack([reader[int(i)] for i in rows]).astype(np.uint8, copy=False)


def _tiles(model_dir: Path, card: dict[str, Any], calibration: str | Path | None
           ) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, str]:
    """(reader, calibration rows, report rows, report labels, what the report measures)."""
    import pandas as pd

    from histotile.models.data import load_tiles

    training = card.get("training") or {}
    source = calibration or (card.get("data") or {}).get("source")
    hint = ("pass calibration= (a tile manifest or image folder; histotile export "
            "--calibration) with tiles like the training tiles")
    if not source or not (Path(source).is_file() or Path(source).is_dir()):
        raise ModelError(f"{model_dir}: int8 quantisation calibrates on the training tiles, "
                         f"and the card's training data ({source!r}) is not at hand: {hint}")
    try:
        table = load_tiles(source, group_column=training.get("group_column", "group"),
                           label_column=training.get("label_column", "label"),
                           classes=card["classes"], tile_size=int(card["tile_size"]),
                           patchify=bool(training.get("patchify")),
                           max_tiles=None if calibration else training.get("max_tiles"),
                           seed=int(training.get("seed") or 0))
    except HistotileError as error:
        raise ModelError(f"{model_dir}: the calibration tiles cannot be read ({error}): "
                         f"{hint}") from None
    rng = np.random.default_rng(0)
    everything = np.arange(len(table.frame))
    splits = model_dir / "splits.csv"
    if calibration is None and splits.is_file():
        parts = pd.read_csv(splits, dtype={"group": str})
        test = np.isin(table.groups, parts.loc[parts["part"] == "test", "group"].unique())
        development, report = everything[~test], everything[test]
        what = "the cross-validation's held-out test split"
    else:
        development, report = everything, everything
        what = (f"the calibration tiles {source} (the card's test split is not at hand: "
                "these tiles are not held out)")
    if report.size == 0:
        report, what = development, "the training tiles (the model has no test split)"
    calibrate = rng.permutation(development)[:CALIBRATION_TILES]
    report = np.sort(rng.permutation(report)[:REPORT_TILES])
    return table.reader(), calibrate, report, table.targets[report], what


def quantise_onnx(float_path: Path, out: Path, calibration_tiles: np.ndarray) -> None:
    """Write the int8 version of an exported ONNX model (uint8 tiles in) to ``out``,
    calibrated on ``calibration_tiles`` (uint8 (N, T, T, 3)); the embedded card is kept."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from histotile._atomic import atomic_path

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.parts = iter([{"tiles": calibration_tiles[s:s + BATCH]}
                               for s in range(0, len(calibration_tiles), BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.parts, None)

    with tempfile.TemporaryDirectory() as scratch, atomic_path(out) as tmp:
        prepared = Path(scratch) / "prepared.onnx"
        _prepare(float_path, prepared)
        quantize_static(str(prepared), str(tmp), Batches(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        _copy_metadata(float_path, tmp)


def quantise_model(model_dir: Path, card: dict[str, Any], float_path: Path, out: Path,
                   calibration: str | Path | None = None) -> dict[str, Any]:
    """Write the int8 model to ``out``; return the report (calibration, accuracy of both
    models on the report tiles, their agreement and max |probability difference|)."""
    from histotile.models.runtimes import OnnxRuntimeEngine

    reader, calibrate, report, labels, what = _tiles(model_dir, card, calibration)
    quantise_onnx(float_path, out, _read(reader, calibrate))
    tiles = _read(reader, report)
    full = OnnxRuntimeEngine(float_path, "cpu").predict(tiles, BATCH)
    small = OnnxRuntimeEngine(out, "cpu").predict(tiles, BATCH)
    return {
        "method": "onnxruntime quantize_static: QDQ, int8 weights per channel, uint8 "
                  "activations, MinMax calibration",
        "calibration_tiles": int(calibrate.size),
        "calibration_source": str(calibration or (card.get("data") or {}).get("source")),
        "measured_on": what,
        "tiles": int(report.size),
        "accuracy_float32": float(np.mean(full.argmax(1) == labels)),
        "accuracy_int8": float(np.mean(small.argmax(1) == labels)),
        "agreement": float(np.mean(full.argmax(1) == small.argmax(1))),
        "max_abs_difference": float(np.abs(full - small).max()) if len(tiles) else 0.0,
    }


def _prepare(source: Path, target: Path) -> None:
    """ONNX Runtime's recommended pre-processing (shape inference, graph optimisation)
    before quantisation; the plain copy when it is not available."""
    import shutil

    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(source), str(target), skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001 - optional step; quantisation works without it
        shutil.copyfile(source, target)


def _copy_metadata(source: Path, target: Path) -> None:
    """The embedded card survives quantisation (quantize_static drops metadata)."""
    import onnx

    original = onnx.load(str(source), load_external_data=False)
    quantised = onnx.load(str(target))
    del quantised.metadata_props[:]
    quantised.metadata_props.extend(original.metadata_props)
    onnx.save(quantised, str(target))
