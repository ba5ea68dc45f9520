"""Options typed once at the edge. The slide commands' settings are frozen dataclasses
built once by the CLI, the API, ``serve`` and ``watch`` (``from_dict`` refuses unknown
names) and passed whole to the tasks and Dask jobs; each default is written once, as a
field's default, which the CLI's options and help texts read.

Here: the parsers of CLI-style values (colours, class lists, balance ratios), the
:class:`Options` base (flat option names over nested groups, old spellings), and the
option groups several commands share (:class:`Geometry`, :class:`ModelUse`,
:class:`HeatmapLook`, :class:`AnnotationInputs`). The commands' own options are in
:mod:`histotile.workflows.slide_options`. Light: the CLI imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from histotile._deprecation import warn_renamed
from histotile.errors import ConfigError
from histotile.models.engines import ENGINES, EngineName
from histotile.postprocess.render import MODES, BlendStyle, HeatmapMode

if TYPE_CHECKING:
    from typing import Self


NAMED_COLOURS = {"green": (0, 255, 0), "red": (255, 0, 0), "blue": (0, 0, 255),
                 "yellow": (255, 255, 0), "cyan": (0, 255, 255), "magenta": (255, 0, 255),
                 "black": (0, 0, 0), "orange": (255, 165, 0)}


def parse_colour(text: str) -> tuple[int, int, int]:
    """``#00ff00``, ``00ff00`` or a colour name (green, red, blue, ...) as RGB."""
    value = text.strip().lower()
    if value in NAMED_COLOURS:
        return NAMED_COLOURS[value]
    digits = value.lstrip("#")
    if len(digits) == 6:
        try:
            return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
        except ValueError:
            pass
    raise ConfigError(f"colour {text!r}: use #rrggbb (e.g. #00ff00) or a name "
                      f"({', '.join(NAMED_COLOURS)})")


def parse_classes(text: str | None) -> dict[str, Any]:
    """``'normal,tumour=#00ff00'`` as ``{'classes': (...), 'palette': {...}}`` (empty when
    ``text`` is None). The first class is the default (unmarked) one."""
    from histotile._names import check_folder_name

    if not text:
        return {}
    classes, palette = [], {}
    for item in text.split(","):
        name, _, colour = item.partition("=")
        name = name.strip()
        if not name:
            raise ConfigError(f"--classes {text!r}: empty class name")
        check_folder_name(name, f"--classes {text!r}")
        classes.append(name)
        if colour:
            palette[name] = parse_colour(colour)
    return {"classes": tuple(classes), "palette": palette}


def format_classes(classes: tuple[str, ...], palette: Mapping[str, tuple[int, ...]]) -> str:
    """The inverse of :func:`parse_classes`: ``('normal', 'tumour'), {'tumour': (0, 255,
    0)}`` as ``'normal,tumour=#00ff00'``."""
    return ",".join(name + ("=#{:02x}{:02x}{:02x}".format(*palette[name])
                            if name in palette else "") for name in classes)


def parse_ratios(text: str | Mapping[str, float] | None) -> dict[str, float] | None:
    """``'normal=1,tumour=1'`` as ``{'normal': 1.0, 'tumour': 1.0}``."""
    if text is None or isinstance(text, Mapping):
        return None if text is None else dict(text)
    ratios = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            ratios[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--balance {text!r}: write class=ratio pairs, e.g. "
                              "'normal=1,tumour=1'") from None
    return ratios


# -- old spellings ----------------------------------------------------------------------

RENAMED = {"class_name": "positive_class"}
"""Option names of earlier versions (config files, ``from_dict`` keys) -> today's."""
NEGATED = {"no_geojson": "geojson"}
"""Old negative switches -> today's positive ones (``no_geojson: true`` is
``geojson: false``)."""


def renamed(values: Mapping[str, Any], what: str = "options",
            known: Collection[str] | None = None) -> dict[str, Any]:
    """``values`` with the old spellings of :data:`RENAMED` and :data:`NEGATED` under
    today's names (only those in ``known``, when given), each with a
    :class:`DeprecationWarning`; None values (not given) are dropped. Both spellings given
    is a :class:`ConfigError`."""
    result = {k: v for k, v in values.items() if v is not None}
    for old, new in (*RENAMED.items(), *NEGATED.items()):
        if old not in result or (known is not None and new not in known):
            continue
        if new in result:
            raise ConfigError(f"{what}: {old} and {new} are one option; give only {new}")
        value = result.pop(old)
        result[new] = (not value) if old in NEGATED else value
        flag = new.replace("_", "-")
        warn_renamed(what, old, new, stacklevel=4,
                     hint=f"--{flag}" + ("" if old not in NEGATED else f"/--no-{flag}"))
    return result


# -- the base of every options dataclass ------------------------------------------------

