"""``histotile demo``: the whole pipeline on the bundled slide, and its output folder rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from histotile.errors import OutputExistsError
from histotile.workflows.demo import DEMO_OUTPUTS, run_demo


def test_demo_refuses_an_earlier_demo_folder_without_overwrite(tmp_path):
    (tmp_path / "evaluation.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run_demo(tmp_path, quiet=True)
    assert (tmp_path / "evaluation.json").read_text() == "{}"  # nothing touched


@pytest.mark.slow
def test_demo_runs_end_to_end_and_replaces_only_its_own_outputs(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "evaluation.json").write_text("{}")
    outputs = run_demo(tmp_path, epochs=1, overwrite=True, quiet=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert all((tmp_path / name).exists() for name in DEMO_OUTPUTS)
    assert set(outputs) == {"manifest", "model", "predictions", "heatmap", "heatmap_preview",
                            "probability_heatmap", "probability_preview", "side_by_side",
                            "evaluation", "summary"}
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["tiles"] > 100
    assert evaluation["TP"] + evaluation["FP"] + evaluation["FN"] + evaluation["TN"] \
        == evaluation["tiles"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    check_summary(summary, evaluation, tmp_path)


COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "generated" / "demo-summary.json"


def _keys(value, prefix=""):
    """The dotted key paths of a JSON object (the shape of a summary, not its values)."""
    if not isinstance(value, dict):
        return {prefix}
    return set().union(*(_keys(v, f"{prefix}{k}.") for k, v in value.items()))


def check_summary(summary: dict, evaluation: dict, out: Path) -> None:
    """The summary holds the demo's own figures, and has the shape of the copy the docs
    show (docs/generated/demo-summary.json: rerun `make docs-images` when it changes)."""
    figures = summary["figures"]
    assert summary["command"] == "histotile demo" and summary["machine"]["cores"] >= 1
    assert figures["seconds"] > 0 and figures["tiles"]["predicted"] == len(
        (out / "predictions.csv").read_text().splitlines()) - 1
    against = figures["against_the_annotation"]
    assert (against["tiles"], against["sensitivity"], against["specificity"]) == (
        evaluation["tiles"], evaluation["sensitivity"], evaluation["specificity"])
    card = json.loads((out / "model" / "model_card.json").read_text())
    assert figures["cross_validation"]["folds"] == 3
    assert 0 <= figures["cross_validation"]["accuracy"]["mean"] <= 1
    assert figures["test"]["tiles"] > 0 and figures["test"]["roc_auc"] == pytest.approx(
        card["metrics"]["test"]["roc_auc"])
    committed = json.loads(COMMITTED.read_text())
    assert _keys(committed) == _keys(summary), (
        f"{COMMITTED} has not the shape of the summary the demo writes now: "
        "run `make docs-images`")
