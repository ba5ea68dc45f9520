"""``histotile train`` beyond one process from the command line: --ddp 2 launches two
torchrun ranks that write one model folder; conflicting engines are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from histotile.models.synthetic import write_stain_slides
from histotile.workflows.cli.main import cli

WORKTREE = str(Path(__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_stain_slides(tmp_path_factory.mktemp("stain"), patients=6, grid=(5, 4),
                              tile_size=64, seed=2)


def test_dask_and_ddp_together_are_refused(manifest, tmp_path):
    result = CliRunner().invoke(cli, ["train", str(manifest), "--out", str(tmp_path / "m"),
                                      "--workers", "2", "--ddp", "2"])
    assert result.exit_code == 2
    assert "choose one" in result.output
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_ddp_two_processes_write_one_model_folder(manifest, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": WORKTREE + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "histotile", "train", str(manifest), "--out", "model",
               "--epochs", "1", "--folds", "2", "--ddp", "2"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["execution"]["world_size"] == 2
    assert card["execution"]["process_group"] == "gloo"
    assert len(card["metrics"]["folds"]) == 2 and card["metrics"]["test"]["n"] == 20
    # One model folder (rank 0's); nothing else in the working directory.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # Run again: the existing folder is refused before any rank starts.
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 1 and "output already exists" in again.stderr
    assert "rank" not in again.stderr
