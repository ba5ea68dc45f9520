"""Alpha blending of predictions over slide pixels, and colour maps.

The blend is ``out = round((1 - alpha) * pixel + alpha * colour)`` per RGB channel, on
uint8 pixels. :func:`blend_reference` states it in plain float64 numpy; the fast paths
used to render bands (a per-channel lookup table for a single colour, OpenCV's weighted
sum for a colour map) give exactly the same values, which the tests check.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import ArrayLike

from histotile.errors import ConfigError

# OpenCV's colour maps, for names matplotlib lacks (see colour_map_lut).
COLOUR_MAPS = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "inferno": cv2.COLORMAP_INFERNO,
    "plasma": cv2.COLORMAP_PLASMA,
    "cividis": cv2.COLORMAP_CIVIDIS,
    "hot": cv2.COLORMAP_HOT,
    "parula": cv2.COLORMAP_PARULA,
}


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float in [0, 1], or :class:`ConfigError`."""
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0 or np.isnan(alpha):
        raise ConfigError(f"alpha={alpha}: the blend opacity must lie between 0 (slide only) "
                          "and 1 (colour only); 0.4 is the usual choice")
    return alpha


def check_colour(colour: Sequence[int]) -> tuple[int, int, int]:
    """An (R, G, B) colour of three ints in 0..255, or :class:`ConfigError`."""
    try:
        rgb = tuple(int(c) for c in colour)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ConfigError(f"color={colour!r}: give an RGB colour as three integers 0-255, "
                          "for example (0, 255, 0) for green")
    return rgb


@functools.lru_cache(maxsize=32)
def colour_map_lut(name: str) -> np.ndarray:
    """The colour map ``name`` as an RGB lookup table, uint8 (256, 3), read-only: row
    ``i`` is the colour of probability ``i / 255``. Any matplotlib colour map (viridis,
    cividis, magma, ...; sampled once into the table, so rendering never calls
    matplotlib), or OpenCV's for the few matplotlib lacks (parula)."""
    import matplotlib

    key = str(name)
    found = next((k for k in (key, key.lower()) if k in matplotlib.colormaps), None)
    if found is not None:
        rgba = matplotlib.colormaps[found](np.linspace(0.0, 1.0, 256))
        table = np.rint(rgba[:, :3] * 255).astype(np.uint8)
    elif key.lower() in COLOUR_MAPS:
        ramp = np.arange(256, dtype=np.uint8)[:, None]
        table = cv2.applyColorMap(ramp, COLOUR_MAPS[key.lower()])[:, 0, ::-1]  # BGR -> RGB
    else:
        raise ConfigError(f"colormap={name!r} is not known; choose a matplotlib colour map "
                          "such as viridis (the default), cividis, magma, inferno or "
                          "plasma (colour-blind safe), or turbo, jet")
    table = np.ascontiguousarray(table)
    table.setflags(write=False)
    return table


def probability_levels(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities (any float array, NaN allowed) as colour-map indices 0..255
    (``round(p * 255)``, clipped; NaN gives 0 and must be masked by the caller)."""
    values = np.nan_to_num(np.asarray(probabilities, dtype=np.float32), nan=0.0)
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def blend_reference(pixels: np.ndarray, colours: ArrayLike, alpha: float) -> np.ndarray:
    """The blend formula in float64: ``round((1 - alpha) * pixels + alpha * colours)``.

    ``colours`` broadcasts against ``pixels`` (uint8 RGB). Used by tests and small images;
    the band renderer uses :func:`blend_constant` / :func:`blend_colours`, which agree."""
    out = (1.0 - alpha) * pixels.astype(np.float64) + alpha * np.asarray(colours, np.float64)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def constant_lut(colour: Sequence[int], alpha: float) -> np.ndarray:
    """Per-channel lookup table (1, 256, 3) uint8 of the blend with one colour: entry
    ``[0, v, c]`` is the blend of channel value ``v`` with ``colour[c]``."""
    values = np.arange(256, dtype=np.float64)[:, None]
    table = blend_reference(np.broadcast_to(values, (256, 3)).astype(np.uint8),
                            np.asarray(colour, np.float64)[None, :], alpha)
    return np.ascontiguousarray(table[None, :, :])


def blend_constant(pixels: np.ndarray, lut: np.ndarray, mask: np.ndarray | None = None
                   ) -> np.ndarray:
    """Blend one colour (given as :func:`constant_lut`) over ``pixels`` (h, w, 3) in place
    where ``mask`` (broadcastable to (h, w)) is True; everywhere when ``mask`` is None."""
    blended = cv2.LUT(pixels, lut)
    if mask is None:
        pixels[...] = blended
    else:
        np.copyto(pixels, blended, where=np.asarray(mask, bool)[..., None])
    return pixels


def blend_colours(pixels: np.ndarray, colours: np.ndarray, alpha: float,
                  mask: np.ndarray | None = None) -> np.ndarray:
    """Blend per-pixel ``colours`` (broadcastable to ``pixels``) over ``pixels`` in place
    where ``mask`` is True. Equal to :func:`blend_reference`."""
    colours = np.ascontiguousarray(np.broadcast_to(colours, pixels.shape), dtype=np.uint8)
    # OpenCV rounds the weighted sum to nearest like np.rint; both computed in double.
    blended = cv2.addWeighted(pixels, 1.0 - alpha, colours, alpha, 0.0, dtype=cv2.CV_8U)
    if mask is None:
        pixels[...] = blended
    else:
        np.copyto(pixels, blended, where=np.asarray(mask, bool)[..., None])
    return pixels
