"""No figure a program measures is typed into README.md, ARCHITECTURE.md or docs/.

The rule, checkable by a program: a *figure* is a decimal number (``0.81``, ``1.45x``,
``12.5 s``) or a duration written ``2 min 15 s``. In the prose of those files (code
comments included) every figure must have a source file:

- a page generated from a results file (``docs/benchmarks/*`` but its index is built by
  ``docs/hooks/benchmarks.py``; the demo's figures come from
  ``docs/generated/demo-summary.json``, which ``make docs-images`` rewrites), or a file
  included with ``--8<--`` from ``docs/generated/``: neither is prose in ``docs/``;
- histotile's own code, when the figure is a setting: a float literal in ``histotile/``
  (a default such as the tile threshold ``0.5``);
- a version of Python or of a package histotile depends on (``Python 3.10``,
  ``numpy 1.26``, ``2.14.1``).

Code (inline code spans, commands and program output in fenced blocks) is exempt: it shows
what to type or what a program printed, and the README's Python example is run as a test.
Anything else is a typed figure, which goes stale: move it to a generated page."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![.\d])")
DURATION = re.compile(r"\b\d+ (?:h \d+ min|min \d+ s)\b")
FENCE = re.compile(r"^(\s*)(```|~~~)")
COMMENT = re.compile(r"(?:^|\s)#\s(.*)$")  # a shell or Python comment (not '#00ff00')
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+\1")
LINK_TARGET = re.compile(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+")
HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
VERSIONED = {"python", "openslide", "qupath", "openseadragon", "chromium", "mkdocs",
             "openvino", "cuda", "scikit-learn", "podman"}


def checked_files() -> list[Path]:
    """README.md, ARCHITECTURE.md and every Markdown page under docs/."""
    return [ROOT / "README.md", ROOT / "ARCHITECTURE.md",
            *sorted((ROOT / "docs").rglob("*.md"))]


@cache
def settings() -> frozenset[float]:
    """Every float literal in histotile's code: the defaults and constants a page may name."""
    found = set()
    for path in (ROOT / "histotile").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, float):
                found.add(round(node.value, 12))
    return frozenset(found)


@cache
def packages() -> frozenset[str]:
    """The names of histotile's dependencies (setup.cfg), lower case, and a few programs."""
    names = set(VERSIONED)
    for line in (ROOT / "setup.cfg").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\s+([A-Za-z][\w.-]*)(?:\[[^]]*\])?\s*[=<>!~]=?", line)
        if match:
            names.add(match.group(1).lower())
            names.add(match.group(1).lower().split("-")[0])  # opencv-python -> opencv
    return frozenset(names)


def prose(text: str) -> list[tuple[int, str]]:
    """The prose of a Markdown text by line number: fenced code reduced to its comments,
    inline code, link targets, HTML comments and ``--8<--`` includes removed."""
    text = HTML_COMMENT.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(2)
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
                continue
            comment = COMMENT.search(line)
            line = comment.group(1) if comment else ""
        elif line.lstrip().startswith("--8<--"):
            continue
        line = LINK_TARGET.sub("]", INLINE_CODE.sub(" ", line))
        lines.append((number, line))
    return lines


def _is_version(line: str, start: int, end: int) -> bool:
    before = re.search(r"([A-Za-z][\w.-]*)\s*(?:==|>=|<=)?\s*v?$", line[:start])
    return line[end:end + 1] == "+" or bool(before and before.group(1).lower() in packages())


def typed_figures(text: str) -> list[tuple[int, str]]:
    """(line, figure) for every figure in ``text``'s prose without a source file."""
    found = []
    for number, line in prose(text):
        for match in DECIMAL.finditer(line):
            if _is_version(line, match.start(), match.end()):
                continue
            if round(float(match.group(0)), 12) in settings():
                continue
            found.append((number, match.group(0)))
        found += [(number, match.group(0)) for match in DURATION.finditer(line)]
    return found


def test_readme_architecture_and_docs_type_no_figure():
    problems = [f"{path.relative_to(ROOT)}:{line}: {figure}"
                for path in checked_files()
                for line, figure in typed_figures(path.read_text(encoding="utf-8"))]
    assert not problems, (
        "typed figures (a measured number belongs on a page generated from its results "
        "file; a setting belongs in histotile's code, and may then be named): "
        + "; ".join(problems))


