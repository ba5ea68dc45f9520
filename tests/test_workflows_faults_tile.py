"""Faults of ``histotile tile`` found by the audit of issue 23: a second batch into a
folder that already holds tiles, a read-only output folder, one annotation file for
several slides, a mask beside a slide, RGB label masks, warnings printed once, GeoJSON
class names that would leave their folder, and slides that give no tiles."""

from __future__ import annotations

import errno
import json
import pathlib

import pandas as pd
from click.testing import CliRunner

from histotile.workflows.cli import cli
from histotile.wsi.synthetic import write_synthetic_slide

SIZE = 512


def invoke(*args) -> tuple[int, str]:
    """Exit code and output with line wrapping undone (rich wraps at 80 columns)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


def slide(folder: pathlib.Path, name: str, seed: int = 1) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    write_synthetic_slide(path, SIZE, SIZE, seed=seed, tile_size=256, tissue_fraction=0.6)
    return path


def report(out: pathlib.Path, command: str = "tile") -> pd.DataFrame:
    return pd.read_csv(out / f"{command}-report.csv", keep_default_na=False).set_index("slide")


def test_a_second_batch_keeps_the_first_batchs_tiles_in_the_manifest(tmp_path):
    slides = tmp_path / "slides"
    a, b, c = (slide(slides, f"{n}.tif", seed=i) for i, n in enumerate("abc", 1))
    out = tmp_path / "tiles"
    assert invoke("tile", a, b, "--out", out, "--tile-size", "64")[0] == 0
    assert invoke("tile", c, "--out", out, "--tile-size", "64")[0] == 0
    manifest = pd.read_csv(out / "manifest.csv")
    parts = [pd.read_csv(out / n / "manifest.csv") for n in "abc"]
    assert sorted(set(manifest["slide"])) == ["a", "b", "c"]
    assert len(manifest) == sum(len(p) for p in parts)
    assert json.loads((out / "manifest.json").read_text())["slides"] == ["a", "b", "c"]
    assert sorted(report(out).index) == ["a", "b", "c"]


def test_a_folder_tiled_with_other_settings_is_refused_before_any_work(tmp_path):
    slides = tmp_path / "slides"
    a, b = slide(slides, "a.tif"), slide(slides, "b.tif", seed=2)
    out = tmp_path / "tiles"
    assert invoke("tile", a, "--out", out, "--tile-size", "64")[0] == 0
    code, output = invoke("tile", b, "--out", out, "--tile-size", "128")
    assert code == 2  # a usage error: nothing was tiled
    assert "slide 'a' there was tiled with other settings" in output
    assert "tile_size 64 there, 128 here" in output
    assert not (out / "b").exists()
    assert set(pd.read_csv(out / "manifest.csv")["slide"]) == {"a"}


def test_a_read_only_output_folder_is_a_clear_error(tmp_path, monkeypatch):
    path = slide(tmp_path / "slides", "a.tif")
    out = tmp_path / "read-only" / "tiles"
    real = pathlib.Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(out.parent)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    code, output = invoke("tile", path, "--out", out, "--tile-size", "64")
    assert code == 1
    assert "cannot write: the file system is read-only (choose another --out)" in output


def test_a_slide_another_run_finished_meanwhile_is_reported_as_such(tmp_path, monkeypatch):
    """Two runs on one --out: this one finds 'one' busy (the other holds its folder), and
    the other finishes it before this one ends."""
    from histotile._files import folder_lock
    from histotile.workflows import batch

    slides = tmp_path / "slides"
    first, second = slide(slides, "one.tif"), slide(slides, "two.tif", seed=2)
    out = tmp_path / "tiles"
    real = batch.run_tasks

    def beside_another_run(task, jobs, *args, **kwargs):
        with folder_lock(out / "one"):  # the other run is working on 'one'
            records = real(task, jobs, *args, **kwargs)
        monkeypatch.setattr(batch, "run_tasks", real)  # the other run is a plain one
        other = CliRunner().invoke(cli, ["tile", str(first), "--out", str(out),
                                         "--tile-size", "64"], catch_exceptions=False)
        assert other.exit_code == 0, other.output  # ... and finishes it
        return records

    monkeypatch.setattr(batch, "run_tasks", beside_another_run)
    code, output = invoke("tile", first, second, "--out", out, "--tile-size", "64")
    assert code == 0, output
    rows = report(out)
    assert rows.loc["one", "status"] == "skipped"
    assert rows.loc["one", "skip_reason"] == "finished by another run"
    assert rows.loc["one", "error"] == ""  # nobody is working on it any more
    assert int(rows.loc["one", "tiles"]) == len(pd.read_csv(out / "one" / "manifest.csv"))
    assert rows.loc["two", "status"] == "ok"
    assert "1 ok, 0 skipped (already complete" in output
    assert "1 finished by another histotile run meanwhile" in output
    assert set(pd.read_csv(out / "manifest.csv")["slide"]) == {"one", "two"}


def test_a_slide_still_busy_is_not_called_complete(tmp_path):
    from histotile._files import folder_lock

    slides = tmp_path / "slides"
    first, second = slide(slides, "one.tif"), slide(slides, "two.tif", seed=2)
    out = tmp_path / "tiles"
    assert invoke("tile", second, "--out", out, "--tile-size", "64")[0] == 0
    with folder_lock(out / "one"):
        code, output = invoke("tile", first, second, "--out", out, "--tile-size", "64")
    assert code == 0, output
    assert "0 ok, 1 skipped (already complete; --overwrite redoes them), 1 skipped " \
           "(another histotile run is still working on them" in output
    rows = report(out)
    assert rows.loc["one", "skip_reason"] == "busy" and rows.loc["two", "skip_reason"] == \
        "complete"
    saved = json.loads((out / "tile-report.json").read_text())
    assert saved["skip_reasons"] == {"complete": 1, "busy": 1, "finished by another run": 0}
