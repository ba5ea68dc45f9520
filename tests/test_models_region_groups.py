"""Region groups: one slide's tiles grouped by the 512-px cell holding each tile's centre,
the same cells whether asked for by ``ht.spatial_groups`` or ``group_by="region"``."""

from __future__ import annotations

import pandas as pd

import histotile as ht
from histotile.models.groups import group_values


def test_spatial_groups_name_the_cell_of_each_tile_centre_as_group_by_region_does():
    manifest = pd.DataFrame({"slide": "s", "path": "/slides/s.svs", "extent": 128,
                             "x": [0, 447, 448, 1000], "y": [0, 0, 600, 1100]})
    groups = ht.spatial_groups(manifest)
    # x 447 + 64 = 511 stays in column 0, x 448 + 64 = 512 moves to column 1
    assert list(groups) == ["s:0,0", "s:0,0", "s:1,1", "s:2,2"]
    assert list(ht.spatial_groups(manifest, region=256)) == ["s:0,0", "s:1,0", "s:2,2",
                                                              "s:4,4"]
    assert list(group_values(manifest, "region")) == list(groups)
