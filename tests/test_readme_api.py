"""The README's Python API example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import openslide
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def api_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API example", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow  # tiles, trains and predicts the real slide: ~30 s on two cores
def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(api_example(), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "(2220, 2967) 0.499 20.0" in printed
    assert (tmp_path / "model" / "model_card.json").exists()
    # The example says plainly that it is a smoke run (2 epochs do not learn), and the
    # class order it gives makes epithelium, the last class, the positive class.
    assert "SMOKE RUN" in api_example()
    assert "\nepithelium\n" in printed
    with openslide.OpenSlide(str(tmp_path / "heatmap.tif")) as heatmap:
        assert heatmap.dimensions == (2220, 2967)


def test_every_public_name_resolves():
    """(That `import histotile` itself is light is checked in test_light_imports.py.)"""
    import subprocess
    import sys

    code = ("import sys, histotile\n"
            "for name in histotile.__all__:\n"
            "    assert getattr(histotile, name) is not None, name\n"
            "print(len(histotile.__all__))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 30
