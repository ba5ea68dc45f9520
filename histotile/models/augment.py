"""Training-time augmentation of uint8 tile batches, by name: ``flip`` (the dihedral
group: flips and 90-degree rotations), ``colour`` (HED stain jitter, HSV hue and
saturation jitter, brightness and contrast) and ``blur`` (a random Gaussian blur).

Every transform takes a batch (N, H, W, 3) and a seeded ``numpy`` Generator and draws
its parameters per tile, so an epoch's augmentation is reproducible from the seed. The
registry is :data:`AUGMENTATIONS`; :func:`augmentation_names` reads a setting
(``True``, ``False``, ``"colour,blur"``...) and :func:`augment` applies the names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import cv2
import numpy as np

from histotile.errors import ConfigError

# Ruifrok & Johnston (2001) H, E, DAB optical-density vectors (rows), as in scikit-image's
# rgb2hed: a pixel's OD is its stain amounts times this matrix.
_HED_FROM_RGB = np.linalg.inv(np.array([[0.65, 0.70, 0.29],
                                        [0.07, 0.99, 0.11],
                                        [0.27, 0.57, 0.78]])).astype(np.float32)
_RGB_FROM_HED = np.linalg.inv(_HED_FROM_RGB).astype(np.float32)

HED_SIGMA = 0.05
"""HED jitter: each stain amount is scaled by U(1 - s, 1 + s) and shifted by U(-s, s)
(Tellez et al. 2018, "HED-light")."""
HUE_SHIFT = 0.03
"""HSV jitter: hue turned by up to this share of the colour circle (about 11 degrees)."""
SATURATION = 0.15
"""HSV jitter: saturation scaled by U(1 - s, 1 + s)."""
BRIGHTNESS, CONTRAST = 0.08, 0.15
"""Brightness shift (share of 255) and contrast scale, drawn uniformly within +-."""
BLUR_SIGMA = (0.1, 1.5)
"""Range of the Gaussian blur's sigma, pixels; half the tiles are blurred."""


