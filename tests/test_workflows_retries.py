"""``--retries`` is the one retry count of a run: its slides' tasks and the parts of a very
large slide predicted across the cluster both get it (the parts once had their own 2)."""

from __future__ import annotations

import histotile
from histotile.workflows.slide_options import PredictOptions, RunOptions
from histotile.workflows.tasks import batch, predict
from histotile.workflows.tasks.execution import Execution, SlideParts


def test_the_runs_retries_reach_the_jobs_of_predict_and_run(monkeypatch, tmp_path):
    jobs = {}
    monkeypatch.setattr(batch, "run_jobs",
                        lambda task, given, *_args, **_kw: jobs.setdefault(task.__name__,
                                                                           given) and [])
    monkeypatch.setattr(batch, "combine_evaluations", lambda *_args: None)
    execution = Execution(retries=5, region_megapixels=3.0)
    slide = histotile.sample_slide()
    batch.predict_batch([slide], tmp_path / "m", tmp_path / "p", PredictOptions(),
                        execution, show_progress=False)
    batch.run_batch([slide], tmp_path / "m", tmp_path / "r", RunOptions(), execution,
                    show_progress=False)
    assert jobs["predict_task"][0]["parts"] == SlideParts(megapixels=3.0, retries=5)
    assert jobs["run_task"][0]["parts"] == SlideParts(megapixels=3.0, retries=5)
    assert Execution().parts() == SlideParts(Execution.region_megapixels, Execution.retries)


def test_the_parts_of_a_large_slide_are_submitted_with_the_runs_retries(monkeypatch,
                                                                        tmp_path):
    import contextlib

    import distributed

    import histotile.postprocess as postprocess

    submitted = []

    class Saved:
        def save(self, path, overwrite=False):
            return path

    class Client:
        def submit(self, function, *args, **options):
            submitted.append(options)
            return args

        def gather(self, futures):
            return futures

    class Outputs:
        def path(self, name):
            return tmp_path / name

    monkeypatch.setattr(predict, "_region_parts", lambda _path, megapixels: 3)
    monkeypatch.setattr(distributed, "worker_client", lambda: contextlib.nullcontext(Client()))
    monkeypatch.setattr(postprocess, "concat_predictions", lambda parts: Saved())
    _, _, count = predict.predict_and_save("slide.svs", "model", PredictOptions(), Outputs(),
                                           SlideParts(megapixels=1.0, retries=5))
    assert count == 3 and [task["retries"] for task in submitted] == [5, 5, 5]
