"""Option parsing shared by the CLI and the API: colours, class lists, balance ratios
and tiling settings from CLI-style values."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from histotile.postprocess.decisions import DEFAULT_FRACTION_THRESHOLD

NAMED_COLOURS = {"green": (0, 255, 0), "red": (255, 0, 0), "blue": (0, 0, 255),
                 "yellow": (255, 255, 0), "cyan": (0, 255, 255), "magenta": (255, 0, 255),
                 "black": (0, 0, 0), "orange": (255, 165, 0)}


def parse_colour(text: str) -> tuple[int, int, int]:
    """``#00ff00``, ``00ff00`` or a colour name (green, red, blue, ...) as RGB."""
    from histotile.errors import ConfigError

    value = text.strip().lower()
    if value in NAMED_COLOURS:
        return NAMED_COLOURS[value]
    digits = value.lstrip("#")
    if len(digits) == 6:
        try:
            return tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
        except ValueError:
            pass
    raise ConfigError(f"colour {text!r}: use #rrggbb (e.g. #00ff00) or a name "
                      f"({', '.join(NAMED_COLOURS)})")


def parse_classes(text: str | None) -> dict[str, Any]:
    """``'normal,tumour=#00ff00'`` as ``{'classes': (...), 'palette': {...}}`` (empty when
    ``text`` is None). The first class is the default (unmarked) one."""
    from histotile._names import check_folder_name
    from histotile.errors import ConfigError

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


def parse_ratios(text: str | dict | None) -> dict[str, float] | None:
    """``'normal=1,tumour=1'`` as ``{'normal': 1.0, 'tumour': 1.0}``."""
    from histotile.errors import ConfigError

    if text is None or isinstance(text, dict):
        return text
    ratios = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        try:
            ratios[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--balance {text!r}: write class=ratio pairs, e.g. "
                              "'normal=1,tumour=1'") from None
    return ratios


def tiling_settings(tiling: dict[str, Any] | None, classes: str | None = None):
    """A TilingSettings from CLI-style options (plus ``--classes``)."""
    from histotile.tiling import TilingSettings

    values = dict(tiling or {})
    values.update(parse_classes(classes))
    if "classes" in values and "palette" not in values:
        values["palette"] = {}
    return TilingSettings.from_dict(values)


@dataclass(frozen=True)
class HeatmapOptions:
    """How heatmaps are drawn, slides decided and tiles scored (``heatmap``, ``run``,
    ``evaluate``): built once by the CLI and the API, passed to the per-slide tasks (it
    pickles, for Dask workers). Every default lives here; ``floor`` None means the
    renderer's :data:`histotile.postprocess.render.DEFAULT_FLOOR` (not imported here: the
    CLI stays light).

    ``given`` names the options set explicitly: they, and only they, are what
    :meth:`to_dict` returns and a slide's fingerprint records, as before these options
    were typed, so finished output folders stay finished.
    """

    class_name: str | None = None     # the class shown and decided on (default: model's)
    default_class: str | None = None  # truth of unannotated tiles (default: model card's)
    mode: str = "threshold"           # "threshold" or "continuous"
    threshold: float | None = None    # tile probability that counts as positive
    #                                   (None: the model card's, else
    #                                   DEFAULT_TILE_THRESHOLD: see
    #                                   histotile.models.operating_point.tile_threshold)
    alpha: float = 0.4                # overlay opacity, 0..1
    color: str | tuple[int, int, int] = "#00ff00"  # threshold-mode colour
    downsample: float | None = None   # heatmap resolution vs level 0 (None: automatic)
    decision_threshold: float = DEFAULT_FRACTION_THRESHOLD  # fraction of positive tiles
    #                                   for a positive slide
    colormap: str = "viridis"         # continuous-mode colour map
    floor: float | None = None        # continuous mode: uncoloured below (None: default)
    probability_tiff: bool = False    # also write probability.tif
    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "given")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> HeatmapOptions:
        """From option names and values (None values: the default); unknown names are a
        :class:`ConfigError`."""
        from histotile.errors import ConfigError

        values = {k: v for k, v in (values or {}).items() if v is not None}
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ConfigError(f"heatmap options: unknown {', '.join(unknown)} "
                              f"(known: {', '.join(cls.names())})")
        options = cls(**values, given=frozenset(values))
        options.validate()
        return options

    @classmethod
    def pick(cls, options: dict[str, Any]) -> HeatmapOptions:
        """The heatmap options among a command's options (the CLI's and the API's)."""
        return cls.from_dict({k: options.get(k) for k in cls.names()})

    @classmethod
    def of(cls, value: HeatmapOptions | dict[str, Any] | None) -> HeatmapOptions:
        """``value`` as options (a task called with a plain dict or nothing)."""
        return value if isinstance(value, cls) else cls.from_dict(value)

    def validate(self) -> None:
        from histotile.errors import ConfigError

        if self.mode not in ("threshold", "continuous"):
            raise ConfigError(f"heatmap mode {self.mode!r}: use threshold or continuous")
        for name in ("threshold", "alpha", "decision_threshold", "floor"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ConfigError(f"heatmap {name} {value}: use a value from 0 to 1")
        if self.downsample is not None and self.downsample < 1:
            raise ConfigError(f"heatmap downsample {self.downsample}: use 1 or more")
        self.rgb()  # a colour that does not parse fails here, before any slide

    def rgb(self) -> tuple[int, int, int]:
        """The threshold-mode colour as RGB."""
        colour = self.color
        return parse_colour(colour) if isinstance(colour, str) else tuple(colour)

    def to_dict(self) -> dict[str, Any]:
        """The options given explicitly (what a slide's fingerprint records)."""
        return {k: getattr(self, k) for k in self.names() if k in self.given}


# The CLI's tiling options (``--tile-size`` ...): given ones override a model's tiling.
TILING_OPTIONS = ("tile_size", "stride", "magnification", "mpp", "level", "min_tissue",
                  "keep_background", "seed", "min_label_fraction", "keep_artefacts")
ENGINES = ("auto", "torch", "mxnet", "onnxruntime", "onnxruntime-int8")


@dataclass(frozen=True)
class RunOptions:
    """How slides are predicted (``predict``, ``run``): built once by the CLI and the
    API; the per-slide tasks get its fields as plain arguments (Dask jobs, the service).
    Fingerprints record ``tiling`` and (int8 only) ``engine`` as before."""

    tiling: dict[str, Any] | None = None  # tiling options given (None: as in training)
    batch_size: int | None = None         # tiles per inference batch (None: the model's)
    engine: str = "auto"                  # one of ENGINES (see histotile.models.Predictor)
    geojson: bool = True                  # also the QuPath files
    tta: bool = False                     # average each tile's 8 flips and rotations
    threshold: float | None = None        # predict's --threshold (None: the card's)

    @classmethod
    def pick(cls, options: dict[str, Any]) -> RunOptions:
        """The prediction options among a command's options (the CLI's and the API's)."""
        tiling = {k: options[k] for k in TILING_OPTIONS if options.get(k) is not None}
        run = cls(tiling=tiling or None, batch_size=options.get("batch_size"),
                  engine=options.get("engine") or cls.engine,
                  geojson=not options.get("no_geojson"), tta=bool(options.get("tta")),
                  threshold=options.get("threshold"))
        run.validate()
        return run

    def validate(self) -> None:
        from histotile.errors import ConfigError

        if self.engine not in ENGINES:
            raise ConfigError(f"engine {self.engine!r}: use one of {', '.join(ENGINES)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"batch size {self.batch_size}: use 1 or more")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ConfigError(f"threshold {self.threshold}: use a value from 0 to 1")
