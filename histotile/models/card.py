"""The model card (``model_card.json``): what prediction needs to rebuild the training
tiles and run the network, and what the training achieved."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from histotile.errors import ModelError

CARD_FILE = "model_card.json"
CARD_FORMAT = "histotile-model"
CARD_VERSION = 1
_REQUIRED = ("architecture", "backend", "classes", "tile_size", "weights_file", "input")


def package_versions(backend: str) -> dict[str, str | None]:
    """Versions of the packages that produced the model."""
    import histotile

    names = ["numpy", "torch", "torchvision", "opencv-python-headless", "openslide-python",
             "scikit-learn"]
    if backend == "mxnet":
        names.append("mxnet")
    versions: dict[str, str | None] = {"histotile": histotile.__version__,
                                       "python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def build_card(*, architecture: str, backend: str, description: str, classes: Sequence[str],
               tile_size: int, weights_file: str, normalisation: dict[str, Any],
               geometry: dict[str, Any], settings: dict[str, Any], data: dict[str, Any],
               metrics: dict[str, Any], final_epochs: int | None,
               roles: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble the card (plain JSON types). ``roles``: ``default_class`` and
    ``positive_class`` (see :mod:`histotile.class_roles`)."""
    return {
        "format": CARD_FORMAT,
        "format_version": CARD_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "architecture": architecture,
        "description": description,
        "backend": backend,
        "weights_file": weights_file,
        "classes": list(classes),
        "num_classes": len(classes),
        # The label of unannotated tiles and the class detected: read by every stage.
        "default_class": (roles or {}).get("default_class"),
        "positive_class": (roles or {}).get("positive_class"),
        "tile_size": int(tile_size),
        "input": {"layout": "uint8 RGB tiles (N, tile_size, tile_size, 3)",
                  "normalisation": normalisation},
        # The tiling geometry of the training tiles: prediction must cut tiles alike.
        "tiling": {
            "tile_mpp": geometry.get("tile_mpp"),
            "tile_downsample": geometry.get("tile_downsample"),
            "magnification": geometry.get("magnification"),
            "slide_mpp": geometry.get("slide_mpp"),
            "settings": geometry.get("tiling"),
            "manifest": geometry.get("manifest"),
        },
        # Applied to every tile before the network, in training and prediction.
        "stain_normaliser": geometry.get("stain"),
        "training": settings,
        "final_epochs": final_epochs,
        "data": data,
        "metrics": metrics,
        "versions": package_versions(backend),
    }


def write_card(card: dict[str, Any], directory: Path) -> Path:
    path = directory / CARD_FILE
    path.write_text(json.dumps(_finite(card), indent=2, allow_nan=False, default=_plain)
                    + "\n", encoding="utf-8")
    return path


def _finite(value: Any) -> Any:
    """NaN and infinities (undefined metrics) become null: the card stays strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy scalars
        return _finite(value.item())
    return value


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def check_card_values(card: dict[str, Any], path: Path) -> None:
    """Refuse card values of the wrong type (``tile_size: "big"``) with a
    :class:`ModelError` naming the card, before any of them is used."""
    tile_size = card.get("tile_size")
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        raise ModelError(f"{path}: tile_size {tile_size!r} is not a positive whole number of "
                         "pixels; restore the card (training writes it) or retrain")
    classes = card.get("classes")
    if (not isinstance(classes, list) or len(classes) < 2
            or not all(isinstance(c, str) and c for c in classes)):
        raise ModelError(f"{path}: classes {classes!r} is not a list of at least two class "
                         "names; restore the card or retrain")
    if not isinstance(card.get("weights_file"), str):
        raise ModelError(f"{path}: weights_file {card.get('weights_file')!r} is not a file "
                         "name; restore the card or retrain")


def read_card(directory: str | Path) -> dict[str, Any]:
    """Read and check a model directory's card. :class:`ModelError` names the directory
    and what is wrong."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelError(f"{directory}: no such model directory (pass the folder that "
                         "'histotile train' wrote)")
    path = directory / CARD_FILE
    if not path.is_file():
        raise ModelError(f"{directory}: no {CARD_FILE}; this is not a histotile model "
                         "directory (train one with 'histotile train')")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path}: unreadable model card ({error}); restore the directory "
                         "or retrain") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"{path}: not a histotile model card (format field missing)")
    if int(card.get("format_version", 0)) > CARD_VERSION:
        raise ModelError(f"{path}: model card version {card.get('format_version')} is newer "
                         f"than this histotile reads ({CARD_VERSION}); upgrade histotile")
    missing = [key for key in _REQUIRED if key not in card]
    if missing:
        raise ModelError(f"{path}: model card lacks {', '.join(missing)}; restore the "
                         "directory or retrain")
    if not card["weights_file"]:
        raise ModelError(f"{directory}: trained with final_model=False, so it holds "
                         "cross-validation results but no model; retrain with "
                         "final_model=True to predict")
    check_card_values(card, path)
    weights = directory / card["weights_file"]
    if not weights.resolve().is_relative_to(directory.resolve()):
        raise ModelError(f"{path}: weights_file {card['weights_file']!r} lies outside the "
                         "model folder; a model folder must hold its own weights (copy them "
                         "in and name them relative to the folder)")
    if not weights.is_file():
        raise ModelError(f"{directory}: weights file {card['weights_file']} is missing; "
                         "restore the directory or retrain")
    return card
