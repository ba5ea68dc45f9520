"""Cross-validation folds as tasks on a local Dask cluster: the same splits, histories,
metrics, weights and card as the sequential run; a fold that keeps failing fails the
command with its name; the CLI routes --workers to the cluster."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from dask_fixtures import kill_workers_running

from histotile.errors import ModelError
from histotile.models import TrainSettings, train
from histotile.models.synthetic import write_stain_slides
from histotile.workflows.tasks.execution import Execution
from histotile.workflows.training.cluster import DaskFolds

# threads=1 in both runs: the fold tasks use at most their worker's one core, and the
# same thread count gives the same float reductions, so results are bit-identical.
SETTINGS = {"model": "lenet", "epochs": 2, "folds": 2, "batch_size": 16, "optimizer": "adam",
            "lr": 1e-3, "workers": 0, "threads": 1, "seed": 3, "patience": 0}
TIMING = {"seconds", "train_seconds", "train_tiles_per_s", "inference_tiles_per_s",
          "tiles_per_second"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_stain_slides(tmp_path_factory.mktemp("stain"), patients=6, grid=(5, 4),
                              tile_size=64, seed=2)


@pytest.fixture(scope="module")
def sequential(manifest, tmp_path_factory):
    return train(manifest, tmp_path_factory.mktemp("seq") / "model",
                 TrainSettings(**SETTINGS))


def _untimed(value):
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


@pytest.mark.slow
def test_folds_on_dask_equal_the_sequential_run(manifest, sequential, tmp_path):
    events: list[tuple[str, dict]] = []
    with DaskFolds(Execution(workers=2)) as runner:
        parallel = train(manifest, tmp_path / "model", TrainSettings(**SETTINGS),
                         fold_runner=runner,
                         progress=lambda event, **info: events.append((event, info)))
    a, b = sequential.model_dir, parallel.model_dir
    # Weights: bit for bit.
    wa = torch.load(a / "model.pt", weights_only=True)
    wb = torch.load(b / "model.pt", weights_only=True)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # Metrics per fold and on the test split: equal, timing aside.
    assert _untimed(parallel.folds) == _untimed(sequential.folds)
    assert _untimed(parallel.test) == _untimed(sequential.test)
    assert len(parallel.folds) == 2 and parallel.test is not None
    # The files: splits identical; history and metrics identical but for timings.
    assert (a / "splits.csv").read_text() == (b / "splits.csv").read_text()
    for name in ("history.csv", "metrics_folds.csv"):
        fa, fb = pd.read_csv(a / name), pd.read_csv(b / name)
        keep = [c for c in fa.columns if c not in TIMING]
        pd.testing.assert_frame_equal(fa[keep], fb[keep])
    # The card: the same record, apart from its creation time, timings and the engine.
    ca, cb = (json.loads((d / "model_card.json").read_text()) for d in (a, b))
    assert ca["execution"] == {"engine": "in-process", "world_size": 1, "device": "cpu",
                               "seed": 3}
    assert cb["execution"]["engine"] == "dask" and cb["execution"]["world_size"] == 1
    for card in (ca, cb):
        card.pop("created"), card.pop("execution")
    assert _untimed(ca) == _untimed(cb)
    # The workers' log lines reach the run's log; progress reports every fold.
    log = (b / "train.log").read_text()
    assert "[fold2 on the cluster] fold2 epoch 2/2" in log
    ends = [info["tag"] for event, info in events if event == "fold_end"]
    assert sorted(ends) == ["fold1", "fold2"]
    assert any(event == "test" for event, _ in events)


def test_a_fold_that_keeps_failing_fails_the_run_by_name(manifest, tmp_path, monkeypatch):
    # A manifest the workers cannot read the same way: the client sees 120 tiles, the
    # workers (told a different count) refuse -- a histotile error, not retried.
    from histotile.workflows.training import cluster as train_cluster

    calls = []
    real = train_cluster.fold_task

    def wrong_count(payload):
        calls.append(payload["job"].tag)
        return real({**payload, "tiles": payload["tiles"] + 1})

    monkeypatch.setattr(train_cluster, "fold_task", wrong_count)
    with pytest.raises(ModelError, match="same path on every worker"), \
            DaskFolds(Execution(workers=1, retries=1)) as runner:
        train(manifest, tmp_path / "model", TrainSettings(**SETTINGS), fold_runner=runner)
    assert not (tmp_path / "model").exists()
    assert not list(tmp_path.glob(".model*"))


def test_a_crashing_fold_is_retried_then_named(manifest, tmp_path, monkeypatch):
    from histotile.workflows.training import cluster as train_cluster

    def crash(payload):
        raise OSError("disk went away")

    monkeypatch.setattr(train_cluster, "fold_task", crash)
    with pytest.raises(ModelError, match=r"fold[12]: failed on the Dask cluster after 1 "
                                         r"retries \(OSError: disk went away\)"), \
            DaskFolds(Execution(workers=1, retries=1)) as runner:
        train(manifest, tmp_path / "model", TrainSettings(**SETTINGS), fold_runner=runner)
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_a_killed_worker_has_its_fold_retried_with_the_same_result(manifest, sequential,
                                                                    tmp_path):
    import threading

    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}), LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
            scheduler_kwargs={"allowed_failures": 2},
            env={"HISTOTILE_THREADS": "1", "OMP_NUM_THREADS": "1"}) as cluster, \
            Client(cluster) as watcher:
        stop, kills = threading.Event(), []
        killer = threading.Thread(target=kill_workers_running,
                                  args=(watcher, "histotile-train-fold1", stop, kills, 1, 1.0))
        killer.start()
        try:
            with DaskFolds(Execution(scheduler=cluster.scheduler_address)) as runner:
                result = train(manifest, tmp_path / "model", TrainSettings(**SETTINGS),
                               fold_runner=runner)
        finally:
            stop.set()
            killer.join()
    assert len(kills) == 1  # fold1's worker really died
    assert _untimed(result.folds) == _untimed(sequential.folds)
    wa = torch.load(sequential.model_dir / "model.pt", weights_only=True)
    wb = torch.load(result.model_dir / "model.pt", weights_only=True)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
