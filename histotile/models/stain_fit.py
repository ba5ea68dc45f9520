"""A stain normaliser for an image folder's training set (``TrainSettings.stain``): fitted
once to a reference image or to a seeded mosaic of the folder's own images, recorded in
the tile table's geometry, so the tile source normalises every training tile with it and
the model card carries it to prediction (as a manifest's normaliser from ``histotile tile
--stain-normalise`` does)."""

from __future__ import annotations

import numpy as np

from histotile.errors import ConfigError
from histotile.models.data import TileTable

SAMPLE = 64
"""Images in the mosaic the normaliser is fitted to when no reference is given."""


def fit_table_stain(table: TileTable, method: str | None, reference: str | None,
                    seed: int) -> None:
    """Fit ``method``'s normaliser for ``table`` (an image folder) and record it in
    ``table.geometry["stain"]``; nothing when ``method`` is None. A manifest's
    normaliser is the tiler's: asking for another one here is a :class:`ConfigError`."""
    if method is None:
        return
    if table.kind != "imagefolder":
        raise ConfigError(f"stain={method!r}: {table.source} is a tile manifest, whose stain "
                          "normaliser is chosen when tiling (histotile tile "
                          "--stain-normalise); leave stain unset for manifests")
    from histotile.tiling.stain import create_normaliser, mosaic, read_reference

    if reference is not None:
        image, where = read_reference(reference), str(reference)
    else:
        rng = np.random.default_rng(seed)
        count = len(table.frame)
        rows = np.sort(rng.choice(count, min(SAMPLE, count), replace=False))
        reader = table.reader()
        image = mosaic(np.stack([reader[int(i)] for i in rows]))
        reader.close()
        where = f"a mosaic of {rows.size} of the training images (seed {seed})"
    state = create_normaliser(method).fit(image).to_dict()
    table.geometry["stain"] = {**state, "reference": where}
    table.notes.append(f"{method} stain normaliser fitted to {where}")
