"""``histotile tile --stain-normalise``: fit the stain normaliser of a tiled batch and
record it beside the manifest (``OUT/manifest.json``, key ``stain``), where training
finds it and copies it into the model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from histotile._atomic import write_text_atomic


def record_stain(out_dir: str | Path, method: str | None, reference: str | None = None,
                 seed: int = 0) -> dict[str, Any] | None:
    """Fit ``method`` to ``reference`` (an image file) or, without one, to a sample of
    the batch's tissue tiles; add its state to ``OUT/manifest.json``. None: nothing."""
    if not method:
        return None
    from histotile.tiling import read_manifest
    from histotile.tiling.stain import create_normaliser, fit_to_manifest, read_reference

    out_dir = Path(out_dir)
    if reference is not None:
        normaliser = create_normaliser(method).fit(read_reference(reference))
    else:
        normaliser = fit_to_manifest(method, read_manifest(out_dir / "manifest.csv"),
                                     seed=seed)
    state = {**normaliser.to_dict(), "reference": str(reference) if reference else
             "a sample of the tiled tissue tiles"}
    sidecar = out_dir / "manifest.json"
    info = json.loads(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else {}
    info["stain"] = state
    write_text_atomic(sidecar, json.dumps(info, indent=2))
    return state
