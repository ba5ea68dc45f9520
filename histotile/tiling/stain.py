"""Stain normalisation of H&E tiles: Macenko and Reinhard, fitted to a reference (a tile,
an image or a mosaic of training tiles) and applied tile by tile.

Both keep a small, JSON-ready state (:meth:`to_dict`) that travels in the model card, so
prediction applies exactly the normaliser the model was trained with
(:func:`normaliser_from_dict`). :func:`normalise_tiles` applies one to a batch; a tile
it cannot normalise (too little stain to estimate, e.g. glass) is returned untouched and
counted.

Why not torchstain (which histotile otherwise prefers): its numpy Macenko is the same
algorithm as here (Macenko et al. 2009, after HEnorm_python) but takes 33 ms on a 256-px
tile (a ``log`` and ``exp`` per value, ``lstsq`` over every pixel) where this takes about
5 ms (256-entry OD table, a 2x3 pseudo-inverse, ``cv2.exp``), and fails on a blank tile
with a LinAlgError after numpy warnings instead of saying so; its numpy Reinhard
truncates to uint8 (a -0.5 bias per channel) and converts LAB in numpy where OpenCV is
faster. The tests check this Macenko against torchstain's on a real tile. Vahadane is
left out: its maintained implementations (staintools, TIAToolbox) need SPAMS dictionary
learning, which is not available here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from histotile.errors import ConfigError, HistotileError

METHODS = ("macenko", "reinhard")


class StainError(HistotileError):
    """A tile or reference a normaliser cannot use (too little stain)."""


class Normaliser(Protocol):
    """What the pipeline needs of a stain normaliser."""

    method: str

    def fit(self, image: np.ndarray) -> Normaliser: ...

    def transform(self, tile: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


def _rgb(image: np.ndarray, what: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB uint8 {what} (h, w, 3), got {image.shape} "
                         f"{image.dtype}")
    return image


# -- Macenko -----------------------------------------------------------------------------

# Macenko's reference (as in torchstain and TIAToolbox): columns H, E (OD, rows R, G, B).
H_E_REFERENCE = ((0.5626, 0.2159), (0.7201, 0.8012), (0.4062, 0.5581))
MAX_C_REFERENCE = (1.9705, 1.0308)
ESTIMATE_PIXELS = 8192


@dataclass
class MacenkoNormaliser:
    """Macenko et al. (2009): each tile's H and E optical-density vectors are estimated
    (extreme angles, ``alpha`` percentiles, in the plane of the two main directions of
    its stained pixels) and its stain concentrations re-rendered with the reference's
    vectors, scaled so their 99th percentiles match the reference's.

    Attributes:
        stain_matrix: 3x2 OD vectors (rows R, G, B; columns H, E) of the reference.
        max_concentrations: 99th-percentile H and E concentrations of the reference.
        io: transmitted (background) light intensity, 0-255.
        alpha: percentile (0-100) of the extreme angles.
        beta: OD below which (in any channel) a pixel is background and not used.
        min_pixels: fewest stained pixels from which a tile's stains are estimated.
    """

    stain_matrix: np.ndarray = field(default_factory=lambda: np.array(H_E_REFERENCE))
    max_concentrations: np.ndarray = field(default_factory=lambda: np.array(MAX_C_REFERENCE))
    io: float = 240.0
    alpha: float = 1.0
    beta: float = 0.15
    min_pixels: int = 64
    method: str = "macenko"

    def __post_init__(self) -> None:
        self.stain_matrix = np.asarray(self.stain_matrix, np.float64).reshape(3, 2)
        self.max_concentrations = np.asarray(self.max_concentrations, np.float64).reshape(2)

    def _od(self, rgb: np.ndarray) -> np.ndarray:
        # OD per value from a 256-entry table (torchstain's formula: -ln((I + 1) / Io)).
        table = -np.log((np.arange(256, dtype=np.float64) + 1.0) / self.io)
        return table[rgb.reshape(-1, 3)]

    def estimate(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stain matrix 3x2, concentrations 2xN, their 99th percentiles) of an image."""
        od = self._od(_rgb(rgb))
        stained = od[(od >= self.beta).all(axis=1)]
        if len(stained) < self.min_pixels:
            raise StainError(f"{len(stained)} stained pixels, fewer than {self.min_pixels}")
        # Percentiles and covariance of about ESTIMATE_PIXELS evenly spread pixels: the
        # estimate of a whole 256-px tile within a degree, at a fraction of the sorting.
        stained = stained[::max(1, len(stained) // ESTIMATE_PIXELS)]
        _, vectors = np.linalg.eigh(np.cov(stained.T))
        plane = vectors[:, 1:3]  # the two main directions
        plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)  # OD is positive
        projected = stained @ plane
        phi = np.arctan2(projected[:, 1], projected[:, 0])
        low, high = np.percentile(phi, [self.alpha, 100 - self.alpha])
        v_low = plane @ np.array([np.cos(low), np.sin(low)])
        v_high = plane @ np.array([np.cos(high), np.sin(high)])
        # Haematoxylin absorbs more red light than eosin does.
        matrix = np.stack([v_low, v_high] if v_low[0] > v_high[0] else [v_high, v_low], 1)
        if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix.T @ matrix)) < 1e-6:
            raise StainError("the two stain vectors could not be told apart")
        concentrations = np.linalg.pinv(matrix) @ od.T  # least squares, one 2x3 product
        sample = concentrations[:, ::max(1, len(od) // ESTIMATE_PIXELS)]
        maxima = np.percentile(sample, 99, axis=1)
        if not (maxima > 1e-6).all():
            raise StainError("no haematoxylin or no eosin")
        return matrix, concentrations, maxima

    def fit(self, image: np.ndarray) -> MacenkoNormaliser:
        """Take ``image``'s (RGB uint8) stain vectors and maxima as the reference."""
        try:
            self.stain_matrix, _, self.max_concentrations = self.estimate(image)
        except StainError as error:
            raise StainError(f"stain reference: {error}; use a reference image with "
                             "more H&E-stained tissue") from None
        return self

    def transform(self, tile: np.ndarray) -> np.ndarray:
        """The tile (RGB uint8) re-rendered with the reference stains; raises
        :class:`StainError` when the tile has too little stain."""
        _, concentrations, maxima = self.estimate(tile)
        scaled = concentrations * (self.max_concentrations / maxima)[:, None]
        od = (self.stain_matrix @ scaled).T.astype(np.float32)
        out = cv2.exp(-od) * np.float32(self.io)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8).reshape(tile.shape)

    def transform_batch(self, tiles: np.ndarray) -> tuple[np.ndarray, int]:
        """:meth:`transform` of every tile of a uint8 batch (n, h, w, 3) at once: the
        same estimate per tile, as stacked arrays (batched covariance, eigenvectors and
        pseudo-inverses; percentiles by one sort) instead of some thirty small numpy
        calls per tile. Tiles with too little stain stay untouched. Returns (tiles,
        how many stayed untouched)."""
        n = len(tiles)
        od = self._od(np.asarray(tiles)).reshape(n, -1, 3)
        mask = (od >= self.beta).all(axis=2)
        counts = mask.sum(axis=1)
        weights = mask[..., None]
        mean = (od * weights).sum(axis=1) / np.maximum(counts, 1)[:, None]
        centred = (od - mean[:, None]) * weights
        # Batched matrix products (BLAS), not einsum, which was half the time.
        cov = centred.transpose(0, 2, 1) @ centred / np.maximum(counts - 1, 1)[:, None, None]
        _, vectors = np.linalg.eigh(cov)
        plane = vectors[:, :, 1:3]
        plane = plane * np.where(plane.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)
        projected = od @ plane
        phi = np.arctan2(projected[..., 1], projected[..., 0])
        phi = np.sort(np.where(mask, phi, np.inf), axis=1)  # stained angles first
        low = _percentile_sorted(phi, counts, self.alpha)
        high = _percentile_sorted(phi, counts, 100 - self.alpha)
        low, high = (np.where(np.isfinite(v), v, 0.0) for v in (low, high))  # blank tiles
        v_low = (plane @ np.stack([np.cos(low), np.sin(low)], 1)[..., None])[..., 0]
        v_high = (plane @ np.stack([np.cos(high), np.sin(high)], 1)[..., None])[..., 0]
        first = (v_low[:, 0] > v_high[:, 0])[:, None]
        matrix = np.stack([np.where(first, v_low, v_high), np.where(first, v_high, v_low)], 2)
        good = (counts >= self.min_pixels) & np.isfinite(matrix).all(axis=(1, 2))
        matrix[~good] = self.stain_matrix  # placeholders, never used
        good &= np.abs(np.linalg.det(matrix.transpose(0, 2, 1) @ matrix)) >= 1e-6
        concentrations = np.linalg.pinv(matrix) @ od.transpose(0, 2, 1)
        maxima = np.percentile(concentrations, 99, axis=2)
        good &= (maxima > 1e-6).all(axis=1)
        scale = self.max_concentrations / np.where(maxima > 1e-6, maxima, 1.0)
        out_od = (self.stain_matrix @ (concentrations * scale[..., None])).transpose(0, 2, 1)
        out = cv2.exp(-np.ascontiguousarray(out_od, np.float32).reshape(n, -1))
        out *= np.float32(self.io)
        out = np.clip(out + 0.5, 0, 255).astype(np.uint8).reshape(tiles.shape)
        out[~good] = tiles[~good]
        return out, int((~good).sum())

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "stain_matrix": self.stain_matrix.tolist(),
                "max_concentrations": self.max_concentrations.tolist(), "io": self.io,
                "alpha": self.alpha, "beta": self.beta, "min_pixels": self.min_pixels}


