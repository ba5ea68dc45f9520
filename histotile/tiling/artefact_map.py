"""Pen ink, tissue folds, air bubbles and coverslip edges of a whole slide, judged once on
its low-resolution view (the one the tissue mask is made from, about 8 um/px) and read
off per tile by tiling and slide prediction.

Why the view and not each tile's pixels: these artefacts are large (a pen stroke is
hundreds of microns wide, a fold tens to hundreds, a bubble 100 um to millimetres) and
the pen and fold tests average colour or density over 16 um or more, which a pyramid
level already does. Judged on the tiles, pen and folds cost tiling half again the time
of its reads (0.17 ms of checks per 128-px tile against 0.39 ms of reading); on the view
they cost one pass over a few million pixels per slide. Focus is the exception: it
needs detail of a few microns, so it stays a per-tile check
(:mod:`histotile.tiling.artefact_batches`). Slide QC (:mod:`histotile.tiling.qc`)
judges the same view with the same rules.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from histotile.tiling._boxes import box_sums, integral_image
from histotile.tiling.artefacts import fold_mask, pen_mask
from histotile.tiling.mount_artefacts import mount_masks

VIEW_FALLBACK_MPP = 8.0
"""Microns per view pixel assumed for a slide that records no resolution."""


KINDS = ("pen", "fold", "bubble", "edge")
"""The artefacts an :class:`ArtefactMap` holds (focus is a per-tile check)."""


@dataclass
class ArtefactMap:
    """Bool masks of a slide's artefacts at the view's scale.

    Attributes:
        masks: bool (h, w) mask of each kind of :data:`KINDS`, over view pixels
            ``origin`` onward.
        downsample: level-0 pixels per view pixel.
        origin: (column, row) of the masks' first pixel in the whole view (not 0 in a
            :meth:`crop`).
    """

    masks: dict[str, np.ndarray]
    downsample: float
    origin: tuple[int, int] = (0, 0)

    @property
    def pen(self) -> np.ndarray:
        return self.masks["pen"]

    @functools.cached_property
    def _integrals(self) -> dict[str, np.ndarray]:
        union = functools.reduce(np.logical_or, self.masks.values())
        return {**{kind: integral_image(mask) for kind, mask in self.masks.items()},
                "artefact": integral_image(union)}

    def fractions(self, kind: str, xs: np.ndarray, ys: np.ndarray,
                  extent: float) -> np.ndarray:
        """Share (float64 (n,), 0-1, area-weighted) of each level-0 box (top-left ``(xs,
        ys)``, side ``extent`` level-0 pixels) covered by the ``kind`` mask (one of
        :data:`KINDS`, or ``"artefact"``: any of them)."""
        ds = self.downsample
        x0 = np.asarray(xs, np.float64) / ds - self.origin[0]
        y0 = np.asarray(ys, np.float64) / ds - self.origin[1]
        sums = box_sums(self._integrals[kind], x0, y0, x0 + extent / ds, y0 + extent / ds)
        return np.clip(sums / (extent / ds) ** 2, 0.0, 1.0)

    def pen_pixels(self, xs: np.ndarray, ys: np.ndarray, extent: float,
                   size: int) -> tuple[np.ndarray, np.ndarray]:
        """The pen mask over the pixels of the tiles it touches: ``(inked, masks)``,
        positions into ``xs``/``ys`` (int64 (k,)) and bool (k, size, size), for tiles of
        ``size`` px covering level-0 boxes (``xs``, ``ys``, side ``extent``); each tile
        pixel takes the view pixel under its centre. Tiles without ink (most) cost one
        box sum each."""
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        inked = (np.flatnonzero(self.fractions("pen", xs, ys, extent) > 0) if self.pen.any()
                 else np.zeros(0, np.int64))
        masks = np.zeros((len(inked), size, size), bool)
        step = (np.arange(size) + 0.5) * (extent / size)
        h, w = self.pen.shape
        for k, i in enumerate(inked):
            rows = np.clip(((ys[i] + step) // self.downsample).astype(np.int64)
                           - self.origin[1], 0, h - 1)
            cols = np.clip(((xs[i] + step) // self.downsample).astype(np.int64)
                           - self.origin[0], 0, w - 1)
            masks[k] = self.pen[rows[:, None], cols[None, :]]
        return inked, masks

    def crop(self, xs: np.ndarray, ys: np.ndarray, extent: float) -> ArtefactMap:
        """The part of the map under the level-0 boxes (``xs``, ``ys``, side ``extent``)
        plus a pixel of margin: what a tiling worker needs for its region (a small
        pickle instead of the whole view)."""
        ds = self.downsample
        h, w = self.pen.shape
        if len(xs) == 0:
            return ArtefactMap({k: m[:0, :0] for k, m in self.masks.items()}, ds, self.origin)
        c0 = max(int(np.min(xs) // ds) - 1 - self.origin[0], 0)
        r0 = max(int(np.min(ys) // ds) - 1 - self.origin[1], 0)
        c1 = min(int((np.max(xs) + extent) // ds) + 2 - self.origin[0], w)
        r1 = min(int((np.max(ys) + extent) // ds) + 2 - self.origin[1], h)
        return ArtefactMap({k: m[r0:r1, c0:c1].copy() for k, m in self.masks.items()}, ds,
                           (self.origin[0] + c0, self.origin[1] + r0))


def artefact_map(view: np.ndarray, downsample: float, mpp: float | None) -> ArtefactMap:
    """The :class:`ArtefactMap` of a slide's low-resolution RGB ``view`` (``downsample``
    level-0 px per pixel; ``mpp``: the slide's level-0 microns per pixel, or None): pen
    ink of any colour (:func:`~histotile.tiling.artefacts.pen_mask`); folds
    (:func:`~histotile.tiling.artefacts.fold_mask`, which judges density on whatever is
    not glass or ink: not only on the tissue mask, whose pixel test takes the darkest
    parts of a fold for black dust); air bubbles and coverslip edges
    (:func:`~histotile.tiling.mount_artefacts.mount_masks`)."""
    view_mpp = mpp * downsample if mpp else VIEW_FALLBACK_MPP
    pen = pen_mask(view, view_mpp)
    return ArtefactMap({"pen": pen, "fold": fold_mask(view, view_mpp, pen) & ~pen,
                        **mount_masks(view, view_mpp)}, float(downsample))
