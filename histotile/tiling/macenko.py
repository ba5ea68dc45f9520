"""Macenko stain normalisation (Macenko et al. 2009, after HEnorm_python): each tile's H
and E optical-density vectors are estimated and its concentrations re-rendered with a
reference's vectors.

Why not torchstain (which histotile otherwise prefers): its numpy Macenko is the same
algorithm but takes 33 ms on a 256-px tile (a ``log`` and ``exp`` per value, ``lstsq``
over every pixel, full sorts for the percentiles) where the batched version here takes
under 3 ms a tile in a batch (2.8 ms on a loaded 2-core machine; 256-entry OD tables,
float32 channel-planar passes, one 3x3 rendering matrix per tile, selections instead of
sorts), and it fails on a blank tile with a LinAlgError after numpy warnings instead of
saying so. The tests check this Macenko against torchstain's on a
real tile. Vahadane is left out: its maintained implementations (staintools, TIAToolbox)
need SPAMS dictionary learning, which is not available here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from histotile.tiling.stain_base import StainError, rgb_image

# Macenko's reference (as in torchstain and TIAToolbox): columns H, E (OD, rows R, G, B).
H_E_REFERENCE = ((0.5626, 0.2159), (0.7201, 0.8012), (0.4062, 0.5581))
MAX_C_REFERENCE = (1.9705, 1.0308)
# Pixels :meth:`MacenkoNormaliser.transform_batch` takes in one pass. Its float32 arrays
# (the OD and its zeroed copy, projections, angles, concentrations, the log image: about
# 60 bytes a pixel) then stay in the caches: 64 tiles of 128 px in one pass took 0.60 ms a
# tile against 0.37 ms 16 at a time, and 512 of 64 px 0.23 against 0.11 ms 64 at a time
# (2 cores, tissue tiles of the bundled slide).
CHUNK_PIXELS = 1 << 18


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

    def _od(self, rgb: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """Optical density (N, 3) of RGB pixels from a 256-entry table (``np.take``:
        half the time of fancy indexing)."""
        return np.take(self._od_table(dtype), rgb.reshape(-1, 3))

    def estimate(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(stain matrix 3x2, concentrations 2xN, their 99th percentiles) of an image (the
        reference :meth:`fit` takes), from every pixel. (An earlier version used every
        k-th pixel; on a 256-px reference of the bundled slide k was 8, so the sample
        sat at the same place of every 8 x 8 JPEG block, put the eosin maximum 14 %
        too high and darkened every normalised tile by 3 grey levels against
        torchstain's.)"""
        od = self._od(rgb_image(rgb))
        stained = od[(od >= self.beta).all(axis=1)]
        if len(stained) < self.min_pixels:
            raise StainError(f"{len(stained)} stained pixels, fewer than {self.min_pixels}")
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
        maxima = np.percentile(concentrations, 99, axis=1)
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
        """The tile (RGB uint8) re-rendered with the reference stains: a batch of one
        (:meth:`transform_batch`, so one tile and a batch give the same pixels); raises
        :class:`StainError` when the tile has too little stain."""
        out, untouched = self.transform_batch(rgb_image(tile, "tile")[None])
        if untouched:
            raise StainError("too little stain to tell haematoxylin from eosin")
        return out[0]

    def transform_batch(self, tiles: np.ndarray) -> tuple[np.ndarray, int]:
        """:meth:`transform` of every tile of a uint8 batch (n, h, w, 3) at once: the
        same estimate per tile, as stacked arrays (batched covariance, eigenvectors and
        pseudo-inverses; percentiles by selections) instead of some thirty
        small numpy calls per tile. Tiles with too little stain stay untouched. Returns
        (tiles, how many stayed untouched).

        Speed (it runs on every tile before the network): per-pixel passes in float32,
        on channel-planar OD (contiguous rows for numpy and BLAS), and in OpenCV where
        it has the operation (the OD table by ``cv2.LUT``, the stained mask by
        ``inRange``: 5x and 2x numpy's ``take`` and maxima); the covariance from Gram
        products of the stained pixels (no centred copy); the percentiles by a
        selection that looks at few pixels (:func:`_smallest`); and the whole
        re-rendering folded into one 3x3 matrix per tile, since it is linear
        in optical density until the final ``exp``: reference vectors x concentration
        scale x pseudo-inverse of the tile's vectors, plus ln(io) so that ``exp`` gives
        the grey levels directly. A big batch goes :data:`CHUNK_PIXELS` at a time."""
        tiles = np.ascontiguousarray(tiles)
        n, h, w, _ = tiles.shape
        step = max(1, CHUNK_PIXELS // (h * w))
        if n <= step:
            return self._transform_chunk(tiles)
        out, untouched = np.empty_like(tiles), 0
        for start in range(0, n, step):
            out[start:start + step], count = self._transform_chunk(tiles[start:start + step])
            untouched += count
        return out, untouched

    def _transform_chunk(self, tiles: np.ndarray) -> tuple[np.ndarray, int]:
        """:meth:`transform_batch` of a C-contiguous batch in one pass."""
        n, h, w, _ = tiles.shape
        image = tiles.reshape(n * h, w, 3)  # the batch as one tall image, for OpenCV
        # Stained: OD >= beta in every channel, i.e. every channel at most a grey level.
        darkest = float(np.floor(self.io * np.exp(-self.beta) - 1.0 + 1e-9))
        stained = cv2.inRange(image, (0, 0, 0), (darkest,) * 3)  # 255 where stained
        unstained = cv2.bitwise_not(stained)
        counts = np.count_nonzero(stained.reshape(n, -1), axis=1)
        # The OD channel-planar (n, 3, pixels): contiguous rows make the products and
        # arctan2 2-5x faster than on interleaved channels. And the OD with unstained
        # pixels zeroed (for the covariance): the same table with grey level 255 at OD
        # 0, on the channel with unstained pixels set to 255 (a stained pixel is never
        # that bright); two table passes on bytes cost about a third of one masked
        # multiply of the floats.
        planar = np.empty((3, n * h, w), np.float32)
        zeroed = np.empty((3, n * h, w), np.float32)
        zero_white = self._od_table()
        zero_white[255] = 0.0
        for channel, grey in enumerate(cv2.split(image)):
            cv2.LUT(grey, self._od_table(), dst=planar[channel])
            cv2.LUT(cv2.bitwise_or(grey, unstained), zero_white, dst=zeroed[channel])
        planar, zeroed = (a.reshape(3, n, -1).transpose(1, 0, 2) for a in (planar, zeroed))
        plane = self._stain_planes(zeroed, counts)
        projected = plane.transpose(0, 2, 1).astype(np.float32) @ planar  # (n, 2, pixels)
        phi = np.arctan2(projected[:, 1], projected[:, 0])
        # inf where unstained (a byte table again): the selections below add or
        # subtract it to push those pixels past every stained one.
        penalty = cv2.LUT(stained, np.where(np.arange(256) == 0, np.inf, 0.0)
                          .astype(np.float32)).reshape(n, -1)
        low, high = _extreme_percentiles(phi, penalty, counts, self.alpha)
        low, high = (np.where(np.isfinite(v), v, 0.0) for v in (low, high))  # blank tiles
        v_low = (plane @ np.stack([np.cos(low), np.sin(low)], 1)[..., None])[..., 0]
        v_high = (plane @ np.stack([np.cos(high), np.sin(high)], 1)[..., None])[..., 0]
        first = (v_low[:, 0] > v_high[:, 0])[:, None]
        matrix = np.stack([np.where(first, v_low, v_high), np.where(first, v_high, v_low)], 2)
        good = (counts >= self.min_pixels) & np.isfinite(matrix).all(axis=(1, 2))
        matrix[~good] = self.stain_matrix  # placeholders, never used
        good &= np.abs(np.linalg.det(matrix.transpose(0, 2, 1) @ matrix)) >= 1e-6
        inverse = np.linalg.pinv(matrix)  # (n, 2, 3): least squares, one product
        concentrations = inverse.astype(np.float32) @ planar  # (n, 2, pixels)
        maxima = _percentile_last(concentrations, 99)
        good &= (maxima > 1e-6).all(axis=1)
        scale = self.max_concentrations / np.where(maxima > 1e-6, maxima, 1.0)
        render = -(self.stain_matrix @ (inverse * scale[..., None]))  # (n, 3, 3)
        render[~good] = 0.0  # untouched tiles: no overflow from their placeholders
        out = self._rendered(planar, render).reshape(tiles.shape)
        out[~good] = tiles[~good]
        return out, int((~good).sum())

    def _od_table(self, dtype: type = np.float32) -> np.ndarray:
        """The optical density of each grey level 0-255 (torchstain's formula:
        -ln((I + 1) / Io))."""
        return (-np.log((np.arange(256, dtype=np.float64) + 1.0) / self.io)).astype(dtype)

    @staticmethod
    def _stain_planes(zeroed: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Per tile, the plane (3x2, unit columns of positive sum) of the two main
        directions of the stained pixels' OD: (n, 3, pixels) channel-planar OD with the
        unstained pixels at 0, and the count of stained pixels per tile.

        The covariance is (sum x x^T - count mean mean^T) / (count - 1), the sums
        as batched matrix-vector products (BLAS; a numpy sum over the pixel axis is 15x
        slower, and a 3 x pixels x 3 matrix product 5x), the 3x3 results in float64 so
        nothing is lost to cancellation."""
        size = zeroed.shape[2]
        gram = np.concatenate([zeroed @ zeroed[:, c, :, None] for c in range(3)], axis=2)
        total = (zeroed @ np.ones((size, 1), np.float32))[..., 0].astype(np.float64)
        mean = total / np.maximum(counts, 1)[:, None]
        cov = (gram.astype(np.float64) - counts[:, None, None] * mean[:, :, None]
               * mean[:, None, :]) / np.maximum(counts - 1, 1)[:, None, None]
        _, vectors = np.linalg.eigh(cov)
        plane = vectors[:, :, 1:3]
        return plane * np.where(plane.sum(axis=1, keepdims=True) < 0, -1.0, 1.0)

    def _rendered(self, planar: np.ndarray, render: np.ndarray) -> np.ndarray:
        """uint8 (n, pixels, 3) grey levels io x exp(render @ od) of (n, 3, pixels)
        channel-planar OD and (n, 3, 3) render matrices: one batched product, then over
        the batch a capped ``exp``, one rounding cast and one interleave (cv2.merge)."""
        n, _, size = planar.shape
        logs = render.astype(np.float32) @ planar  # (n, 3, pixels)
        logs += np.float32(np.log(self.io))
        # Capped at ln(256) (a pixel far outside the stains would overflow to inf, which
        # the cast turns into 0); 255.5 and above round to 255 anyway.
        np.minimum(logs, np.float32(np.log(256.0)), out=logs)
        logs = logs.reshape(n * 3, size)
        cv2.exp(logs, dst=logs)
        grey = cv2.convertScaleAbs(logs).reshape(n, 3, size)  # rounded, saturated
        return cv2.merge([grey[:, channel] for channel in range(3)])

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "stain_matrix": self.stain_matrix.tolist(),
                "max_concentrations": self.max_concentrations.tolist(), "io": self.io,
                "alpha": self.alpha, "beta": self.beta, "min_pixels": self.min_pixels}


def _extreme_percentiles(values: np.ndarray, penalty: np.ndarray, counts: np.ndarray,
                         q: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row, numpy's (linear) ``q`` and ``100 - q`` percentiles (float64) of the
    finite ``values`` where ``penalty`` is 0, not inf (``counts`` of them per row); any
    value for rows with none.

    Both need only the few smallest and few largest values (q is small), so each side is
    a selection of the deepest rank any row needs (:func:`_smallest`) and a sort of that
    head: 3x faster than sorting every row."""
    n, size = values.shape
    last = np.maximum(counts - 1, 0)
    # The deepest rank from either end that any row's percentile looks at: set by the
    # row with the most values (a mostly blank tile needs only a few).
    depth = min(size - 1, int(np.ceil(min(q, 100 - q) / 100.0 * last.max(initial=0))) + 1)
    rows = np.arange(n)
    result = []
    for percentile, sign in ((q, 1.0), (100 - q, -1.0)):
        # The low end ascending (sign 1) or the high end descending (sign -1): the
        # penalised values go to +inf or -inf, past every kept one (an addition: a
        # third of the time of np.where on a mask).
        keyed = values + penalty if sign > 0 else values - penalty
        head = _smallest(keyed, depth + 1) if sign > 0 else _largest(keyed, depth + 1)
        position = percentile / 100.0 * last
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, last)
        ranks = (below, above) if sign > 0 else (last - below, last - above)
        a, b = (head[rows, np.minimum(r, depth)].astype(np.float64) for r in ranks)
        with np.errstate(invalid="ignore"):
            result.append(a + (b - a) * (position - below))
    return result[0], result[1]


def _percentile_last(values: np.ndarray, q: float) -> np.ndarray:
    """numpy's (linear) ``q`` percentile over the last axis of ``values``, in float64:
    a selection (linear time) instead of a full sort; from the top (:func:`_largest`)
    when that is the shorter side, as for the 99th."""
    count = values.shape[-1]
    position = q / 100.0 * (count - 1)
    below = int(np.floor(position))
    above = min(below + 1, count - 1)
    if count - below < below:
        # Descending: the i-th value is the (count - 1 - i)-th ascending.
        top = _largest(values.reshape(-1, count), count - below)
        a, b = (top[:, count - 1 - r].reshape(values.shape[:-1]) for r in (below, above))
    else:
        parted = np.partition(values, sorted({below, above}), axis=-1)
        a, b = parted[..., below], parted[..., above]
    a, b = a.astype(np.float64), b.astype(np.float64)
    return a + (b - a) * (position - below)


def _smallest(values: np.ndarray, k: int, group: int = 8) -> np.ndarray:
    """The ``k`` smallest values of each row of ``values`` (rows, size), ascending:
    exactly the first ``k`` of a full sort of each row.

    Faster than a partition of the whole row when ``k`` is small: the row is cut into
    ``size / group`` strided groups (one elementwise minimum of ``group`` slices gives
    their minima), the ``k`` groups with the smallest minima are kept (a partition of
    the minima, 1/group of the row) and only their values partitioned. Exact: with t the
    k-th smallest group minimum, k groups hold a value <= t, so the row's k-th smallest
    value v is <= t; a value < v lies in a group whose minimum is < v <= t, which is one
    of the kept groups, and the kept groups hold at least k values <= v (their minima),
    so the kept values' k smallest are the row's (equal values are interchangeable)."""
    head = _head(values, k, group, largest=False)
    return np.sort(head, axis=1)


def _largest(values: np.ndarray, k: int, group: int = 8) -> np.ndarray:
    """The ``k`` largest values of each row of ``values`` (rows, size), descending: the
    mirror of :func:`_smallest` (group maxima), without negating the whole row."""
    head = _head(values, k, group, largest=True)
    return np.sort(head, axis=1)[:, ::-1]


def _head(values: np.ndarray, k: int, group: int, largest: bool) -> np.ndarray:
    """The ``k`` smallest (largest) values of each row, unordered: see :func:`_smallest`."""
    rows, size = values.shape
    k = max(1, min(k, size))
    if size % group or size // group < 4 * k:  # few groups: no gain, one partition
        return values if k == size else _partition_head(values, k, largest)
    width = size // group  # groups: columns of the (group, width) row
    extreme = np.maximum if largest else np.minimum
    ends = extreme.reduce(values.reshape(rows, group, width), axis=1)
    kept = np.argpartition(-ends if largest else ends, k - 1, axis=1)[:, :k]
    # Flat indices of the kept groups' values (np.take: 1/4 less than take_along_axis).
    flat = (kept + (np.arange(rows) * size)[:, None])[:, None, :] \
        + (np.arange(group) * width)[None, :, None]
    return _partition_head(np.take(values, flat.reshape(rows, -1)), k, largest)


def _partition_head(values: np.ndarray, k: int, largest: bool) -> np.ndarray:
    if largest:
        return np.partition(values, values.shape[1] - k, axis=1)[:, values.shape[1] - k:]
    return np.partition(values, k - 1, axis=1)[:, :k]
