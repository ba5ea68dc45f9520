"""The options of each slide command (``predict``, ``heatmap``, ``evaluate``, ``run``,
``tile``, ``qc``): one frozen dataclass each, built once at the edge (the CLI, the API,
``serve``, ``watch``) and passed whole to the batch, its Dask jobs and the per-slide
tasks. ``run`` does what ``predict`` and ``evaluate`` do, so :class:`RunOptions` is both
a :class:`PredictOptions` and an :class:`EvaluateOptions` (each field written once).
Light: the CLI imports it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from histotile.errors import ConfigError
from histotile.tiling.qc import QCSettings
from histotile.tiling.settings import TilingSettings
from histotile.tiling.stain import METHODS, StainMethod
from histotile.workflows.options import (
    AnnotationInputs,
    Geometry,
    HeatmapLook,
    ModelUse,
    Options,
    check_fraction,
    parse_classes,
    parse_ratios,
    renamed,
)


@dataclass(frozen=True, kw_only=True)
class SlideOptions(Options):
    """What every per-slide command takes."""

    overwrite: bool = False               # redo slides whose outputs exist


@dataclass(frozen=True, kw_only=True)
class ScoredOptions(SlideOptions):
    """What every command that reads tile probabilities takes."""

    threshold: float | None = None        # tile probability from which a tile is
    #                                       positive (None: the model card's operating
    #                                       point, else DEFAULT_THRESHOLD; see
    #                                       histotile.models.operating_point.tile_threshold)

    def validate(self) -> None:
        super().validate()
        check_fraction("tile", threshold=self.threshold)


@dataclass(frozen=True, kw_only=True)
class PredictOptions(ScoredOptions):
    """``histotile predict``: tiles cut as the model was trained (``geometry``: the
    values given instead), predicted as ``model`` says; ``threshold`` is recorded in the
    predictions' JSON for the later stages; ``geojson``: also the QuPath files."""

    geometry: Geometry = field(default_factory=Geometry)
    model: ModelUse = field(default_factory=ModelUse)
    geojson: bool = True                  # also predictions.geojson and regions.geojson


@dataclass(frozen=True, kw_only=True)
class HeatmapOptions(ScoredOptions):
    """``histotile heatmap``: the class shown and decided on (``positive_class``; None:
    the model card's), the share of positive tiles from which a slide is positive, and
    the look of the heatmap slides."""

    positive_class: str | None = None     # None: the model card's positive class
    decision_threshold: float = 0.5       # share of positive tiles for a positive slide
    look: HeatmapLook = field(default_factory=HeatmapLook)

    def validate(self) -> None:
        super().validate()
        check_fraction("slide", decision_threshold=self.decision_threshold)


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions(HeatmapOptions):
    """``histotile evaluate``: predictions scored against annotations; the truth of
    unannotated tiles is ``default_class`` (None: the model card's). (It takes the
    heatmap options as ``heatmap`` does: its fingerprint records them.)"""

    annotations: AnnotationInputs = field(default_factory=AnnotationInputs)
    default_class: str | None = None      # None: the model card's default class


@dataclass(frozen=True, kw_only=True)
class RunOptions(PredictOptions, EvaluateOptions):
    """``histotile run`` (and ``watch``, and ``serve``'s jobs): predict, heatmap, decide
    and, where annotated, evaluate every slide: the options of ``predict`` and of
    ``evaluate`` (each task takes the part it needs as that type)."""


@dataclass(frozen=True, kw_only=True)
class TileOptions(SlideOptions):
    """``histotile tile``: slides cut as ``tiling`` says (classes, palette and class
    roles included) and labelled from their annotations."""

    annotations: AnnotationInputs = field(default_factory=AnnotationInputs)
    tiling: TilingSettings = field(default_factory=TilingSettings)
    balance: dict[str, float] | None = None  # class ratios of the combined manifest
    strict: bool = False                  # an annotation that labels nothing fails
    export_images: bool = False           # also tile PNGs in an ImageFolder layout
    stain_normalise: StainMethod | None = None  # fit a stain normaliser
    stain_reference: str | None = None    # its reference image (None: tiled tissue)

    def validate(self) -> None:
        if self.stain_normalise is not None and self.stain_normalise not in METHODS:
            raise ConfigError(f"stain normaliser {self.stain_normalise!r}: use one of "
                              f"{', '.join(METHODS)}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TileOptions:
        """As :meth:`Options.from_dict`; ``classes`` may be the CLI's text
        (``'normal,tumour=#00ff00'``: classes and palette colours) and ``balance``
        ``'normal=1,tumour=1'``."""
        given = renamed(values or {}, cls.__name__)
        if isinstance(given.get("classes"), str):
            parsed = parse_classes(given["classes"])
            given["classes"] = parsed["classes"]
            given.setdefault("palette", parsed["palette"])
        elif "classes" in given:
            given.setdefault("palette", {})  # the default palette's classes may be gone
        if "balance" in given:
            given["balance"] = parse_ratios(given["balance"])
        return super().from_dict(given)


@dataclass(frozen=True, kw_only=True)
class QCOptions(SlideOptions):
    """``histotile qc``: the thresholds and sampling of slide QC."""

    qc: QCSettings = field(default_factory=QCSettings)
