"""Slide quality control: how much of a slide is tissue, pen ink, out of focus, folded,
under an air bubble or along a coverslip edge, a pass/warn/fail flag against thresholds,
and a thumbnail with each artefact outlined.

Memory is bounded whatever the slide size: tissue, ink, folds, bubbles and coverslip
edges are measured on one low pyramid level (about 8 um/px, at most 4096 px a side, like
the tissue mask); focus needs detail of a few microns, so it is measured on a seeded
sample of tissue tiles read at about 1 um/px (``blur_tiles`` reads of ``blur_tile_um``
squared).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from histotile._settings import refuse_unknown
from histotile.errors import ConfigError, HistotileError
from histotile.tiling.artefact_map import artefact_map
from histotile.tiling.artefacts import (
    BLUR_THRESHOLD,
    FOCUS_MPP,
    focus_measure,
)
from histotile.tiling.tissue import mask_from_rgb, slide_view

if TYPE_CHECKING:
    from histotile.tiling.plan import TilePlan

PASS, WARN, FAIL = "pass", "warn", "fail"
COLOURS = {"tissue": (0, 170, 0), "pen": (220, 0, 220), "blur": (255, 140, 0),
           "fold": (220, 0, 0), "bubble": (0, 190, 230), "edge": (40, 40, 255)}
"""Outline colour (RGB) of each mask on the QC thumbnail."""
_KINDS = ("pen", "blur", "fold", "bubble", "edge")


@dataclass
class QCSettings:
    """Thresholds and sampling of slide QC.

    Artefact fractions are shares of the specimen (tissue and ink) area, 0-1; a slide
    fails when one reaches its ``*_fail``, else warns when one reaches its ``*_warn``.

    Attributes:
        pen_warn, pen_fail, blur_warn, blur_fail, fold_warn, fold_fail: thresholds.
        bubble_warn, bubble_fail: thresholds for the specimen under air bubbles.
        edge_warn, edge_fail: thresholds for the specimen within a coverslip edge's band
            (48 um wide: an edge across a 10-mm specimen covers about 0.5 % of it, so
            any edge over the specimen warns, and one across a small biopsy fails).
        min_tissue: the slide fails when less than this share of its area is tissue.
        blur_tiles: tissue tiles sampled for focus (0: focus is not checked).
        blur_tile_um: side of a sampled tile, microns.
        seed: seeds the tile sample.
        thumbnail_size: longer side of the QC picture, pixels.
    """

    pen_warn: float = 0.02
    pen_fail: float = 0.15
    blur_warn: float = 0.10
    blur_fail: float = 0.30
    fold_warn: float = 0.05
    fold_fail: float = 0.20
    bubble_warn: float = 0.02
    bubble_fail: float = 0.15
    edge_warn: float = 0.001
    edge_fail: float = 0.05
    min_tissue: float = 0.005
    blur_tiles: int = 48
    blur_tile_um: float = 256.0
    seed: int = 0
    thumbnail_size: int = 1600

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        for kind in _KINDS:
            warn, fail = getattr(self, f"{kind}_warn"), getattr(self, f"{kind}_fail")
            if not 0 <= warn <= fail <= 1:
                raise ConfigError(f"QC settings {kind}_warn={warn!r}, {kind}_fail={fail!r}: "
                                  "give fractions with 0 <= warn <= fail <= 1")
        if not 0 <= self.min_tissue <= 1:
            raise ConfigError(f"QC setting min_tissue={self.min_tissue!r}: must be a "
                              "fraction between 0 and 1")
        if self.blur_tiles < 0 or self.blur_tile_um <= 0 or self.thumbnail_size < 64:
            raise ConfigError("QC settings blur_tiles >= 0, blur_tile_um > 0 and "
                              "thumbnail_size >= 64 are required")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QCSettings:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        refuse_unknown(cls, data, "QC")
        return cls(**data)


@dataclass
class SlideQC:
    """QC of one slide.

    Attributes:
        slide: slide name.
        fractions: ``tissue`` (share of the slide area), ``pen``, ``blur``, ``fold``,
            ``bubble``, ``edge`` (shares of the specimen area; ``blur`` is the share of
            sampled tissue tiles out of focus, NaN when focus could not be judged).
        flag: ``pass``, ``warn`` or ``fail``; reasons: why not pass.
        picture: RGB uint8 thumbnail with outlines and a legend.
        view_mpp: microns per pixel of the view the masks were measured on (None when
            the slide has no resolution).
    """

    slide: str
    fractions: dict[str, float]
    flag: str
    reasons: list[str] = field(default_factory=list)
    picture: np.ndarray | None = None
    view_mpp: float | None = None


def _flag(fractions: dict[str, float], settings: QCSettings) -> tuple[str, list[str]]:
    fails, warns = [], []
    if fractions["tissue"] < settings.min_tissue:
        fails.append(f"tissue {fractions['tissue']:.1%} < {settings.min_tissue:.1%}")
    for kind in _KINDS:
        value = fractions.get(kind, math.nan)  # absent or NaN: not judged
        if math.isnan(value):
            continue
        if value >= getattr(settings, f"{kind}_fail"):
            fails.append(f"{kind} {value:.1%} >= {getattr(settings, f'{kind}_fail'):.1%}")
        elif value >= getattr(settings, f"{kind}_warn"):
            warns.append(f"{kind} {value:.1%} >= {getattr(settings, f'{kind}_warn'):.1%}")
    if fails:
        return FAIL, fails + warns
    return (WARN, warns) if warns else (PASS, [])


def _blur_sample(slide, specimen: np.ndarray, downsample: float, settings: QCSettings,
                 ) -> tuple[float, np.ndarray]:
    """Share of sampled tissue tiles out of focus (NaN when not judged) and the mask
    (view scale) of the blurry ones."""
    blurry_mask = np.zeros(specimen.shape, dtype=bool)
    if settings.blur_tiles == 0 or not slide.mpp:
        return float("nan"), blurry_mask
    choice = slide.choose_level(mpp=FOCUS_MPP)
    level, level_ds = choice.level, choice.level_downsample
    read = max(16, round(settings.blur_tile_um / (slide.mpp * level_ds)))
    extent = read * level_ds  # level-0 px
    side = max(1, round(extent / downsample))  # view px
    # Candidate tiles: view-grid cells that are mostly specimen.
    rows, cols = specimen.shape[0] // side, specimen.shape[1] // side
    if rows == 0 or cols == 0:
        return float("nan"), blurry_mask
    cells = specimen[:rows * side, :cols * side].reshape(rows, side, cols, side).mean((1, 3))
    ys, xs = np.nonzero(cells >= 0.75)
    if len(ys) == 0:
        return float("nan"), blurry_mask
    rng = np.random.default_rng(settings.seed)
    pick = rng.choice(len(ys), size=min(settings.blur_tiles, len(ys)), replace=False)
    level_mpp = slide.mpp * level_ds
    blurry = 0
    for k in np.sort(pick):
        y, x = int(ys[k]) * side, int(xs[k]) * side
        tile = slide.read_region((round(x * downsample), round(y * downsample)), level,
                                 (read, read))
        if focus_measure(tile, level_mpp) < BLUR_THRESHOLD:
            blurry += 1
            blurry_mask[y:y + side, x:x + side] = True
    return blurry / len(pick), blurry_mask


def slide_qc(slide_path: str | Path, settings: QCSettings | None = None) -> SlideQC:
    """Quality control of one slide: fractions, flag and the QC picture (see the module
    docstring for what is read)."""
    from histotile.wsi import open_slide

    settings = settings or QCSettings()
    with open_slide(slide_path) as slide:
        view, downsample = slide_view(slide)
        view_mpp = slide.mpp * downsample if slide.mpp else None
        found, _ = mask_from_rgb(view, downsample, mpp=slide.mpp)
        # The same view and rules as tiling's (its plan's artefact map).
        artefacts = artefact_map(view, downsample, slide.mpp).masks
        fractions, masks = _view_figures(found, artefacts)
        blur_share, masks["blur"] = _blur_sample(slide, masks["tissue"], downsample, settings)
        # The picture may be sharper than the view on small slides (masks drawn scaled).
        backdrop = (slide.thumbnail(settings.thumbnail_size)
                    if max(view.shape[:2]) < settings.thumbnail_size else view)
        name = slide.name
    fractions["blur"] = blur_share
    # In the legend's order (that of COLOURS).
    fractions = {kind: fractions[kind] for kind in COLOURS}
    masks = {kind: masks[kind] for kind in COLOURS}
    flag, reasons = _flag(fractions, settings)
    picture = qc_picture(backdrop, masks, fractions, flag, settings.thumbnail_size)
    return SlideQC(name, fractions, flag, reasons, picture, view_mpp)


def plan_qc(plan: TilePlan, settings: QCSettings | None = None) -> tuple[dict[str, float],
                                                                         str, list[str]]:
    """``(fractions, flag, reasons)`` of a slide from its tiling ``plan`` (its tissue
    mask and artefact map, made from the view :func:`slide_qc` reads): the same figures
    without a second read of the view; focus is not judged (it needs tiles)."""
    fractions, _ = _view_figures(plan.mask.mask, plan.artefacts.masks)
    flag, reasons = _flag(fractions, settings or QCSettings(blur_tiles=0))
    return fractions, flag, reasons


def _view_figures(found: np.ndarray, artefacts: dict[str, np.ndarray]
                  ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The view's fractions (tissue of the slide area; pen, fold, bubble and edge of the
    specimen area) and the masks to outline, from the tissue pixel mask ``found`` and
    the :func:`~histotile.tiling.artefact_map.artefact_map` masks."""
    pen, fold = artefacts["pen"], artefacts["fold"]
    specimen = found | pen | fold  # a fold's darkest parts fail the tissue pixel test
    tissue = (found | fold) & ~pen
    area = max(int(specimen.sum()), 1)
    # Bubbles and edges are outlined whole and counted on the specimen.
    fractions = {"tissue": float(tissue.mean()),
                 **{kind: float((artefacts[kind] & specimen).sum() / area)
                    for kind in ("pen", "fold", "bubble", "edge")}}
    return fractions, {"tissue": tissue, "pen": pen, "fold": fold,
                       "bubble": artefacts["bubble"], "edge": artefacts["edge"]}


