"""``histotile export``: a model folder as one file plus its card, and a short report."""

from __future__ import annotations

from pathlib import Path


def export_command(model_dir: str | Path, out: str | Path, fmt: str, *, int8: bool = False,
                   calibration: str | Path | None = None, overwrite: bool = False) -> str:
    """Export (see :func:`histotile.models.export.export_model`); return the lines to
    print: the files written, the input recipe and, for int8, the accuracy report."""
    from histotile.models.export import export_model

    card = export_model(model_dir, out, fmt, int8=int8, calibration=calibration,
                        overwrite=overwrite)
    info = card["export"]
    lines = [f"{fmt} model: {out}", f"card: {out}.card.json",
             f"classes: {', '.join(card['classes'])} (positive: {info['positive_class']})",
             f"input: {info['preprocessing']}"]
    report = info.get("quantisation")
    if report:
        lines.append(f"int8 on {report['tiles']} tiles of {report['measured_on']}: accuracy "
                     f"{report['accuracy_int8']:.4f} (float32 {report['accuracy_float32']:.4f}),"
                     f" agreement {report['agreement']:.4f}, max |difference| "
                     f"{report['max_abs_difference']:.4f}")
    return "\n".join(lines)
