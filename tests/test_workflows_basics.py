"""Slide discovery, configuration files, resumable outputs and the info command."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from histotile.errors import ConfigError, OutputExistsError
from histotile.workflows.cli.config import load_config, options_for
from histotile.workflows.cli.main import cli
from histotile.workflows.tasks.inputs import expand_slides, find_annotation
from histotile.workflows.tasks.outputs import SlideOutputs, fingerprint


def test_expand_files_folders_and_globs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").mkdir()
    for name in ["a/one.svs", "a/b/two.tif", "a/b/two.overlay.png", "a/notes.txt",
                 "three.ndpi", "a/.hidden.svs"]:
        (tmp_path / name).write_bytes(b"x")
    found = expand_slides([tmp_path / "a", str(tmp_path / "*.ndpi"), tmp_path / "a" / "one.svs"])
    assert [p.name for p in found] == ["two.tif", "one.svs", "three.ndpi"]  # sorted paths
    with pytest.raises(ConfigError, match="matches no slide"):
        expand_slides([str(tmp_path / "*.mrxs")])
    # A missing explicit file is kept, to be reported as a failed slide.
    assert expand_slides([tmp_path / "missing.svs"])[0].name == "missing.svs"


def test_find_annotation_by_name(tmp_path):
    slide = tmp_path / "s1.svs"
    slide.write_bytes(b"x")
    assert find_annotation(slide, None) is None
    (tmp_path / "marks").mkdir()
    overlay = tmp_path / "marks" / "s1.overlay.png"
    overlay.write_bytes(b"x")
    assert find_annotation(slide, tmp_path / "marks") == overlay
    geojson = tmp_path / "s1.geojson"
    geojson.write_text("{}")
    assert find_annotation(slide, None) == geojson


def test_config_yaml_and_toml_sections(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("tile-size: 256\nseed: 3\ntile:\n  tile_size: 225\n")
    config = load_config(yaml_file)
    assert options_for(config, "tile") == {"tile_size": 225, "seed": 3}
    assert options_for(config, "run") == {"tile_size": 256, "seed": 3}
    toml_file = tmp_path / "c.toml"
    toml_file.write_text("alpha = 0.3\n[run]\nthreshold = 0.7\n")
    assert options_for(load_config(toml_file), "run") == {"alpha": 0.3, "threshold": 0.7}
    bad = tmp_path / "c.ini"
    bad.write_text("x")
    with pytest.raises(ConfigError, match="unknown configuration format"):
        load_config(bad)


def test_unknown_config_key_is_a_usage_error(tmp_path, real_slide_path):
    config = tmp_path / "c.yaml"
    config.write_text("no_such_option: 1\n")
    result = CliRunner().invoke(cli, ["info", str(real_slide_path), "--config", str(config)])
    assert result.exit_code == 2
    assert "no_such_option" in result.output


def test_config_keys_may_be_spelled_as_flags(tmp_path):
    """``out:`` and ``model:`` (the flags --out, --model) fill out_dir and model_dir on the
    commands that predict; on train ``model`` stays the architecture (its own name)."""
    from histotile.workflows.cli.options import flag_keys

    predict, train = cli.commands["predict"], cli.commands["train"]
    assert flag_keys(predict, {"out": "o/", "model": "m/", "tile_size": 64}, "c.yaml") == {
        "out_dir": "o/", "model_dir": "m/", "tile_size": 64}
    assert flag_keys(train, {"model": "resnet18", "out": "m/"}, "c.yaml") == {
        "model": "resnet18", "out_dir": "m/"}
    with pytest.raises(click.BadParameter, match="c.yaml: out and out_dir are one option"):
        flag_keys(predict, {"out_dir": "a/", "out": "b/"}, "c.yaml")
    config = tmp_path / "c.yaml"
    config.write_text(f"model: {tmp_path / 'no-model'}\n")
    result = CliRunner().invoke(cli, ["predict", str(tmp_path), "--out", str(tmp_path / "o"),
                                      "--config", str(config)])
    assert result.exit_code == 2 and "model_dir" in result.output and "no-model" in result.output


def test_outputs_skip_resume_and_refuse(tmp_path, real_slide_path):
    print_a = fingerprint(real_slide_path, {"alpha": 0.4})
    print_b = fingerprint(real_slide_path, {"alpha": 0.5})
    assert print_a != print_b
    outputs = SlideOutputs(tmp_path, "s1", "run")
    outputs.begin(print_a, overwrite=False)
    result = outputs.path("heatmap.tif")
    result.write_bytes(b"x")
    assert outputs.completed_record(print_a) is None  # started, not finished: resume
    outputs.begin(print_a, overwrite=False)  # same settings: allowed
    outputs.finish(print_a, {"outputs": {"heatmap": str(result)}})
    assert outputs.completed_record(print_a) == {"outputs": {"heatmap": str(result)}}
    assert outputs.completed_record(print_b) is None
    with pytest.raises(OutputExistsError, match="different settings"):
        outputs.begin(print_b, overwrite=False)
    outputs.begin(print_b, overwrite=True)
    result.unlink()  # a finished record whose output vanished is not complete
    outputs.finish(print_b, {"outputs": {"heatmap": str(result)}})
    assert outputs.completed_record(print_b) is None


def test_outputs_refuse_foreign_files(tmp_path):
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "mine.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="did not write"):
        SlideOutputs(tmp_path, "s1", "run").begin("abc", overwrite=False)
    assert (tmp_path / "s1" / "mine.txt").read_text() == "precious"


def test_info_json_and_exit_codes(tmp_path, real_slide_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["info", str(real_slide_path), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)[0]
    assert info["dimensions"] == [2220, 2967] and info["objective_power"] == 20.0
    broken = tmp_path / "broken.svs"
    broken.write_text("not a slide")
    result = runner.invoke(cli, ["info", str(real_slide_path), str(broken)])
    assert result.exit_code == 1
    # The console wraps long paths (pytest's temporary folders vary in length).
    assert "broken.svs" in result.output.replace("\n", "") and "1 unreadable" in result.output
    result = runner.invoke(cli, ["info"])
    assert result.exit_code == 2


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "0.1.0" in result.output


def test_heatmaps_and_decisions_default_to_the_class_the_model_detects():
    """The card records the trained positive class under 'training'; the predictions'
    model reference must carry it, so batch heatmaps do not fall back to the second
    sorted class ('other' here)."""
    from histotile.errors import ModelError
    from histotile.postprocess.predict import model_reference
    from histotile.workflows.tasks.roles import resolve_positive_class

    class Trained:
        classes = ("epithelium", "other")
        card = {"classes": list(classes), "training": {"positive_class": "epithelium"}}

    reference = model_reference(Trained())
    assert resolve_positive_class(list(Trained.classes), reference, None) == "epithelium"
    # the training default, the last class:
    assert resolve_positive_class(list(Trained.classes), {}, None) == "other"
    assert resolve_positive_class(list(Trained.classes), reference, "other") == "other"
    with pytest.raises(ModelError, match="choose --positive-class"):
        resolve_positive_class(list(Trained.classes), reference, "tumour")
    # Without a recorded positive class the documented default, the last class, applies
    # (whatever the number of classes), and the roles say it was assumed.
    from histotile.workflows.tasks.roles import model_roles

    assert resolve_positive_class(["a", "b", "c"], {}, None) == "c"
    assert "assumed the last class 'c'" in model_roles(["a", "b", "c"], {}).assumed[0]