def qc_picture(view: np.ndarray, masks: dict[str, np.ndarray], fractions: dict[str, float],
               flag: str, size: int = 1600) -> np.ndarray:
    """The view (RGB uint8) shrunk to ``size`` px on its longer side, each mask (any
    resolution, same aspect) outlined in its :data:`COLOURS`, with a legend band below
    giving the fractions and flag."""
    scale = min(1.0, size / max(view.shape[:2]))
    h, w = max(1, round(view.shape[0] * scale)), max(1, round(view.shape[1] * scale))
    picture = cv2.resize(view, (w, h), interpolation=cv2.INTER_AREA) if scale < 1 else \
        view.copy()
    thickness = max(1, round(max(h, w) / 600))
    for kind, mask in masks.items():
        if not mask.any():
            continue
        small = cv2.resize(mask.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(picture, contours, -1, COLOURS[kind], thickness)
    # Legend band: a swatch and "name NN.N %" per mask, then the flag.
    band_h, step = 28, 140
    per_row = max(1, (w - 6) // step)  # entries (and the flag, last) wrap to fit
    rows = math.ceil((len(masks) + 1) / per_row)
    band = np.full((band_h * rows, w, 3), 255, np.uint8)
    x, y = 6, 0
    flag_colour = {PASS: (0, 140, 0), WARN: (200, 120, 0), FAIL: (200, 0, 0)}[flag]
    for kind in masks:
        value = fractions.get(kind, float("nan"))
        text = f"{kind} {'n/a' if math.isnan(value) else f'{value:.1%}'}"
        cv2.rectangle(band, (x, y + 7), (x + 14, y + 21), COLOURS[kind], -1)
        cv2.putText(band, text, (x + 20, y + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
        x += step
        if x + step > w:
            x, y = 6, y + band_h
    cv2.putText(band, flag.upper(), (x + 4, y + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                flag_colour, 2, cv2.LINE_AA)
    return np.concatenate([picture, band], axis=0)


def write_picture(picture: np.ndarray, path: str | Path) -> Path:
    """Write an RGB picture as PNG atomically."""
    from histotile._atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        ok, data = cv2.imencode(".png", picture[:, :, ::-1])
        if not ok:
            raise HistotileError(f"{path}: the QC picture could not be encoded")
        Path(tmp).write_bytes(data.tobytes())
    return path
