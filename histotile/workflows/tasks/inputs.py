"""Turning command-line slide arguments (files, folders, glob patterns) into slide paths,
and finding each slide's annotation."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from histotile.errors import ConfigError

SLIDE_SUFFIXES = {".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".tif", ".tiff",
                  ".svslide", ".jpg", ".jpeg", ".png"}
# Files that sit beside slides but are annotations or outputs, never slides themselves.
ANNOTATION_MARKERS = (".overlay.", ".mask.", ".heatmap.", ".preview.")


def is_slide_file(path: Path) -> bool:
    name = path.name.lower()
    return (path.suffix.lower() in SLIDE_SUFFIXES and not name.startswith(".")
            and not any(marker in name for marker in ANNOTATION_MARKERS))


def expand_slides(inputs: Iterable[str | Path]) -> list[Path]:
    """Slide files from files, folders (searched recursively) and glob patterns.

    Files named explicitly are kept whatever their extension (the reader decides);
    folders and patterns contribute files with a slide extension, skipping annotation
    files (``*.overlay.*``, ``*.mask.*``) and outputs. Order is sorted and duplicates are
    removed. Raises :class:`ConfigError` when an argument matches nothing.
    """
    found: dict[Path, None] = {}
    for item in inputs:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_file():
            found[path] = None
        elif path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if candidate.is_file() and is_slide_file(candidate):
                    found[candidate] = None
        elif glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            files = [m for m in matches if m.is_file() and is_slide_file(m)]
            if not files:
                raise ConfigError(f"{text}: the pattern matches no slide file "
                                  "(check the pattern; quote it so the shell does not expand it)")
            found.update(dict.fromkeys(files))
        else:
            # Keep it: the batch reports it as a failed slide with a clear error, so one
            # mistyped name does not stop a run over hundreds of slides.
            found[path] = None
    if not found:
        raise ConfigError("no slides found in " + ", ".join(map(str, inputs))
                          + f" (looked for {', '.join(sorted(SLIDE_SUFFIXES))})")
    return sorted(found)


def check_slide_input(path: Path) -> None:
    """Refuse, before any work, a slide that does not exist or whose name before the
    first dot is empty (``.hidden.svs``: its outputs would land in the output root)."""
    from histotile.errors import SlideError, SlideNotFoundError

    if not path.exists():
        raise SlideNotFoundError(path, "no such file", "check the path and its spelling")
    if not slide_stem(path):
        raise SlideError(path, "the slide's name before the first dot is empty, so "
                                 "its outputs would have no folder of their own",
                                 f"rename it, e.g. to {path.name.lstrip('.') or 'slide.svs'}")


def slide_stem(path: Path) -> str:
    """The slide's name as outputs use it (file name up to its first dot)."""
    return path.name.split(".")[0]


def find_annotation(slide: Path, annotations: str | Path | None) -> Path | None:
    """The annotation of ``slide``: ``<name>.geojson``, ``<name>.overlay.*`` or
    ``<name>.mask.*`` in ``annotations`` (a folder; default: the slide's folder), or
    ``annotations`` itself when it is a file. None when there is none."""
    if annotations is not None and Path(annotations).is_file():
        return Path(annotations)
    folder = Path(annotations) if annotations is not None else slide.parent
    stem = slide_stem(slide)
    for pattern in (f"{stem}.geojson", f"{stem}.json", f"{stem}.overlay.*", f"{stem}.mask.*"):
        matches = sorted(folder.glob(pattern))
        if matches:
            return matches[0]
    return None


def slide_annotations(slides: list[Path], annotations: str | Path | None,
                      for_all: bool = False) -> dict[Path, tuple[str | None, str | None]]:
    """Each slide's annotation (see :func:`find_annotation`) and a warning, or None.

    One annotation *file* for several slides would label every slide with the same
    polygons: a :class:`ConfigError` unless ``for_all`` (``--annotations-for-all``). A
    slide whose own annotation lies beside it, overruled by the file, gets a warning."""
    single = annotations is not None and Path(annotations).is_file()
    if single and len(slides) > 1 and not for_all:
        raise ConfigError(f"{annotations}: one annotation file for {len(slides)} slides "
                          "would label every slide with the same annotation; pass a "
                          "folder holding <slide>.geojson (.overlay.*, .mask.*) per slide, "
                          "or --annotations-for-all if every slide really shares it")
    found = {}
    for slide in slides:
        given = find_annotation(slide, annotations)
        own = find_annotation(slide, None) if single else None
        note = None
        if own is not None and given is not None and own.resolve() != given.resolve():
            note = (f"{given} was used for this slide, not its own annotation {own} beside "
                    "it (leave --annotations out, or pass a folder, to use each slide's own)")
        found[slide] = (None if given is None else str(given), note)
    return found


def slide_info(path: str | Path) -> dict[str, Any]:
    """A slide's metadata as plain data (what ``histotile info`` prints)."""
    from histotile.wsi import open_slide

    with open_slide(path) as slide:
        return {
            "path": str(slide.path),
            "name": slide.name,
            "vendor": slide.vendor,
            "dimensions": list(slide.dimensions),
            "mpp": slide.mpp,
            "objective_power": slide.objective_power,
            "levels": [
                {"level": i, "width": w, "height": h, "downsample": d,
                 "mpp": slide.level_mpp(i)}
                for i, ((w, h), d) in enumerate(zip(slide.level_dimensions,
                                                    slide.level_downsamples))
            ],
            "associated_images": slide.associated_images,
        }