def test_the_rule_finds_typed_figures_and_spares_code_settings_and_versions():
    text = "\n".join([
        "The demo reached accuracy 0.813 +- 0.037 (AUC 0.924), in 2 min 15 s.",  # 1
        "Run `histotile train --warmup 0.2` on Python 3.10+ with numpy 1.26.",   # 2
        "The tile threshold defaults to 0.5; torch 2.14.1 is pinned.",           # 3
        "```bash",                                                               # 4
        "histotile bench --quick   # about 1.57x faster than before",            # 5
        "histotile tile s/ --classes 'normal,tumour=#00ff00' --min-tissue 0.77",  # 6
        "```",                                                                   # 7
        "See [the page](bench-1.45.md) <!-- 3.14 -->; 1.45x the plain reads.",   # 8
    ])
    assert typed_figures(text) == [(1, "0.813"), (1, "0.037"), (1, "0.924"),
                                   (1, "2 min 15 s"), (5, "1.57"), (8, "1.45")]


def test_a_figure_typed_into_the_readme_is_found(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    readme.insert(5, "On our slides it reached a test AUC of 0.964 in 2 min 15 s.")
    assert typed_figures("\n".join(readme)) == [(6, "0.964"), (6, "2 min 15 s")]


def test_every_picture_in_docs_is_made_by_make_docs_images():
    """No hand-captured picture: docs/ holds only the PNGs scripts/docs_images.py writes."""
    source = (ROOT / "scripts" / "docs_images.py").read_text(encoding="utf-8")
    made = ast.literal_eval(re.search(r"^PICTURES = (\(.*?\))", source, re.M).group(1))
    pictures = sorted(p.relative_to(ROOT / "docs").as_posix()
                      for p in (ROOT / "docs").rglob("*") if p.suffix.lower() in
                      (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"))
    assert pictures == sorted(f"images/{name}.png" for name in made), (
        "pictures in docs/ that `make docs-images` does not make (or that it makes and are "
        "missing: run it)")


# "default 2", "defaults to 600", "(default: 0.5)": a default typed into prose, which the
# code may change without the page following.
TYPED_DEFAULT = re.compile(r"\bdefault(?:s to|:)?\s+(\d+(?:\.\d+)?)\b")


def typed_defaults(text: str) -> list[tuple[int, str]]:
    """(line number, number) of each default typed into the prose of ``text``."""
    return [(number, match.group(1)) for number, line in prose(text)
            for match in TYPED_DEFAULT.finditer(line)]


def test_docs_read_defaults_from_the_code():
    """The guides name a default with a marker the docs build fills in from click (which
    reads the options' dataclasses) or from a constant: never a typed number."""
    problems = [f"{path.relative_to(ROOT)}:{line}: default {value}"
                for path in checked_files()
                for line, value in typed_defaults(path.read_text(encoding="utf-8"))]
    assert not problems, ("defaults typed into prose (write <!-- default: COMMAND --flag --> "
                          "or <!-- value: module:NAME --> instead): " + "; ".join(problems))
    assert typed_defaults("Slides are retried (`--retries`, default 2).\n"
                          "It defaults to 600 s; `--x` (default: 0.5)") == [
        (1, "2"), (2, "600"), (2, "0.5")]


def test_default_markers_are_filled_from_the_code():
    import sys

    from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
    from histotile.workflows.tasks.execution import Execution

    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        import cli_settings
    finally:
        sys.path.pop(0)
    text = ("(`--retries`, default <!-- default: run --retries -->); threshold "
            "<!-- value: histotile.models.operating_point:DEFAULT_TILE_THRESHOLD -->")
    assert cli_settings.defaults(text) == (
        f"(`--retries`, default {Execution().retries}); threshold {DEFAULT_TILE_THRESHOLD}")
    for wrong in ("<!-- default: run --no-such-flag -->", "<!-- default: nosuch --retries -->"):
        with pytest.raises(ValueError, match="docs: "):
            cli_settings.defaults(wrong)
