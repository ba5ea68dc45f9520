"""``histotile export``: a model folder as one file plus its card, and a short report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histotile._settings import refuse_unknown
from histotile.errors import ConfigError
from histotile.models.export import EXPORT_FORMATS, ExportFormat


@dataclass(frozen=True)
class ExportSettings:
    """How ``histotile export`` writes a model (built by the CLI or the API).

    Attributes:
        format: one of :data:`~histotile.models.export.EXPORT_FORMATS`.
        int8: ONNX only: quantise statically to int8, calibrated on the training tiles
            (or on ``calibration``); the card reports its accuracy against float32.
        calibration: a tile manifest or image folder to calibrate ``int8`` on when the
            training tiles are not at hand.
    """

    format: ExportFormat = "onnx"
    int8: bool = False
    calibration: str | None = None

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise ConfigError(f"format={self.format!r}: choose "
                              + " or ".join(map(repr, EXPORT_FORMATS)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExportSettings:
        """From option names and values; unknown names are a :class:`ConfigError`."""
        refuse_unknown(cls, values, "export")
        return cls(**values)


def export_file(model_dir: str | Path, out: str | Path,
                settings: ExportSettings | None = None, *,
                overwrite: bool = False) -> dict[str, Any]:
    """Write ``out`` and ``<out>.card.json`` as ``settings`` say (see
    :func:`histotile.models.export.export_model`); returns the exported card."""
    from histotile.models.export import export_model

    settings = settings or ExportSettings()
    return export_model(model_dir, out, settings.format, int8=settings.int8,
                        calibration=settings.calibration, overwrite=overwrite)


def export_command(model_dir: str | Path, out: str | Path,
                   settings: ExportSettings | None = None, *, overwrite: bool = False) -> str:
    """Export (:func:`export_file`); return the lines to print: the files written, the
    input recipe and, for int8, the accuracy report."""
    settings = settings or ExportSettings()
    card = export_file(model_dir, out, settings, overwrite=overwrite)
    info = card["export"]
    lines = [f"{settings.format} model: {out}", f"card: {out}.card.json",
             f"classes: {', '.join(card['classes'])} (positive: {info['positive_class']})",
             f"input: {info['preprocessing']}"]
    report = info.get("quantisation")
    if report:
        lines.append(f"int8 on {report['tiles']} tiles of {report['measured_on']}: accuracy "
                     f"{report['accuracy_int8']:.4f} (float32 {report['accuracy_float32']:.4f}),"
                     f" agreement {report['agreement']:.4f}, max |difference| "
                     f"{report['max_abs_difference']:.4f}")
    return "\n".join(lines)
