"""Faults of ``histotile tile`` found by the audit of issue 23: a second batch into a
folder that already holds tiles, a read-only output folder, one annotation file for
several slides, a mask beside a slide, RGB label masks, warnings printed once, GeoJSON
class names that would leave their folder, and slides that give no tiles."""

from __future__ import annotations

import errno
import json
import pathlib

import numpy as np
import pandas as pd
from click.testing import CliRunner
from PIL import Image

from histotile.workflows.cli.main import cli
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
    from histotile.workflows.tasks import batch

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


def square(x, y, size):
    return [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]


def geojson(path: pathlib.Path, features) -> pathlib.Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": geometry, "properties": properties}
        for geometry, properties in features]}))
    return path


def polygon(name: str | None, x: int, y: int, size: int):
    classified = {} if name is None else {"classification": {"name": name}}
    return {"type": "Polygon", "coordinates": [square(x, y, size)]}, classified


def test_one_annotation_file_for_several_slides_needs_annotations_for_all(tmp_path):
    slides = tmp_path / "slides"
    a, b = slide(slides, "a.tif"), slide(slides, "b.tif", seed=2)
    marks = geojson(tmp_path / "shared.geojson", [polygon("tumour", 0, 0, 256)])
    code, output = invoke("tile", a, b, "--annotations", marks, "--out", tmp_path / "t",
                          "--tile-size", "64")
    assert code == 2
    assert "shared.geojson: one annotation file for 2 slides" in output
    assert "--annotations-for-all" in output and not (tmp_path / "t" / "a").exists()
    # Asked for: every slide uses it, and a slide's own mask beside it is named.
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(slides / "b.mask.png")
    code, output = invoke("tile", a, b, "--annotations", marks, "--annotations-for-all",
                          "--out", tmp_path / "t", "--tile-size", "64")
    assert code == 0, output
    rows = report(tmp_path / "t")
    assert "not its own annotation" in rows.loc["b", "warning"]
    assert str(slides / "b.mask.png") in rows.loc["b", "warning"]
    assert "not its own annotation" not in rows.loc["a", "warning"]
    assert "not its own annotation" in output  # on the console too
    manifest = pd.read_csv(tmp_path / "t" / "manifest.csv")
    assert set(manifest.groupby("slide")["label"].apply(lambda s: "tumour" in set(s))) == {True}


def test_unknown_geojson_classes_leave_nothing_behind_and_warnings_come_once(tmp_path):
    path = slide(tmp_path / "slides", "a.tif")
    geojson(tmp_path / "slides" / "a.geojson", [
        polygon(None, 0, 0, 64),  # no classification: ignored, with a warning
        ({"type": "Point", "coordinates": [5, 5]}, {"classification": {"name": "tumour"}}),
        polygon("../../evil", 256, 256, 256), polygon("tumour", 0, 0, 256)])
    out = tmp_path / "tiles"
    for _ in range(2):  # a second run (--overwrite) leaves no more than the first
        code, output = invoke("tile", path, "--out", out, "--tile-size", "64",
                              "--overwrite")
        assert code == 0, output
        assert sorted(p.name for p in (out / "a").iterdir()) == [".histotile-tile.json",
                                                                 "manifest.csv"]
    assert not list(tmp_path.rglob("*evil*"))
    assert "UserWarning" not in output and "tasks/slide.py" not in output
    for problem in ("feature 0 has no classification", "is a Point",
                    "class name(s) ../../evil are not in --classes"):
        assert output.count(problem) == 1, problem
        assert problem in report(out).loc["a", "warning"]
    manifest = pd.read_csv(out / "a" / "manifest.csv")
    tumour = manifest[manifest["label"] == "tumour"]
    assert len(tumour) and (tumour[["x", "y"]].max() < 256).all()  # the evil square is not


def test_an_rgb_mask_png_is_read_as_a_label_mask(tmp_path):
    path = slide(tmp_path / "slides", "a.tif")
    values = np.zeros((SIZE, SIZE), np.uint8)
    values[:256, :256] = 1
    Image.fromarray(np.repeat(values[:, :, None], 3, axis=2)).save(
        tmp_path / "slides" / "a.mask.png")
    code, output = invoke("tile", path, "--out", tmp_path / "t", "--tile-size", "64")
    assert code == 0, output
    assert report(tmp_path / "t").loc["a", "warning"] == ""
    manifest = pd.read_csv(tmp_path / "t" / "a" / "manifest.csv")
    tumour = manifest[manifest["label"] == "tumour"]
    assert len(tumour) and (tumour[["x", "y"]].max() < 256).all()
    # A mask in colour is refused rather than read by its red channel.
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
    rgb[:256, :256] = (0, 255, 0)
    Image.fromarray(rgb).save(tmp_path / "slides" / "a.mask.png")
    code, output = invoke("tile", path, "--out", tmp_path / "u", "--tile-size", "64")
    assert code == 1
    assert "a.mask.png: a label mask in colour" in report(tmp_path / "u").loc["a", "error"]


def test_the_union_holds_slides_tiled_from_another_working_folder(tmp_path, monkeypatch):
    slides = tmp_path / "slides"
    a, b = slide(slides, "a.tif"), slide(slides, "b.tif", seed=2)
    monkeypatch.chdir(tmp_path)
    assert invoke("tile", a, "--out", "tiles", "--tile-size", "64")[0] == 0  # relative
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert invoke("tile", b, "--out", tmp_path / "tiles", "--tile-size", "64")[0] == 0
    assert set(pd.read_csv(tmp_path / "tiles" / "manifest.csv")["slide"]) == {"a", "b"}
