"""Data-parallel training with torch.distributed on two gloo ranks (CPU processes): the
same global batch and seed give the single-process weights within float tolerance; a
rank that fails stops the other one with a message, within a bounded time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from histotile.models import TrainSettings, train
from histotile.models.synthetic import write_stain_slides

# SGD (the LeNet default) keeps float differences as small as they start; augmentation
# off, since its draws are per rank.
SETTINGS = {"model": "lenet", "epochs": 2, "folds": 2, "batch_size": 16, "optimizer": "sgd",
            "lr": 0.01, "momentum": 0.9, "workers": 0, "threads": 1, "seed": 3,
            "patience": 0, "augment": False}
WORKTREE = str(Path(__file__).resolve().parents[1])

RANK = """
import json, os, sys
from histotile.models import TrainSettings, train, distributed
from histotile.workflows.training.parallel import run_rank

data, settings, out, mode = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
info = distributed.RankInfo.from_environment()
if mode == "api":
    parallel = distributed.start(info, "cpu", timeout_s=60)
    try:
        train(data, f"{out}/rank{info.rank}", TrainSettings(**settings),
              fold_runner=distributed.DistributedFolds(parallel))
    finally:
        distributed.stop()
else:  # "fail": rank 1 dies in the first epoch's reduction; rank 0 must not hang
    real = distributed.DataParallel.reduce
    def reduce(self, *args):
        if self.rank == 1:
            raise ValueError("rank 1 was told to fail")
        return real(self, *args)
    distributed.DataParallel.reduce = reduce
    run_rank(data, f"{out}/model", settings, info, timeout_s=60)
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_stain_slides(tmp_path_factory.mktemp("stain"), patients=6, grid=(5, 4),
                              tile_size=64, seed=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ranks(manifest, settings: dict, out: Path, mode: str, timeout: float = 600):
    """Start two ranks as separate processes; return (returncode, stderr) per rank."""
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1", "HISTOTILE_THREADS": "1",
               "PYTHONPATH": WORKTREE + os.pathsep + os.environ.get("PYTHONPATH", "")}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", RANK, str(manifest), json.dumps(settings), str(out), mode],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=timeout)
            results.append((proc.returncode, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return results


@pytest.mark.slow
def test_two_gloo_ranks_give_the_single_process_weights(manifest, tmp_path):
    single = train(manifest, tmp_path / "single", TrainSettings(**SETTINGS))
    results = _ranks(manifest, SETTINGS, tmp_path, "api")
    assert [rc for rc, _ in results] == [0, 0], results[0][1][-3000:] + results[1][1][-3000:]
    ranked = tmp_path / "rank0"
    ws = torch.load(single.model_dir / "model.pt", weights_only=True)
    wd = torch.load(ranked / "model.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1" / "model.pt", weights_only=True)
    assert ws.keys() == wd.keys()
    for key in ws:
        # Summation order differs (per-rank sums, then the all-reduce): float tolerance.
        torch.testing.assert_close(wd[key], ws[key], rtol=1e-4, atol=1e-5)
        assert torch.equal(wd[key], w1[key])  # every rank holds the same model
    # Same epochs, same validation decisions, losses within float tolerance.
    hs = pd.read_csv(single.model_dir / "history.csv")
    hd = pd.read_csv(ranked / "history.csv")
    assert list(hs["fold"]) == list(hd["fold"]) and list(hs["epoch"]) == list(hd["epoch"])
    for column in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        pd.testing.assert_series_equal(hs[column], hd[column], rtol=1e-4, atol=1e-5)
    card = json.loads((ranked / "model_card.json").read_text())
    assert card["execution"] == {
        "engine": "torch.distributed (DistributedDataParallel)", "world_size": 2,
        "process_group": "gloo", "nodes": 1, "device": "cpu", "seed": 3}
    metrics_s = pd.read_csv(single.model_dir / "metrics_folds.csv").set_index("part")
    metrics_d = pd.read_csv(ranked / "metrics_folds.csv").set_index("part")
    pd.testing.assert_series_equal(metrics_s["n"], metrics_d["n"])
    pd.testing.assert_series_equal(metrics_s["loss"], metrics_d["loss"], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_failed_rank_stops_the_job_with_a_message(manifest, tmp_path):
    options = {k: SETTINGS[k] for k in ("model", "epochs", "folds", "batch_size", "workers",
                                        "seed")}
    (rc0, err0), (rc1, err1) = _ranks(manifest, options, tmp_path, "fail", timeout=300)
    assert rc1 != 0 and "rank 1 was told to fail" in err1
    assert rc0 != 0
    assert "rank 0 of 2: data-parallel training stopped" in err0, err0[-2000:]
    assert not (tmp_path / "model").exists()
