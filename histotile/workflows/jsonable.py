"""Plain JSON values from numpy results."""

from __future__ import annotations

from typing import Any


def plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers and NaN as None (valid JSON)."""
    import math

    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
