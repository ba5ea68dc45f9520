"""Typed heatmap options: built once at the edge, pickled to Dask workers, recorded in
fingerprints exactly as the options dicts were before they were typed."""

from __future__ import annotations

import pickle

import pytest

from histotile.errors import ConfigError
from histotile.workflows.options import HeatmapOptions


def test_defaults_live_in_the_dataclass_and_given_options_win():
    options = HeatmapOptions.from_dict({"threshold": 0.7, "color": "red", "floor": None})
    assert options.threshold == 0.7 and options.alpha == HeatmapOptions().alpha
    assert options.rgb() == (255, 0, 0)
    assert options.floor is None  # None: the renderer's DEFAULT_FLOOR


def test_fingerprint_form_is_the_given_options_only():
    # What `_pick(options, HEATMAP_KEYS)` recorded: every key given with a value, no others.
    cli = {"class_name": None, "mode": "threshold", "threshold": 0.5, "alpha": 0.4,
           "color": "#00ff00", "downsample": None, "decision_threshold": 0.5,
           "probability_tiff": False, "colormap": "viridis", "floor": None,
           "default_class": None, "workers": 2, "overwrite": True}
    picked = HeatmapOptions.pick(cli)
    assert picked.to_dict() == {"mode": "threshold", "threshold": 0.5, "alpha": 0.4,
                                "color": "#00ff00", "decision_threshold": 0.5,
                                "probability_tiff": False, "colormap": "viridis"}
    assert HeatmapOptions.pick({}).to_dict() == {}
    assert HeatmapOptions.of(None).to_dict() == {}


def test_options_pickle_for_dask_workers():
    options = HeatmapOptions.from_dict({"mode": "continuous", "floor": 0.2})
    back = pickle.loads(pickle.dumps(options))
    assert back == options and back.to_dict() == {"mode": "continuous", "floor": 0.2}


@pytest.mark.parametrize("values, match", [
    ({"thresold": 0.5}, "unknown thresold"),
    ({"threshold": 1.5}, "threshold 1.5"),
    ({"mode": "bars"}, "mode 'bars'"),
    ({"downsample": 0.5}, "downsample"),
    ({"color": "not-a-colour"}, "colour"),
])
def test_bad_options_are_config_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        HeatmapOptions.from_dict(values)


def test_cli_and_api_show_the_dataclass_defaults():
    import inspect

    from histotile.workflows.api import run_batch
    from histotile.workflows.cli.main import cli

    defaults = HeatmapOptions()
    params = {p.name: p.default for p in cli.commands["run"].params}
    for name in ("mode", "threshold", "alpha", "color", "decision_threshold", "colormap"):
        assert params[name] == getattr(defaults, name), name
    signature = inspect.signature(run_batch).parameters
    for name in ("mode", "threshold", "alpha", "color", "decision_threshold"):
        assert signature[name].default == getattr(defaults, name), name


def test_run_options_pick_the_prediction_options_once():
    from histotile.workflows.options import RunOptions

    run = RunOptions.pick({"tile_size": 64, "stride": None, "batch_size": 8,
                           "engine": None, "no_geojson": True, "threshold": 0.5})
    assert run == RunOptions(tiling={"tile_size": 64}, batch_size=8, engine="auto",
                             geojson=False, threshold=0.5)  # predict's --threshold
    assert RunOptions.pick({}).tiling is None  # nothing given: tiles cut as in training
    assert pickle.loads(pickle.dumps(run)) == run
    with pytest.raises(ConfigError, match="engine 'tensorrt'"):
        RunOptions.pick({"engine": "tensorrt"})
