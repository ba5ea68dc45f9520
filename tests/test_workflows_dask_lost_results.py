"""How a Dask run treats a slide whose finished result is lost with its worker before the
client reads it (the client's gather fails while the scheduler computes the slide again):
it waits for the recomputation instead of reporting the client's error, a bounded number
of times; a recomputation that finds the slide's own finished folder is reported ok; a
slide that really failed on the cluster (status "error") is reported at once. The cluster
is faked here: the race cannot be timed reliably on a real one (the killed-worker tests in
test_workflows_dask.py meet it by chance)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest

from histotile.workflows.tasks import execution
from histotile.workflows.tasks.execution import LOST_RESULT_WAITS, Execution, _run_dask


class FakeFuture:
    """Raises each of ``outcomes`` (exceptions) in turn, then returns ``record``."""

    def __init__(self, key: str, outcomes: list[BaseException], record: dict,
                 status_on_raise: str = "pending") -> None:
        self.key, self.outcomes, self.record = key, list(outcomes), record
        self.status_on_raise = status_on_raise
        self.status = "finished"
        self.reads = 0

    def result(self):
        self.reads += 1
        if self.outcomes:
            self.status = self.status_on_raise
            raise self.outcomes.pop(0)
        self.status = "finished"
        return self.record

    def release(self) -> None:
        pass


class FakeAsCompleted:
    """distributed.as_completed over fakes: yields futures in order, re-added ones too."""

    def __init__(self) -> None:
        self.queue: list[FakeFuture] = []

    def add(self, future: FakeFuture) -> None:
        self.queue.append(future)

    def __iter__(self):
        while self.queue:
            yield self.queue.pop(0)


@pytest.fixture
def fake_cluster(monkeypatch):
    futures: dict[str, FakeFuture] = {}

    class Client:
        def submit(self, _function, _task, job, *, key, **_options):
            return futures[job["slide_path"]]._with_key(key)

    @contextlib.contextmanager
    def open_client(_execution):
        yield Client()

    def with_key(self, key):
        self.key = key
        return self

    FakeFuture._with_key = with_key
    monkeypatch.setattr(execution, "open_client", open_client)
    import distributed

    monkeypatch.setattr(distributed, "as_completed", FakeAsCompleted)
    return futures


def record(name: str, status: str, **extra) -> dict:
    return {"slide": name, "path": f"/slides/{name}.tif", "status": status, **extra}


def run(futures: dict, names: list[str]):
    jobs = [{"slide_path": f"/slides/{n}.tif"} for n in names]
    return _run_dask(lambda **_: None, jobs, Execution(scheduler="tcp://fake:8786"), None)


def test_a_lost_result_is_waited_for_and_its_recomputation_reported_ok(fake_cluster):
    lost = RuntimeError("<asyncio.locks.Event> is bound to a different event loop")
    fake_cluster["/slides/a.tif"] = FakeFuture("", [lost], record("a", "skipped"))
    fake_cluster["/slides/b.tif"] = FakeFuture("", [], record("b", "ok"))
    fake_cluster["/slides/c.tif"] = FakeFuture("", [lost, lost], record("c", "ok"))
    records = {r.slide: r for r in run(fake_cluster, ["a", "b", "c"])}
    assert [records[n].status for n in "abc"] == ["ok", "ok", "ok"]
    assert "worker died" in records["a"].warning  # recomputed, found its own folder
    assert records["b"].warning is None and records["c"].warning is None
    assert fake_cluster["/slides/c.tif"].reads == 3


def test_a_slide_that_failed_on_the_cluster_is_not_waited_for(fake_cluster):
    from distributed import KilledWorker

    worker = SimpleNamespace(address="tcp://127.0.0.1:1")
    killed = KilledWorker("histotile-a.tif-0", worker, 1)
    fake_cluster["/slides/a.tif"] = FakeFuture("", [killed], record("a", "ok"),
                                               status_on_raise="error")
    (only,) = run(fake_cluster, ["a"])
    assert only.status == "failed" and "KilledWorker" in only.error
    assert fake_cluster["/slides/a.tif"].reads == 1


def test_a_result_lost_again_and_again_is_reported_failed(fake_cluster):
    lost = [RuntimeError(f"gather failed {i}") for i in range(LOST_RESULT_WAITS + 1)]
    fake_cluster["/slides/a.tif"] = FakeFuture("", lost, record("a", "ok"))
    (only,) = run(fake_cluster, ["a"])
    assert only.status == "failed" and f"gather failed {LOST_RESULT_WAITS}" in only.error
    assert fake_cluster["/slides/a.tif"].reads == LOST_RESULT_WAITS + 1
