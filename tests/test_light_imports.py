"""Light imports: each entry point loads no heavy library until a function needs it.

One parametrised check in a fresh interpreter per case (the test process itself has imported
everything by now)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import histotile

SLIDE = str(histotile.sample_slide())

CASES = [
    pytest.param("import histotile", ("torch", "dask", "matplotlib"), "", id="histotile"),
    pytest.param("import histotile.tiling",
                 ("torch", "pandas", "matplotlib", "dask", "mxnet"), "", id="tiling"),
    pytest.param("import histotile.models, histotile.models.train, histotile.models.predict",
                 ("torch", "mxnet", "torchvision", "matplotlib"), "", id="models"),
    # The info command runs end to end (it reads the slide) without the heavy libraries.
    pytest.param("from histotile.workflows.cli.main import cli\n"
                 f"sys.argv = ['histotile', 'info', {SLIDE!r}]\n"
                 "try:\n    cli(prog_name='histotile')\nexcept SystemExit:\n    pass",
                 ("torch", "torchvision", "mxnet", "dask", "distributed", "matplotlib"),
                 "2220 x 2967", id="cli-info"),
]


@pytest.mark.parametrize("code, heavy, printed", CASES)
def test_entry_point_imports_no_heavy_library(code, heavy, printed):
    script = (f"import sys\n{code}\n"
              f"print('HEAVY', sorted(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr
    assert printed in done.stdout, done.stdout + done.stderr  # the command really ran

