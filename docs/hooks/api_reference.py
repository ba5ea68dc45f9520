"""MkDocs hook: the Python API page lists every public name of ``histotile``.

The names come from ``histotile._EXPORTS`` (what ``import histotile`` offers), so a name
added there appears on the page at the next build; each becomes a mkdocstrings ``:::``
block of the module that defines it, and a reference that does not resolve fails the
strict build.
"""

from __future__ import annotations

MARKER = "<!-- generated: python-api -->"

# Sections in stage order: the first module prefix that matches a name's module wins.
SECTIONS = (
    ("Slides", "histotile.wsi"),
    ("Tiling, annotations and quality control", "histotile.tiling"),
    ("Models: training, prediction, export", "histotile.models"),
    ("Slide predictions, heatmaps, decisions, evaluation", "histotile.postprocess"),
    ("Batches, execution and the service", "histotile.workflows"),
    ("Classes and errors", "histotile"),
)


def exports() -> list[tuple[str, str]]:
    """(public name, dotted path of the object it refers to), in ``_EXPORTS`` order."""
    from histotile import _EXPORTS

    names = []
    for name, target in _EXPORTS.items():
        module, attribute = target if isinstance(target, tuple) else (target, name)
        names.append((name, f"{module}.{attribute}"))
    return names


def markdown() -> str:
    sections: dict[str, list[tuple[str, str]]] = {title: [] for title, _ in SECTIONS}
    for name, path in exports():
        title = next(t for t, prefix in SECTIONS if path.startswith(prefix + "."))
        sections[title].append((name, path))
    lines = []
    for title, entries in sections.items():
        if not entries:
            continue
        lines += [f"## {title}", ""]
        for name, path in entries:
            if not path.endswith("." + name):  # exported under another name
                lines += [f"`histotile.{name}` is `{path}`:", ""]
            lines += [f"::: {path}", "    options:", "      heading_level: 3", ""]
    return "\n".join(lines)


def on_page_markdown(text: str, page, config, files) -> str:
    if MARKER in text:
        text = text.replace(MARKER, markdown())
    return text
