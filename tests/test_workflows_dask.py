"""The Dask job: a local cluster of processes, a worker killed mid-run, a slide that
keeps killing its workers, and results identical to the in-process run."""

from __future__ import annotations

import threading

import dask
import numpy as np
import pandas as pd
import pytest
from dask_fixtures import kill_workers_running
from distributed import Client, LocalCluster

from histotile.workflows.slide_options import TileOptions
from histotile.workflows.tasks.batch import tile_batch
from histotile.workflows.tasks.execution import Execution
from histotile.wsi.synthetic import Mark, write_overlay, write_synthetic_slide

OPTIONS = TileOptions.from_dict({"classes": "normal,tumour=#00ff00", "tile_size": 128,
                                 "seed": 1})


@pytest.fixture(scope="module")
def slide_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask_slides")
    for index in range(4):
        path = folder / f"slide{index}.tif"
        write_synthetic_slide(path, 3072, 2048, seed=10 + index, tile_size=256)
        write_overlay(path, folder / f"slide{index}.overlay.tif",
                      [Mark((0, 255, 0), rect=(600, 500, 1400, 900))], downsample=4)
    (folder / "broken.svs").write_text("not a slide")
    return folder


@pytest.fixture(scope="module")
def in_process(slide_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("in_process")
    records = tile_batch([slide_folder], out, OPTIONS, show_progress=False)
    return out, {r.slide: r for r in records}


def manifests(out, names):
    return {n: pd.read_csv(out / n / "manifest.csv") for n in names}


def test_in_process_reports_broken_slide_and_goes_on(in_process):
    _, records = in_process
    assert records["broken"].status == "failed"
    assert "broken.svs" in records["broken"].error
    assert all(records[f"slide{i}"].status == "ok" for i in range(4))
    assert all(records[f"slide{i}"].tiles > 0 for i in range(4))


@pytest.mark.slow
def test_worker_killed_mid_run_and_a_slide_that_keeps_failing(slide_folder, in_process,
                                                               tmp_path):
    # Saturation 1.0: slides wait on the scheduler, so a killed worker holds only the
    # slide it runs (as histotile's own local clusters are configured).
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}), LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
            scheduler_kwargs={"allowed_failures": 1}) as cluster, Client(cluster) as client:
        # One kill of whoever runs slide1: it must be retried elsewhere and succeed.
        stop, kills = threading.Event(), []
        killer = threading.Thread(target=kill_workers_running,
                                  args=(client, "slide1", stop, kills, 1), daemon=True)
        killer.start()
        out = tmp_path / "dask"
        records = tile_batch([slide_folder], out, OPTIONS,
                             execution=Execution(scheduler=cluster.scheduler_address,
                                                 retries=2), show_progress=False)
        stop.set()
        killer.join(5)
        assert kills, "the test never caught slide1 running"
        by_name = {r.slide: r for r in records}
        assert by_name["broken"].status == "failed"
        for index in range(4):
            assert by_name[f"slide{index}"].status == "ok", by_name[f"slide{index}"].error
        # Per-slide results identical to the in-process run.
        names = [f"slide{i}" for i in range(4)]
        expected, got = manifests(in_process[0], names), manifests(out, names)
        for name in names:
            pd.testing.assert_frame_equal(got[name].drop(columns="path"),
                                          expected[name].drop(columns="path"))

        # A slide whose every worker dies is reported failed after the retries, not
        # retried forever, and the rest of the run still finishes.
        stop, kills = threading.Event(), []
        killer = threading.Thread(target=kill_workers_running,
                                  args=(client, "slide2", stop, kills, 10), daemon=True)
        killer.start()
        out2 = tmp_path / "dask2"
        records = tile_batch([slide_folder / f"slide{i}.tif" for i in range(4)], out2,
                             OPTIONS, execution=Execution(scheduler=cluster.scheduler_address,
                                                          retries=1), show_progress=False)
        stop.set()
        killer.join(5)
        by_name = {r.slide: r for r in records}
        assert by_name["slide2"].status == "failed"
        assert "KilledWorker" in by_name["slide2"].error
        # On an existing cluster, worker deaths are retried as the scheduler's own
        # allowed-failures setting says: the first attempt plus that many, so the killer
        # (allowed up to 10 kills) got no further than that. At most, not exactly: on a
        # loaded machine the scheduler can also lose the restarting worker it handed the
        # slide to, a death it counts against the slide without the killer's hand.
        allowed = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
        assert 1 <= len(kills) <= allowed + 1
        for name in ("slide0", "slide1", "slide3"):
            assert by_name[name].status == "ok", (name, by_name[name].error)


def test_local_cluster_by_worker_count_and_resume(slide_folder, in_process, tmp_path):
    out = tmp_path / "local"
    records = tile_batch([slide_folder / "slide0.tif", slide_folder / "slide3.tif"], out,
                         OPTIONS, execution=Execution(workers=2), show_progress=False)
    assert [r.status for r in records] == ["ok", "ok"]
    # A rerun with the same settings skips finished slides, in-process.
    again = tile_batch([slide_folder / "slide0.tif", slide_folder / "slide3.tif"], out,
                       OPTIONS, show_progress=False)
    assert [r.status for r in again] == ["skipped", "skipped"]
    assert [r.tiles for r in again] == [r.tiles for r in records]
    combined = pd.read_csv(out / "manifest.csv")
    assert len(combined) == sum(r.tiles for r in records)


def test_unreachable_scheduler_is_a_clear_error(slide_folder, tmp_path):
    from histotile.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        tile_batch([slide_folder / "slide0.tif"], tmp_path, OPTIONS,
                   execution=Execution(scheduler="tcp://127.0.0.1:1", connect_timeout=2),
                   show_progress=False)


@pytest.fixture(scope="module")
def tiny_model(in_process, tmp_path_factory):
    from histotile.models import TrainSettings, train

    out, _ = in_process
    model = tmp_path_factory.mktemp("model") / "lenet"
    train(out / "slide0" / "manifest.csv", model,
          TrainSettings(model="lenet", epochs=1, folds=0, test_fraction=0.0, max_tiles=120,
                        workers=0, seed=0))
    return model


def test_large_slide_predicted_in_parts_across_workers(slide_folder, tiny_model, tmp_path):
    from histotile.workflows.tasks.batch import predict_batch

    slide = slide_folder / "slide2.tif"
    whole = predict_batch([slide], tiny_model, tmp_path / "whole", show_progress=False)
    # 3072 x 2048 = 6.3 MP: parts of 1 MP make 7 tasks spread over the two workers.
    split = predict_batch([slide], tiny_model, tmp_path / "split",
                          execution=Execution(workers=2, region_megapixels=1.0),
                          show_progress=False)
    assert whole[0].status == split[0].status == "ok", split[0].error
    assert whole[0].extra["prediction_parts"] == 1
    assert split[0].extra["prediction_parts"] == 7
    a = pd.read_csv(tmp_path / "whole" / "slide2" / "predictions.csv")
    b = pd.read_csv(tmp_path / "split" / "slide2" / "predictions.csv")
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a[["x", "y", "extent"]], b[["x", "y", "extent"]])
    probabilities = [c for c in a.columns if c.startswith("prob_")]
    # Batches are cut differently in parts: equal up to float32 rounding.
    np.testing.assert_allclose(a[probabilities], b[probabilities], atol=1e-5)
