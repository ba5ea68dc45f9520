"""The window reader every annotation kind implements: a class map (one class index per
map pixel, :data:`UNANNOTATED` where nothing is annotated) over a level-0 window, read at
the annotation's own resolution.

Each kind's reader (:mod:`~histotile.tiling.annotation_geojson`,
:mod:`~histotile.tiling.annotation_raster`) sets :attr:`scale` and :attr:`map_dims` and
implements :meth:`ClassMapWindows.class_map`;
:func:`histotile.tiling.annotations.annotation_fractions` integrates the maps over tile
boxes.
"""

from __future__ import annotations

import math

import numpy as np

UNANNOTATED = 255


class ClassMapWindows:
    """Class maps of one annotation over level-0 windows.

    Attributes:
        scale: level-0 pixels per map pixel along x and y.
        map_dims: the map's width and height in map pixels.
    """

    scale: tuple[float, float]
    map_dims: tuple[int, int]

    def window(self, x0: float, y0: float, x1: float, y1: float) -> tuple[np.ndarray, int, int]:
        """Class map (uint8, 255 = unannotated) covering level-0 box [x0,x1) x [y0,y1),
        with its top-left in map pixels."""
        sx, sy = self.scale
        mw, mh = self.map_dims
        mx0 = min(max(0, math.floor(x0 / sx)), mw - 1)
        my0 = min(max(0, math.floor(y0 / sy)), mh - 1)
        mx1 = max(min(mw, math.ceil(x1 / sx)), mx0 + 1)
        my1 = max(min(mh, math.ceil(y1 / sy)), my0 + 1)
        return self.class_map(mx0, my0, mx1, my1), mx0, my0

    def class_map(self, mx0: int, my0: int, mx1: int, my1: int) -> np.ndarray:
        """The class map of map pixels [mx0, mx1) x [my0, my1)."""
        raise NotImplementedError
