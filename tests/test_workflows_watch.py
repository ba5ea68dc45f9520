"""``histotile watch``: a slide copied in slowly is run exactly once and only after the
copy ends; a corrupt slide is reported and the watch goes on; finished slides are skipped
after a restart, also after the watcher was killed; SIGTERM lets the slide being run
finish. The settle time runs on a clock the tests move, never on the wall clock."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from histotile.errors import ConfigError
from histotile.workflows.watch import WatchSettings, watch_folder

pytest.importorskip("watchfiles")

WAIT = 180  # seconds: the most any wait may take; only a failing test waits that long


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from engine_fixtures import make_model

    from histotile.models.synthetic import write_stain_slides

    root = tmp_path_factory.mktemp("watch")
    write_stain_slides(root / "stage", patients=3, grid=(6, 5), tile_size=64, seed=3)
    slides = sorted((root / "stage").glob("*.tif"))
    return {"model": make_model(root / "model"), "slides": slides}


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Watcher:
    """``watch_folder`` in a thread, its events collected."""

    def __init__(self, settings: WatchSettings, clock=time.monotonic) -> None:
        self.events: list = []
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self.records: list = []
        self.thread = threading.Thread(target=self._run, args=(settings, clock), daemon=True)
        self.thread.start()

    def _run(self, settings, clock) -> None:
        self.records = watch_folder(settings, self._on_event, self.stop, clock)

    def _on_event(self, event) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, predicate):
        with self.changed:
            found = self.changed.wait_for(
                lambda: next((e for e in self.events if predicate(e)), None), timeout=WAIT)
        assert found is not None, [(e.kind, e.path.name, e.size) for e in self.events]
        return found

    def finished(self, path: Path):
        return self.wait_for(lambda e: e.kind == "finished" and e.path == path).record

    def close(self) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


def settings(tmp_path: Path, world, **more) -> WatchSettings:
    (tmp_path / "in").mkdir(exist_ok=True)
    return WatchSettings(inbox=tmp_path / "in", out_dir=tmp_path / "out",
                         model_dir=world["model"], interval=0.05, **more)


def test_a_slide_copied_in_slowly_is_run_once_after_the_copy_ends(world, tmp_path):
    clock = FakeClock()
    watcher = Watcher(settings(tmp_path, world, settle=5), clock)
    try:
        target = tmp_path / "in" / "scanner" / "a.tif"
        target.parent.mkdir()
        data = world["slides"][0].read_bytes()
        parts = [data[i * len(data) // 4:(i + 1) * len(data) // 4] for i in range(4)]
        with open(target, "wb") as copy:
            for written in range(1, 5):
                copy.write(parts[written - 1])
                copy.flush()
                size = sum(map(len, parts[:written]))
                watcher.wait_for(lambda e, s=size: e.kind == "waiting" and e.path == target
                                 and e.size == s)
                # Over the copy 4 x 3 s pass, more than the settle time; between two
                # writes less. A watch that timed from the first sight would run it here.
                clock.advance(3)
        assert not [e for e in watcher.events if e.kind == "processing"]
        clock.advance(5)
        record = watcher.finished(target)
        assert record.status == "ok" and record.tiles > 0, record
        assert (tmp_path / "out" / "a" / "predictions.csv").is_file()
        # Another slide later: the watch goes on, and the first one is not run again.
        second = tmp_path / "in" / "b.tif"
        shutil.copyfile(world["slides"][1], second)
        watcher.wait_for(lambda e: e.kind == "waiting" and e.path == second)
        clock.advance(5)
        assert watcher.finished(second).status == "ok"
    finally:
        watcher.close()
    assert [e.path.name for e in watcher.events if e.kind == "processing"] == ["a.tif", "b.tif"]
    report = json.loads((tmp_path / "out" / "run-report.json").read_text())
    assert [(r["slide"], r["status"]) for r in report["records"]] == [("a", "ok"), ("b", "ok")]


def test_a_corrupt_slide_is_reported_and_a_restart_skips_finished_slides(world, tmp_path):
    config = settings(tmp_path, world, settle=0)
    bad = tmp_path / "in" / "broken.svs"
    bad.write_bytes(b"not a slide at all" * 100)
    good = tmp_path / "in" / "good.tif"
    shutil.copyfile(world["slides"][2], good)
    watcher = Watcher(config)
    try:
        failed, done = watcher.finished(bad), watcher.finished(good)
    finally:
        watcher.close()
    assert failed.status == "failed" and "broken.svs" in failed.error
    assert done.status == "ok"
    predictions = tmp_path / "out" / "good" / "predictions.csv"
    written = predictions.stat().st_mtime_ns
    again = Watcher(config)  # a restart
    try:
        assert again.finished(good).status == "skipped"
        assert again.finished(bad).status == "failed"  # retried, failing the same way
    finally:
        again.close()
    assert predictions.stat().st_mtime_ns == written
    report = json.loads((tmp_path / "out" / "run-report.json").read_text())
    assert {r["slide"]: r["status"] for r in report["records"]} == {
        "broken": "failed", "good": "skipped"}


def test_settings_are_checked_before_watching(world, tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(ConfigError, match="inside the watched folder"):
        WatchSettings(tmp_path / "in", tmp_path / "in" / "out", world["model"]).validate()
    with pytest.raises(ConfigError, match="not a model folder"):
        WatchSettings(tmp_path / "in", tmp_path / "out", tmp_path).validate()
    with pytest.raises(ConfigError, match="engine"):
        WatchSettings.from_dict({"inbox": tmp_path / "in", "out_dir": tmp_path / "out",
                                 "model_dir": world["model"], "engine": "fast"})
    with pytest.raises(ConfigError, match="unknown watch setting"):
        WatchSettings.from_dict({"inbox": "in", "out_dir": "o", "model_dir": "m",
                                 "settel": 3})


def _start_cli(tmp_path: Path, world) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "histotile", "watch", str(tmp_path / "in"), "--model",
         str(world["model"]), "--out", str(tmp_path / "out"), "--settle", "0",
         "--interval", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})


def _wait_until_running(process: subprocess.Popen, tmp_path: Path, name: str) -> None:
    """Until the CLI claimed ``name``'s output folder (its state file exists)."""
    state = tmp_path / "out" / name / ".histotile-run.json"
    deadline = time.monotonic() + WAIT
    while not state.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the watch never started the slide"
        time.sleep(0.02)


