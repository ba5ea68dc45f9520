"""Exceptions raised by histotile.

Every error a user can cause is a :class:`HistotileError`. Messages name the file (or
setting) at fault, say what went wrong, and say what to do next, so that the command
line can print them as they are, without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class HistotileError(Exception):
    """Base class of every error histotile raises on purpose."""


class SlideError(HistotileError):
    """A slide (or any image read as a slide) could not be opened or read.

    Attributes:
        path: the file at fault.
        cause: a short description of the problem, without the path.
    """

    def __init__(self, path: str | Path, cause: str, hint: str = "") -> None:
        self.path = Path(path)
        self.cause = cause
        self.hint = hint
        message = f"{self.path}: {cause}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)

    def __reduce__(self):  # keep exceptions picklable across Dask/multiprocessing
        return (type(self), (self.path, self.cause, self.hint))


class SlideNotFoundError(SlideError):
    """The path does not exist, or is a directory."""


class UnsupportedFormatError(SlideError):
    """No reader of histotile's knows the file's format."""


class CorruptSlideError(SlideError):
    """The file looks like a slide but is empty, truncated or damaged."""


class LevelError(SlideError):
    """A pyramid level that the slide does not have, or cannot be chosen."""


class RegionError(SlideError):
    """A region with an invalid size or location."""


class MetadataMissingError(SlideError):
    """The slide lacks metadata (mpp, objective power) that the request needs."""


class AnnotationError(HistotileError):
    """An annotation (painted overlay, label mask, GeoJSON) is unusable."""


class DatasetError(HistotileError):
    """A tile manifest or image folder cannot be used for training or evaluation."""


class ModelError(HistotileError):
    """A model name, model directory or model card is unusable."""


class OutputExistsError(HistotileError):
    """An output exists and overwriting was not asked for."""


class ConfigError(HistotileError):
    """An invalid setting or configuration file."""