def flip(tiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random element of the dihedral group per tile: orientation carries no meaning
    in histology."""
    choice = rng.integers(0, 8, size=tiles.shape[0])
    out = np.empty_like(tiles)
    for k in range(8):
        rows = np.flatnonzero(choice == k)
        if rows.size == 0:
            continue
        part = np.rot90(tiles[rows], k % 4, axes=(1, 2))
        out[rows] = part[:, :, ::-1] if k >= 4 else part
    return out


# Optical density of each 8-bit level, -ln(max(v, 1) / 255): a table lookup instead of a
# logarithm per pixel (the jitter ran at ~3 ms a 50 px tile, slower than training on it).
_OD_TABLE = -np.log(np.maximum(np.arange(256, dtype=np.float32), 1.0) / 255.0)


def hed_jitter(tiles: np.ndarray, rng: np.random.Generator,
               sigma: float = HED_SIGMA) -> np.ndarray:
    """Stain-amount jitter in HED space (colour deconvolution), one draw per tile and
    stain: the colour differences between labs and scanners."""
    n = tiles.shape[0]
    scale = rng.uniform(1 - sigma, 1 + sigma, (n, 1, 3)).astype(np.float32)
    shift = rng.uniform(-sigma, sigma, (n, 1, 3)).astype(np.float32)
    # OpenCV's per-pixel 3x3 transform and exp over the batch as one tall image: about 3x
    # numpy's stacked products and exp, with the same pixels.
    tall = np.ascontiguousarray(tiles).reshape(-1, tiles.shape[-2], 3)
    od = cv2.LUT(tall, _OD_TABLE)
    hed = cv2.transform(od, _HED_FROM_RGB.T).reshape(n, -1, 3)
    hed *= scale
    hed += shift
    np.maximum(hed, 0.0, out=hed)
    out = cv2.transform(hed.reshape(tall.shape), -_RGB_FROM_HED.T)
    out = cv2.exp(out)
    return cv2.convertScaleAbs(out, alpha=255.0).reshape(tiles.shape)


def hsv_jitter(tiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hue turned and saturation scaled, one draw per tile (OpenCV's 0-180 hue)."""
    n, height = tiles.shape[0], tiles.shape[1]
    shifts = (rng.uniform(-HUE_SHIFT, HUE_SHIFT, n) * 180.0).astype(np.float32)
    gains = rng.uniform(1 - SATURATION, 1 + SATURATION, n).astype(np.float32)
    # The batch as one tall image: one conversion each way instead of one per tile.
    tall = np.ascontiguousarray(tiles).reshape(n * height, *tiles.shape[2:])
    hsv = cv2.cvtColor(tall, cv2.COLOR_RGB2HSV).reshape(tiles.shape).astype(np.float32)
    hsv[..., 0] = np.mod(hsv[..., 0] + shifts[:, None, None], 180.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * gains[:, None, None], 0, 255)
    back = cv2.cvtColor(hsv.astype(np.uint8).reshape(n * height, *tiles.shape[2:]),
                        cv2.COLOR_HSV2RGB)
    return back.reshape(tiles.shape)


def brightness_contrast(tiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast scaled about the tile's mean and brightness shifted, one draw per tile."""
    n = tiles.shape[0]
    x = tiles.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    contrast = rng.uniform(1 - CONTRAST, 1 + CONTRAST, (n, 1, 1, 1)).astype(np.float32)
    shift = rng.uniform(-BRIGHTNESS, BRIGHTNESS, (n, 1, 1, 1)).astype(np.float32) * 255
    return np.clip((x - mean) * contrast + mean + shift + 0.5, 0, 255).astype(np.uint8)


def colour(tiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HED jitter, then HSV jitter, then brightness and contrast."""
    return brightness_contrast(hsv_jitter(hed_jitter(tiles, rng), rng), rng)


def blur(tiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian blur of random sigma on half the tiles (focus varies across a slide)."""
    chosen = rng.random(tiles.shape[0]) < 0.5
    sigmas = rng.uniform(*BLUR_SIGMA, tiles.shape[0])
    out = tiles.copy()
    for i in np.flatnonzero(chosen):
        out[i] = cv2.GaussianBlur(tiles[i], (0, 0), float(sigmas[i]))
    return out


AUGMENTATIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "flip": flip, "colour": colour, "blur": blur,
}
"""The augmentations by name, in the order they are applied."""
_ALIASES = {"color": "colour", "flips": "flip"}


def augmentation_names(setting: bool | str | Iterable[str] | None) -> tuple[str, ...]:
    """The augmentations a setting asks for: ``True`` = flips (the default), ``False`` /
    None / ``"none"`` = nothing, ``"colour,blur"`` (or a list) = those and flips, which
    never hurt in histology. Unknown names raise :class:`ConfigError`."""
    if setting is None or setting is False:
        return ()
    if setting is True:
        return ("flip",)
    items = setting.split(",") if isinstance(setting, str) else list(setting)
    names = {_ALIASES.get(str(n).strip().lower(), str(n).strip().lower()) for n in items}
    names.discard("")
    if names == {"none"}:
        return ()
    unknown = sorted(names - set(AUGMENTATIONS))
    if unknown:
        raise ConfigError(f"augment={setting!r}: unknown augmentation(s) "
                          f"{', '.join(unknown)} (choose from {', '.join(AUGMENTATIONS)}, "
                          "comma-separated, or none)")
    names.add("flip")
    return tuple(n for n in AUGMENTATIONS if n in names)


def augment(tiles: np.ndarray, rng: np.random.Generator,
            names: bool | str | Iterable[str] | None = True) -> np.ndarray:
    """``tiles`` (uint8 (N, H, W, 3)) through the augmentations ``names`` asks for."""
    for name in augmentation_names(names):
        tiles = AUGMENTATIONS[name](tiles, rng)
    return tiles