def field_default(cls: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``cls`` (the one place it is
    written; the CLI's options read it here)."""
    for item in fields(cls):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            if item.default_factory is not dataclasses.MISSING:
                return item.default_factory()
            raise ConfigError(f"{cls.__name__}.{name} has no default")
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def groups(cls: type) -> dict[str, type[Any]]:
    """The fields of ``cls`` that are groups of options themselves (a dataclass default),
    by field name: their option names are the group's fields, flat."""
    found = {}
    for item in fields(cls):
        default = (item.default_factory() if item.default_factory is not dataclasses.MISSING
                   else item.default)
        if dataclasses.is_dataclass(default):
            found[item.name] = type(default)
    return found


def option_names(cls: type) -> tuple[str, ...]:
    """Every option name of the options dataclass ``cls``, its groups' fields included:
    the keys of ``from_dict``, the CLI's option names, a configuration file's keys."""
    nested = groups(cls)
    names: list[str] = []
    for item in fields(cls):
        names.extend(option_names(nested[item.name]) if item.name in nested else [item.name])
    return tuple(names)


@dataclass(frozen=True, kw_only=True)
class Options:
    """The base of the slide commands' options: frozen dataclasses whose fields are
    options or groups of options (e.g. :class:`Geometry`); every option has one name,
    flat across the groups, which is its CLI option's and its configuration key."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad option (subclasses add theirs)."""

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return option_names(cls)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Self:
        """Options from flat option names and values (None: the default); old spellings
        are accepted with a :class:`DeprecationWarning`, unknown names are a
        :class:`ConfigError`."""
        what = f"{cls.__name__}"
        given = renamed(values or {}, what)
        unknown = sorted(set(given) - set(cls.option_names()))
        if unknown:
            raise ConfigError(f"{what}: unknown option(s) {', '.join(unknown)} (known: "
                              f"{', '.join(sorted(cls.option_names()))})")
        return cls._build(given)

    @classmethod
    def _build(cls, given: dict[str, Any]) -> Self:
        nested = groups(cls)
        arguments: dict[str, Any] = {}
        for item in fields(cls):
            if item.name in nested:
                group = nested[item.name]
                mine = {k: given[k] for k in option_names(group) if k in given}
                if mine:
                    arguments[item.name] = (group._build(mine) if issubclass(group, Options)
                                            else group.from_dict(mine))
            elif item.name in given:
                arguments[item.name] = given[item.name]
        return cls(**arguments)

    def to_dict(self) -> dict[str, Any]:
        """Every option by its flat name (the groups' included)."""
        nested = groups(type(self))
        values: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name not in nested:
                values[item.name] = value
            else:  # a group: Options, or a stage's settings (TilingSettings, QCSettings)
                values.update(value.to_dict())
        return values


def check_fraction(what: str, **values: float | None) -> None:
    """Raise :class:`ConfigError` for a value (not None) outside 0..1."""
    for name, value in values.items():
        if value is not None and not 0 <= value <= 1:
            raise ConfigError(f"{what} {name} {value}: use a value from 0 to 1")


# -- option groups shared by the slide commands -----------------------------------------

@dataclass(frozen=True, kw_only=True)
class Geometry(Options):
    """Slide geometry (``--tile-size`` ... ``--seed``) for commands that predict with a
    model: each given value overrides the model's own tiling (None: tiles cut as the
    model was trained, see :func:`histotile.postprocess.predict.settings_from_card`)."""

    tile_size: int | None = None          # tile side, px at the target resolution
    stride: int | None = None             # step between tiles, px (None: tile_size)
    magnification: float | None = None    # target objective magnification
    mpp: float | None = None              # target microns per pixel
    level: int | None = None              # explicit pyramid level
    min_tissue: float | None = None       # tissue fraction below which a tile is background
    keep_background: float | None = None  # fraction of background tiles kept (seeded)
    seed: int | None = None               # seed of the background sample

    def validate(self) -> None:
        check_fraction("tiling", min_tissue=self.min_tissue,
                       keep_background=self.keep_background)
        targets = [n for n in ("magnification", "mpp", "level") if getattr(self, n) is not None]
        if len(targets) > 1:
            raise ConfigError(f"tiling: {' and '.join(targets)} given; give at most one of "
                              "magnification, mpp and level")

    def given(self) -> dict[str, Any] | None:
        """The values given (None when none: the model's tiling as it is), as a slide's
        fingerprint records them."""
        values = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return values or None


@dataclass(frozen=True, kw_only=True)
class ModelUse(Options):
    """How a model folder predicts (``--batch-size``, ``--engine``, ``--tta``): see
    :class:`histotile.models.Predictor`."""

    batch_size: int | None = None         # tiles per inference batch (None: the model's)
    engine: EngineName = "auto"           # one of ENGINES
    tta: bool = False                     # average each tile's 8 flips and rotations

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine {self.engine!r}: use one of {', '.join(ENGINES)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch size {self.batch_size}: use 1 or more")


@dataclass(frozen=True, kw_only=True)
class HeatmapLook(Options):
    """How heatmap slides are drawn (``--mode`` ... ``--probability-tiff``)."""

    mode: HeatmapMode = BlendStyle.mode   # colour tiles over the threshold, or a colour map
    alpha: float = BlendStyle.alpha       # overlay opacity, 0..1
    color: str | tuple[int, int, int] = "#00ff00"  # threshold-mode colour
    downsample: float | None = None       # heatmap resolution vs level 0 (None: automatic)
    colormap: str = BlendStyle.colormap   # continuous-mode colour map (matplotlib's)
    floor: float | None = None            # continuous mode: uncoloured below (None: the
    #                                       renderer's DEFAULT_FLOOR)
    probability_tiff: bool = False        # also write probability.tif

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"heatmap mode {self.mode!r}: use {' or '.join(MODES)}")
        check_fraction("heatmap", alpha=self.alpha, floor=self.floor)
        if self.downsample is not None and self.downsample < 1:
            raise ConfigError(f"heatmap downsample {self.downsample}: use 1 or more")
        self.rgb()  # a colour that does not parse fails here, before any slide

    def rgb(self) -> tuple[int, int, int]:
        """The threshold-mode colour as RGB."""
        colour = self.color
        if isinstance(colour, str):
            return parse_colour(colour)
        return cast(tuple[int, int, int], tuple(colour))  # a list from a file: a tuple


@dataclass(frozen=True, kw_only=True)
class AnnotationInputs(Options):
    """Where slides' annotations are (``--annotations``, ``--annotations-for-all``): see
    :func:`histotile.workflows.tasks.inputs.slide_annotations`."""

    annotations: str | Path | None = None  # folder or file (None: beside each slide)
    annotations_for_all: bool = False     # one annotation file for several slides
