"""Why a slide gave no tissue tile: the reason a zero-tile slide's warning gives
(``histotile tile`` and ``run``), so that "ok, 0 tiles" is never said without one."""

from __future__ import annotations

import numpy as np

GREY_CHROMA = 8
"""A slide whose view's 99th percentile of chroma (max - min of R, G, B, 0-255) is below
this has no colour: greyscale, or a colour image of a grey picture."""

_VIEW = 512  # longest side (px) of the view looked at


def colour_reason(slide) -> str | None:
    """The reason an open slide can hold no tissue to histotile's eyes, from a small
    view of it: greyscale (tissue is told from glass by its stain's colour), or blank;
    None when it has colour."""
    view = np.asarray(slide.thumbnail(_VIEW))
    chroma = view.max(axis=2).astype(np.int16) - view.min(axis=2)
    if float(np.percentile(chroma, 99)) >= GREY_CHROMA:
        return None
    if int(view.max()) - int(view.min()) < GREY_CHROMA:
        return ("the slide is blank (one flat colour, "
                f"{tuple(int(v) for v in view.reshape(-1, 3)[0])}): check the file")
    return ("the slide has no colour (greyscale): tissue is told from glass by its "
            "stain's colour, so none was found; tile a colour (e.g. H&E) scan")


def no_tissue_reason(slide, plan, manifest) -> str | None:
    """Why tiling ``slide`` with ``plan`` (:class:`~histotile.tiling.plan.TilePlan`) kept
    no tissue tile in ``manifest``; None when it kept some."""
    tissue = manifest["tissue_fraction"].to_numpy(np.float64) if len(manifest) else \
        np.zeros(0)
    if plan.is_tissue(tissue).any():
        return None
    grid = plan.grid
    lead = "no tissue tile: "
    if len(grid.xs) == 0:
        width, height = grid.slide_dimensions
        return (f"{lead}the slide ({width} x {height} px) is smaller than one tile "
                f"({grid.extent} px at level 0); choose smaller tiles or another level")
    reason = colour_reason(slide)
    if reason is not None:
        return lead + reason
    if not plan.mask.mask.any():
        return (f"{lead}no tissue was found (the slide looks like bare glass at chroma "
                f"threshold {plan.mask.threshold:.0f}); check the slide")
    most = float(tissue.max()) if tissue.size else 0.0
    return (f"{lead}no tile is at least {plan.settings.min_tissue:.0%} tissue (the most "
            f"of the tiles kept: {most:.0%}), or those that are were mostly artefact; "
            "lower --min-tissue, or choose smaller tiles")
