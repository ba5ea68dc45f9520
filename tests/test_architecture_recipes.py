"""The "How to add" recipes of ARCHITECTURE.md, followed with toys: a model (a spec and a
registered builder, then trained and predicted), an annotation kind (a class-map reader
and its dataclass, then tiled), and a command (a click command, its examples and the
error handler). A recipe that stops being enough fails here."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from histotile.tiling.annotation_windows import UNANNOTATED, ClassMapWindows


@pytest.fixture
def toy_model(monkeypatch):
    """A torch model added as ARCHITECTURE.md says: one ModelSpec, one builder."""
    import torch.nn as nn

    from histotile.models import settings, specs, torch_nets

    spec = specs.ModelSpec("toynet", ("torch",), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), True,
                           "two convolutions and a linear head (a test's toy)",
                           cam_layer="features.2", min_tile_size=specs.SMALL_TILE_SIZE,
                           defaults={"optimizer": "adam", "lr": 0.01, "momentum": 0.9,
                                     "batch_size": 8, "epochs": 1, "weight_decay": 0.0})
    monkeypatch.setitem(specs.SPECS, "toynet", spec)
    # settings.MODEL_DEFAULTS is derived from SPECS when histotile.models loads; a spec
    # written into specs.py is in it, one patched in afterwards has to be put there.
    monkeypatch.setitem(settings.MODEL_DEFAULTS, "toynet", dict(spec.defaults))
    monkeypatch.setattr(torch_nets, "BUILDERS", dict(torch_nets.BUILDERS))

    @torch_nets.register_builder("toynet")
    def _toynet(num_classes: int, _tile_size: int) -> nn.Module:
        net = nn.Sequential()
        net.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        net.pool = nn.AdaptiveAvgPool2d(1)
        net.flatten = nn.Flatten()
        net.head = nn.Linear(8, num_classes)
        return net

    return spec


def test_a_model_added_by_its_spec_and_builder_trains_and_predicts(toy_model, tmp_path):
    from PIL import Image

    from histotile.models import Predictor, TrainSettings, train
    from histotile.models.synthetic import stain_tiles

    rng = np.random.default_rng(0)
    for name in ("eosin", "haematoxylin"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i, tile in enumerate(stain_tiles([name] * 12, 32, rng)):
            Image.fromarray(tile).save(tmp_path / "images" / name / f"p{i % 4}_{i}.png")
    result = train(tmp_path / "images", tmp_path / "model", TrainSettings(
        model="toynet", folds=0, test_fraction=0, workers=1, seed=0,
        positive_class="haematoxylin", group_by="slide"))
    assert result.card["architecture"] == "toynet"
    predictor = Predictor(tmp_path / "model", engine="torch")
    probabilities = predictor.predict(stain_tiles(["eosin", "haematoxylin"], 32, rng))
    assert probabilities.shape == (2, 2)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)


class LeftHalfWindows(ClassMapWindows):
    """A toy kind's reader: the left half of the slide is class 1, the rest unannotated;
    one map pixel per 64 level-0 pixels."""

    def __init__(self, slide) -> None:
        width, height = slide.dimensions
        self.scale = (64.0, 64.0)
        self.map_dims = (math.ceil(width / 64), math.ceil(height / 64))
        self.middle = width / 2 / 64

    def class_map(self, mx0: int, my0: int, mx1: int, my1: int) -> np.ndarray:
        cmap = np.full((my1 - my0, mx1 - mx0), UNANNOTATED, np.uint8)
        cmap[:, np.arange(mx0, mx1) + 1 <= self.middle] = 1
        return cmap


@dataclass(frozen=True)
class LeftHalf:
    """A toy annotation kind, as ARCHITECTURE.md says: a dataclass whose ``windows``
    returns its reader, with ``check_classes`` and ``warn_unused``."""

    def windows(self, slide, classes, settings, extent: float) -> ClassMapWindows:
        return LeftHalfWindows(slide)

    def check_classes(self, classes) -> None:
        return None

    def warn_unused(self, fractions, classes, settings) -> None:
        return None


def test_an_annotation_kind_added_by_its_reader_and_dataclass_labels_tiles():
    import histotile as ht

    settings = ht.TilingSettings(tile_size=256, mpp=0.5, classes=("other", "tumour"))
    manifest = ht.extract_tiles(ht.sample_slide(), settings, annotation=LeftHalf())
    middle = 2220 / 2  # the sample slide is 2220 px wide
    left = manifest["x"] + manifest["extent"] <= middle
    right = manifest["x"] >= middle
    assert left.any() and right.any()
    assert (manifest.loc[left, "label"] == "tumour").all()
    assert (manifest.loc[right, "label"] == "other").all()


def test_a_command_added_with_its_examples_and_error_handler(monkeypatch):
    import click
    from click.testing import CliRunner

    from histotile.errors import ConfigError, DatasetError
    from histotile.workflows.cli import options
    from histotile.workflows.cli.main import cli

    monkeypatch.setitem(options.EXAMPLES, "toy", "histotile toy slides/ --times 2")

    def count(slides: tuple[str, ...], times: int, progress) -> int:  # the workflow
        if times < 1:
            raise ConfigError(f"--times {times}: must be at least 1 (give a count)")
        if "broken" in slides:
            raise DatasetError("broken: not a slide (check the path)")
        for done, _ in enumerate(slides, 1):
            progress(done, len(slides))
        return len(slides) * times

    @click.command(epilog=options.examples("toy"))
    @click.argument("slides", nargs=-1)
    @click.option("--times", type=int, default=1)
    @options.handle_errors
    def toy(slides: tuple[str, ...], times: int) -> None:
        """Count the slides (a test's toy)."""
        click.echo(count(slides, times, lambda done, total: None))

    cli.add_command(toy)
    try:
        runner = CliRunner()
        shown = runner.invoke(cli, ["toy", "--help"])
        assert shown.exit_code == 0 and "histotile toy slides/ --times 2" in shown.output
        assert runner.invoke(cli, ["toy", "a", "b", "--times", "2"]).output == "4\n"
        usage = runner.invoke(cli, ["toy", "a", "--times", "0"])
        assert usage.exit_code == 2 and "must be at least 1" in usage.output
        failed = runner.invoke(cli, ["toy", "broken"])
        assert failed.exit_code == 1 and "broken: not a slide" in failed.output
    finally:
        cli.commands.pop("toy")
