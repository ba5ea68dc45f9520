"""``histotile demo``: the whole pipeline on the bundled slide, and its output folder rules."""

from __future__ import annotations

import json

import pytest

from histotile.errors import OutputExistsError
from histotile.workflows.demo import DEMO_OUTPUTS, DemoSettings, run_demo


def test_demo_refuses_an_earlier_demo_folder_without_overwrite(tmp_path):
    (tmp_path / "evaluation.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run_demo(tmp_path, quiet=True)
    assert (tmp_path / "evaluation.json").read_text() == "{}"  # nothing touched


@pytest.mark.slow
def test_demo_runs_end_to_end_and_replaces_only_its_own_outputs(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "evaluation.json").write_text("{}")
    outputs = run_demo(tmp_path, DemoSettings(epochs=1), overwrite=True, quiet=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert all((tmp_path / name).exists() for name in DEMO_OUTPUTS)
    assert set(outputs) == {"manifest", "model", "predictions", "heatmap", "heatmap_preview",
                            "probability_heatmap", "probability_preview", "side_by_side",
                            "evaluation"}
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["tiles"] > 100
    assert evaluation["TP"] + evaluation["FP"] + evaluation["FN"] + evaluation["TN"] \
        == evaluation["tiles"]