def _percentile_sorted(values: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Per row, numpy's (linear) ``q`` percentile of the first ``counts`` values of rows
    sorted ascending."""
    position = q / 100.0 * np.maximum(counts - 1, 0)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(counts - 1, 0))
    rows = np.arange(len(values))
    a, b = values[rows, below], values[rows, above]
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(b), a + (b - a) * (position - below), a)


# -- Reinhard ----------------------------------------------------------------------------

@dataclass
class ReinhardNormaliser:
    """Reinhard et al. (2001): each CIELAB channel of a tile is standardised and given
    the reference's mean and standard deviation (OpenCV's float LAB: L 0-100).

    Attributes:
        means, stds: the reference's L, a, b means and standard deviations.
        min_std: a tile whose L standard deviation is below this is blank: not changed.
    """

    means: np.ndarray = field(default_factory=lambda: np.array([70.0, 20.0, -10.0]))
    stds: np.ndarray = field(default_factory=lambda: np.array([15.0, 10.0, 8.0]))
    min_std: float = 1.0
    method: str = "reinhard"

    def __post_init__(self) -> None:
        self.means = np.asarray(self.means, np.float64).reshape(3)
        self.stds = np.asarray(self.stds, np.float64).reshape(3)

    @staticmethod
    def lab(rgb: np.ndarray) -> np.ndarray:
        """CIELAB (float32, L 0-100) of RGB uint8 pixels."""
        return cv2.cvtColor(_rgb(rgb).astype(np.float32) * np.float32(1 / 255),
                            cv2.COLOR_RGB2LAB)

    def fit(self, image: np.ndarray) -> ReinhardNormaliser:
        lab = self.lab(image).reshape(-1, 3)
        self.means, self.stds = lab.mean(axis=0).astype(np.float64), lab.std(axis=0)
        if self.stds[0] < self.min_std:
            raise StainError("stain reference: a blank image; use one with H&E tissue")
        return self

    def transform(self, tile: np.ndarray) -> np.ndarray:
        lab = self.lab(tile)
        flat = lab.reshape(-1, 3)
        mean, std = flat.mean(axis=0), flat.std(axis=0)
        if std[0] < self.min_std:
            raise StainError("a blank tile")
        gain = (self.stds / np.maximum(std, 1e-6)).astype(np.float32)
        lab = (lab - mean.astype(np.float32)) * gain + self.means.astype(np.float32)
        rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
        return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def transform_batch(self, tiles: np.ndarray) -> tuple[np.ndarray, int]:
        """:meth:`transform` of a uint8 batch (n, h, w, 3) in two colour conversions of
        the whole batch (as one tall image) instead of two per tile; blank tiles are
        left untouched. Returns (tiles, how many were blank)."""
        n, h, w, _ = tiles.shape
        lab = self.lab(np.ascontiguousarray(tiles).reshape(n * h, w, 3)).reshape(n, -1, 3)
        mean, std = lab.mean(axis=1, keepdims=True), lab.std(axis=1, keepdims=True)
        blank = std[:, 0, 0] < self.min_std
        gain = (self.stds / np.maximum(std, 1e-6)).astype(np.float32)
        lab = (lab - mean) * gain + self.means.astype(np.float32)
        rgb = cv2.cvtColor(lab.reshape(n * h, w, 3), cv2.COLOR_LAB2RGB).reshape(tiles.shape)
        out = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
        out[blank] = tiles[blank]
        return out, int(blank.sum())

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "means": self.means.tolist(),
                "stds": self.stds.tolist(), "min_std": self.min_std}


# -- the pipeline's entry points ------------------------------------------------------------

def create_normaliser(method: str) -> MacenkoNormaliser | ReinhardNormaliser:
    """An unfitted normaliser (the published reference for Macenko)."""
    name = str(method).lower()
    if name == "macenko":
        return MacenkoNormaliser()
    if name == "reinhard":
        return ReinhardNormaliser()
    raise ConfigError(f"stain normalisation {method!r}: unknown method (choose one of "
                      f"{', '.join(METHODS)})")


def normaliser_from_dict(state: dict[str, Any] | None):
    """The normaliser a :meth:`to_dict` state describes (None for None)."""
    if not state:
        return None
    values = dict(state)
    values.pop("reference", None)  # where it came from: a note, not state
    method = str(values.pop("method", ""))
    cls = {"macenko": MacenkoNormaliser, "reinhard": ReinhardNormaliser}.get(method)
    if cls is None:
        raise ConfigError(f"stain normaliser state: unknown method {method!r} (choose one "
                          f"of {', '.join(METHODS)})")
    try:
        return cls(**values)
    except TypeError as error:
        raise ConfigError(f"stain normaliser state for {method}: {error}") from None


def mosaic(tiles: np.ndarray) -> np.ndarray:
    """Tiles (n, T, T, 3) side by side in one image: a reference from many tiles."""
    tiles = np.asarray(tiles)
    return tiles.transpose(1, 0, 2, 3).reshape(tiles.shape[1], -1, 3)


def normalise_tiles(normaliser, tiles: np.ndarray) -> tuple[np.ndarray, int]:
    """``(normalised tiles, failures)`` for a uint8 batch (n, T, T, 3); a tile the
    normaliser cannot handle is returned untouched and counted. None: tiles unchanged."""
    if normaliser is None:
        return tiles, 0
    if hasattr(normaliser, "transform_batch") and len(tiles):
        return normaliser.transform_batch(np.asarray(tiles))
    out = np.empty_like(tiles)
    failures = 0
    for i, tile in enumerate(tiles):
        try:
            out[i] = normaliser.transform(tile)
        except StainError:
            out[i] = tile
            failures += 1
    return out, failures


def read_reference(path) -> np.ndarray:
    """An RGB uint8 reference image (PNG, JPEG, TIFF...) for :meth:`fit`."""
    from pathlib import Path

    path = Path(path)
    pixels = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if pixels is None:
        raise HistotileError(f"{path}: not a readable image for a stain reference (give a "
                             "PNG/JPEG/TIFF tile or region of well-stained H&E tissue)")
    return np.ascontiguousarray(pixels[:, :, ::-1])


def fit_to_manifest(method: str, manifest, *, max_tiles: int = 64, seed: int = 0,
                    min_tissue: float = 0.5):
    """A normaliser of ``method`` fitted to a mosaic of up to ``max_tiles`` tissue tiles
    (tissue fraction >= ``min_tissue``; a seeded sample) of a manifest DataFrame: the
    training set's own stain, as the reference."""
    from histotile.tiling.tile_io import read_tile
    from histotile.wsi import open_slide

    tissue = manifest[manifest["tissue_fraction"] >= min_tissue]
    if len(tissue) == 0:
        raise StainError("no tissue tiles in the manifest to fit the stain normaliser to; "
                         "give --stain-reference IMG")
    rng = np.random.default_rng(seed)
    rows = tissue.iloc[np.sort(rng.choice(len(tissue), min(max_tiles, len(tissue)),
                                          replace=False))]
    tiles = []
    for path, part in rows.groupby("path", sort=False):
        with open_slide(path) as slide:
            for r in part.itertuples():
                tiles.append(read_tile(slide, int(r.x), int(r.y), int(r.level),
                                       int(r.read_size), int(r.size)))
    return create_normaliser(method).fit(mosaic(np.stack(tiles)))
