"""Probabilities in a predictions table are checked when it is read (issue 23): a table
edited by hand or written by other software with values outside 0-1, or missing ones,
is refused with the file and row named, by ``evaluate``, ``heatmap`` and ``explain``
alike (they all read it through :func:`load_predictions`)."""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from histotile.errors import DatasetError
from histotile.postprocess import SlidePredictions, load_predictions
from histotile.workflows.cli.main import cli
from histotile.wsi.synthetic import write_synthetic_slide

SIZE = 256


def saved(folder: pathlib.Path, name: str = "a") -> pathlib.Path:
    xs, ys = np.meshgrid(np.arange(0, SIZE, 64), np.arange(0, SIZE, 64))
    p = np.linspace(0, 1, xs.size).round(3)
    table = pd.DataFrame({"x": xs.ravel(), "y": ys.ravel(), "extent": 64,
                          "prob_normal": 1 - p, "prob_tumour": p})
    predictions = SlidePredictions(name, "", (SIZE, SIZE), 0.5, ("normal", "tumour"), table,
                                   {"tile_size": 64}, {"name": "test-model",
                                                       "positive_class": "tumour"})
    return predictions.save(folder / name / "predictions.csv")


def edit(path: pathlib.Path, row: int, value: str) -> None:
    lines = path.read_text().splitlines()
    cells = lines[row + 1].split(",")
    cells[-1] = value
    lines[row + 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("value", ["7.0", "-6.0", "nan", "", "inf", "high"])
def test_a_probability_outside_0_1_is_refused_on_load(tmp_path, value):
    path = saved(tmp_path)
    edit(path, 3, value)
    with pytest.raises(DatasetError, match=r"column 'prob_tumour' holds .* in row 4, not a "
                                           r"probability between 0 and 1") as info:
        load_predictions(path)
    assert str(info.value).startswith(f"{path}: ")


def test_rounded_probabilities_still_load(tmp_path):
    path = saved(tmp_path)
    edit(path, 0, "1.000001")
    edit(path, 1, "-0")
    assert len(load_predictions(path)) == 16


@pytest.mark.parametrize("command", ["heatmap", "evaluate"])
def test_commands_refuse_a_table_with_probability_7(tmp_path, command):
    slide = tmp_path / "slides" / "a.tif"
    slide.parent.mkdir()
    write_synthetic_slide(slide, SIZE, SIZE, seed=1, tile_size=256, tissue_fraction=0.6)
    (tmp_path / "slides" / "a.geojson").write_text('{"type": "FeatureCollection", '
                                                   '"features": []}')
    edit(saved(tmp_path / "predictions"), 2, "7.0")
    result = CliRunner().invoke(cli, [command, str(slide), "--predictions",
                                      str(tmp_path / "predictions"), "--out",
                                      str(tmp_path / "out")], catch_exceptions=False)
    output = " ".join(result.output.split())
    assert result.exit_code == 1, output
    rows = pd.read_csv(tmp_path / "out" / f"{command}-report.csv", keep_default_na=False)
    assert rows.loc[0, "status"] == "failed"
    assert "'prob_tumour' holds 7.0 in row 3" in rows.loc[0, "error"]
    assert not (tmp_path / "out" / "a" / "heatmap.tif").exists()
