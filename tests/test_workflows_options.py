"""Typed options: built once at the edge (flat option names, old spellings with a
deprecation warning), pickled to Dask workers, recorded in fingerprints by name."""

from __future__ import annotations

import pickle
import warnings

import pytest

from histotile.errors import ConfigError
from histotile.workflows.options import Geometry, HeatmapLook, ModelUse
from histotile.workflows.slide_options import (
    EvaluateOptions,
    HeatmapOptions,
    PredictOptions,
    RunOptions,
    TileOptions,
)


def test_defaults_live_in_the_dataclass_and_given_options_win():
    options = HeatmapOptions.from_dict({"threshold": 0.7, "color": "red", "floor": None})
    assert options.threshold == 0.7 and options.look.alpha == HeatmapLook().alpha
    assert options.look.rgb() == (255, 0, 0)
    assert options.look.floor is None  # None: the renderer's DEFAULT_FLOOR


def test_fingerprint_form_is_the_options_set_by_name():
    from histotile.workflows.tasks.slide import heatmap_record

    # What the CLI gives: every heatmap option with its default, the unset ones None.
    cli = {"positive_class": None, "mode": "threshold", "threshold": None, "alpha": 0.4,
           "color": "#00ff00", "downsample": None, "decision_threshold": 0.5,
           "probability_tiff": False, "colormap": "viridis", "floor": None,
           "overwrite": True}
    assert heatmap_record(HeatmapOptions.from_dict(cli)) == {
        "mode": "threshold", "alpha": 0.4, "color": "#00ff00", "decision_threshold": 0.5,
        "probability_tiff": False, "colormap": "viridis"}
    evaluate = EvaluateOptions.from_dict({**cli, "positive_class": "tumour",
                                          "default_class": "normal"})
    assert heatmap_record(evaluate)["positive_class"] == "tumour"
    assert heatmap_record(evaluate)["default_class"] == "normal"
    assert "annotations" not in heatmap_record(evaluate)  # an input, not a setting


def test_options_pickle_for_dask_workers():
    options = RunOptions.from_dict({"mode": "continuous", "floor": 0.2, "tile_size": 64,
                                    "engine": "torch"})
    back = pickle.loads(pickle.dumps(options))
    assert back == options and back.look.floor == 0.2 and back.geometry.tile_size == 64


@pytest.mark.parametrize("values, match", [
    ({"thresold": 0.5}, "unknown option.* thresold"),
    ({"threshold": 1.5}, "threshold 1.5"),
    ({"mode": "bars"}, "mode 'bars'"),
    ({"downsample": 0.5}, "downsample"),
    ({"color": "not-a-colour"}, "colour"),
    ({"engine": "tensorrt"}, "engine 'tensorrt'"),
    ({"batch_size": 0}, "batch size 0"),
    ({"magnification": 20, "level": 1}, "magnification and level"),
    ({"decision_threshold": -0.1}, "decision_threshold -0.1"),
])
def test_bad_options_are_config_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        RunOptions.from_dict(values)


def test_run_is_predict_and_evaluate_each_field_once():
    run = RunOptions.from_dict({"tile_size": 64, "stride": None, "batch_size": 8,
                                "engine": "auto", "geojson": False, "threshold": 0.5,
                                "positive_class": "tumour"})
    assert isinstance(run, PredictOptions) and isinstance(run, EvaluateOptions)
    assert run.geometry == Geometry(tile_size=64) and run.geometry.given() == {"tile_size": 64}
    assert run.model == ModelUse(batch_size=8) and not run.geojson
    names = RunOptions.option_names()
    assert len(names) == len(set(names))  # one name per option across the groups
    assert RunOptions().geometry.given() is None  # nothing given: tiles cut as in training


def test_old_spellings_are_accepted_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning) as caught:
        options = RunOptions.from_dict({"class_name": "tumour", "no_geojson": True})
    assert sorted(str(w.message).split(":")[1].split(",")[0] for w in caught) == [
        " 'class_name' is deprecated", " 'no_geojson' is deprecated"]
    assert options.positive_class == "tumour" and options.geojson is False
    with pytest.raises(ConfigError, match="give only positive_class"):
        RunOptions.from_dict({"class_name": "a", "positive_class": "b"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # today's names: no warning
        RunOptions.from_dict({"positive_class": "tumour", "geojson": False})


def test_tile_options_take_the_cli_text_of_classes_and_balance():
    options = TileOptions.from_dict({"classes": "other,epithelium=#00ff00",
                                     "balance": "other=1,epithelium=2", "tile_size": 64})
    assert options.tiling.classes == ("other", "epithelium")
    assert options.tiling.palette == {"epithelium": (0, 255, 0)}
    assert options.balance == {"other": 1.0, "epithelium": 2.0}
    # Classes given as a list take no palette colour they do not name.
    listed = TileOptions.from_dict({"classes": ["a", "b"]})
    assert listed.tiling.palette == {}
    with pytest.raises(ConfigError, match="positive_class"):
        TileOptions.from_dict({"classes": "a,b", "positive_class": "c"})


def test_the_api_takes_the_old_keywords_with_a_deprecation_warning(monkeypatch):
    from histotile.workflows import api

    taken = []
    monkeypatch.setattr(api.batch, "run_batch",
                        lambda slides, model, out, options, **_: taken.append(options) or [])
    monkeypatch.setattr(api, "write_report", lambda *args, **kwargs: None)
    with pytest.warns(DeprecationWarning) as caught:
        api.run_batch("s.svs", "model", "out", class_name="tumour", mode="continuous",
                      tiling={"level": 1})
    said = [str(w.message) for w in caught]
    assert any("keyword options are deprecated" in s for s in said), said
    assert any("'class_name' is deprecated, use 'positive_class'" in s for s in said), said
    assert taken[0] == RunOptions.from_dict({"positive_class": "tumour",
                                             "mode": "continuous", "level": 1})
    with pytest.raises(TypeError, match="not both"):
        api.run_batch("s.svs", "model", "out", RunOptions(), mode="continuous")


def test_the_cli_takes_old_spellings_with_a_notice(tmp_path, monkeypatch):
    """``--class`` on the command line and ``class_name`` / ``no_geojson`` in a
    configuration file reach the typed fields, each with a warning line."""
    from click.testing import CliRunner

    from histotile.workflows.cli.main import cli
    from histotile.workflows.tasks import batch

    taken = []
    monkeypatch.setattr(batch, "run_batch", lambda slides, model, out, options, execution:
                        taken.append(options) or [])
    monkeypatch.setattr("histotile.workflows.cli.main.finish", lambda *args: 0)
    slide, model = tmp_path / "a.svs", tmp_path / "model"
    slide.write_bytes(b"")
    model.mkdir()
    config = tmp_path / "old.yaml"
    config.write_text("no_geojson: true\n")
    result = CliRunner().invoke(cli, ["run", str(slide), "--model", str(model), "--out",
                                      str(tmp_path / "out"), "--class", "tumour",
                                      "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert taken[0].positive_class == "tumour" and taken[0].geojson is False
    assert "'class_name' is deprecated, use 'positive_class'" in result.output
    assert "'no_geojson' is deprecated" in result.output
    result = CliRunner().invoke(cli, ["run", str(slide), "--model", str(model), "--out",
                                      str(tmp_path / "out"), "--positive-class", "tumour"])
    assert result.exit_code == 0 and "deprecated" not in result.output
