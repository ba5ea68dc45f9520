"""Settings of the tiling stage, as a dataclass that round-trips through a plain dict (it
travels in JSON model cards, reports and Dask tasks)."""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any, cast

from histotile._settings import refuse_unknown
from histotile.class_roles import ClassRoles, resolve_roles
from histotile.errors import ConfigError

RGB = tuple[int, int, int]
MIN_TILE_SIZE = 8
"""The smallest tile side the tiler cuts (px; ``tile --tile-size``). A network takes
smaller tiles than its own minimum resized up (see ``histotile.models.specs``)."""


@dataclass
class TilingSettings:
    """How a slide is cut into tiles and how tiles are filtered and labelled.

    Resolution (at most one of ``magnification``, ``mpp``, ``level``; none = level 0):
        tile_size: side of the output tiles in pixels at the target resolution.
        stride: step between tiles in pixels at the target resolution (None = tile_size,
            no overlap; smaller values overlap).
        magnification: target objective power (20 for 20x).
        mpp: target microns per pixel.
        level: an explicit pyramid level.

    Tissue and background:
        min_tissue: tissue fraction (0-1) below which a tile is background. 0.25 rather
            than 0.5 because glandular tissue (prostate, breast) has many white lumens
            that count as background pixels.
        keep_background: fraction of background tiles kept anyway (seeded), so a model
            sees glass and learns to call it benign.
        seed: seed of every random choice (background sampling, balancing).
        tissue_threshold: minimum chroma (max - min of R, G, B; 0-255) of a tissue pixel;
            None = chosen per slide by Otsu's method on the low-resolution view.
        tissue_downsample: level-0 pixels per pixel of the tissue mask (None = automatic:
            up to 32, at least 2048 px on the longer side).
        mask_min_area_um2: tissue-mask components smaller than this (square microns) are
            dropped as dust and specks.
        max_artefact: tiles whose artefact fraction (pen ink, fold, or 1 when out of
            focus; the manifest's ``artefact`` column) reaches this are dropped, and
            never sampled as background.
        keep_artefacts: keep those tiles anyway (ink over glass included; their
            ``artefact`` column says why).

    Labels:
        classes: class names; the order gives the ``frac_<class>`` columns and the pixel
            values of a label-mask image (value i = ``classes[i]``).
        default_class: the label of a tile no class covers enough (None = ``classes[0]``).
        positive_class: the class the model is to detect (None = ``classes[-1]``); not
            used for tiling, recorded in the manifest's JSON for training and the card.
        palette: painted-overlay colour (RGB) of each annotated class.
        min_label_fraction: a tile takes a class when the class covers at least this
            fraction of it (the original rule: 0.05, so borderline tiles lean to the
            annotated class, trading false negatives for false positives).
        overlay_threshold: a painted-overlay pixel is marked when one channel differs
            from the slide by at least this much (0-255): above JPEG noise.
        palette_tolerance: a marked pixel belongs to the nearest palette colour only if
            within this Euclidean RGB distance, and nearer to it than to the slide's
            pixel (JPEG smears the edges of paint); others are ignored as noise.
        annotation_resolution: map pixels per tile side when a GeoJSON annotation is
            rasterised (level-0 pixels per map pixel = tile extent / this).
    """

    tile_size: int = 128
    stride: int | None = None
    magnification: float | None = None
    mpp: float | None = None
    level: int | None = None
    min_tissue: float = 0.25
    keep_background: float = 0.02
    seed: int = 0
    tissue_threshold: float | None = None
    tissue_downsample: float | None = None
    mask_min_area_um2: float = 5_000.0
    max_artefact: float = 0.5
    keep_artefacts: bool = False
    classes: tuple[str, ...] = ("normal", "tumour")
    default_class: str | None = None
    positive_class: str | None = None
    palette: dict[str, RGB] = field(default_factory=lambda: {"tumour": (0, 255, 0)})
    min_label_fraction: float = 0.05
    overlay_threshold: int = 48
    palette_tolerance: float = 160.0
    annotation_resolution: int = 32

    def __post_init__(self) -> None:
        for name in ("tile_size", "stride", "level"):
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                setattr(self, name, int(value))
        if isinstance(self.classes, str):
            raise ConfigError(f"tiling setting classes={self.classes!r}: give a list of "
                              "class names, e.g. ['normal', 'tumour']")
        self.classes = tuple(str(c) for c in self.classes)
        # Three values each once validate() has checked them.
        self.palette = {str(k): cast(RGB, tuple(int(v) for v in rgb))
                        for k, rgb in self.palette.items()}
        self.validate()

    # -- derived -----------------------------------------------------------------------
    @property
    def step(self) -> int:
        """The stride in target pixels (``tile_size`` when no stride is set)."""
        return self.tile_size if self.stride is None else self.stride

    @property
    def roles(self) -> ClassRoles:
        """The classes' roles: ``default_class`` and ``positive_class``, or where not set
        their documented defaults (:func:`histotile.class_roles.resolve_roles`)."""
        return resolve_roles(self.classes, default_class=self.default_class,
                             positive_class=self.positive_class, where="tiling settings")

    @property
    def default_label(self) -> str:
        """``roles.default_class`` (the name before roles; kept for existing scripts)."""
        return self.roles.default_class

    @property
    def positive_label(self) -> str:
        """``roles.positive_class`` (the name before roles; kept for existing scripts)."""
        return self.roles.positive_class

    def target(self) -> dict[str, float | int]:
        """The resolution request as keyword arguments of ``Slide.choose_level``."""
        for name in ("magnification", "mpp", "level"):
            value = getattr(self, name)
            if value is not None:
                return {name: value}
        return {"level": 0}

    # -- checks ------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        def bad(name: str, problem: str) -> ConfigError:
            return ConfigError(f"tiling setting {name}={getattr(self, name)!r}: {problem}")

        if not isinstance(self.tile_size, numbers.Integral) or self.tile_size < MIN_TILE_SIZE:
            raise bad("tile_size", f"must be an integer of at least {MIN_TILE_SIZE} pixels")
        if self.stride is not None and (not isinstance(self.stride, numbers.Integral)
                                        or self.stride < 1):
            raise bad("stride", "must be a positive integer (pixels) or None for no overlap")
        targets = [n for n in ("magnification", "mpp", "level") if getattr(self, n) is not None]
        if len(targets) > 1:
            raise ConfigError(f"tiling settings give {' and '.join(targets)}: give at most one "
                              "of magnification, mpp and level")
        for name in ("magnification", "mpp"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise bad(name, "must be positive")
        if self.level is not None and (not isinstance(self.level, numbers.Integral)
                                       or self.level < 0):
            raise bad("level", "must be a pyramid level number (0, 1, ...)")
        for name in ("min_tissue", "keep_background", "min_label_fraction", "max_artefact"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise bad(name, "must be a fraction between 0 and 1")
        if self.tissue_threshold is not None and not 0 <= self.tissue_threshold <= 255:
            raise bad("tissue_threshold", "must be a chroma between 0 and 255, or None")
        if self.tissue_downsample is not None and self.tissue_downsample < 1:
            raise bad("tissue_downsample", "must be at least 1 (level-0 pixels per mask px)")
        if not self.classes:
            raise bad("classes", "give at least one class name")
        if len(set(self.classes)) != len(self.classes):
            raise bad("classes", "class names must be unique")
        for name in self.classes:
            if not name or any(ch in name for ch in "/\\,\n"):
                raise bad("classes", f"class name {name!r} is empty or has / \\ , or newline")
        if self.default_class is not None and self.default_class not in self.classes:
            raise bad("default_class", f"is not one of the classes {list(self.classes)}")
        if self.positive_class is not None and self.positive_class not in self.classes:
            raise bad("positive_class", f"is not one of the classes {list(self.classes)}")
        for name, rgb in self.palette.items():
            if name not in self.classes:
                raise bad("palette", f"colour for {name!r}, which is not one of the classes "
                          f"{list(self.classes)}; add it to classes or fix the name")
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise bad("palette", f"colour of {name!r} must be three values 0-255")
        if not 0 < self.overlay_threshold <= 255:
            raise bad("overlay_threshold", "must be between 1 and 255")
        if self.annotation_resolution < 1:
            raise bad("annotation_resolution", "must be a positive number of pixels")

    # -- dict round trip ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (lists for tuples)."""
        data = dataclasses.asdict(self)
        data["classes"] = list(self.classes)
        data["palette"] = {k: list(v) for k, v in self.palette.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TilingSettings:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        refuse_unknown(cls, data, "tiling")
        values = dict(data)
        if "classes" in values:
            values["classes"] = tuple(values["classes"])
        if "palette" in values and values["palette"] is not None:
            values["palette"] = {k: tuple(v) for k, v in values["palette"].items()}
        return cls(**values)