def _put_slides(tmp_path: Path, world) -> list[Path]:
    (tmp_path / "in").mkdir()
    paths = []
    for index, source in enumerate(world["slides"][:2]):
        paths.append(tmp_path / "in" / f"s{index}.tif")
        shutil.copyfile(source, paths[-1])
    return paths


@pytest.mark.slow
def test_sigterm_lets_the_running_slide_finish(world, tmp_path):
    _put_slides(tmp_path, world)
    process = _start_cli(tmp_path, world)
    _wait_until_running(process, tmp_path, "s0")
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=WAIT)
    assert process.returncode == 0, output
    assert "histotile watch: stopped" in output
    state = json.loads((tmp_path / "out" / "s0" / ".histotile-run.json").read_text())
    assert state["state"] == "done", output  # finished writing, not cut off


@pytest.mark.slow
def test_a_killed_watch_resumes_and_loses_nothing(world, tmp_path):
    paths = _put_slides(tmp_path, world)
    process = _start_cli(tmp_path, world)
    _wait_until_running(process, tmp_path, "s0")
    process.kill()  # SIGKILL: no chance to finish anything
    process.communicate(timeout=WAIT)
    watcher = Watcher(settings(tmp_path, world, settle=0))
    try:
        records = {p.name: watcher.finished(p) for p in paths}
    finally:
        watcher.close()
    assert {r.status for r in records.values()} <= {"ok", "skipped"}, records
    for path in paths:
        folder = tmp_path / "out" / path.stem
        assert json.loads((folder / ".histotile-run.json").read_text())["state"] == "done"
        assert (folder / "predictions.csv").is_file()
        assert not list(folder.glob("*.tmp*")) and not (folder / ".histotile.lock").exists()
