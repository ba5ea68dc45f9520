"""Real-world names and faults in batch commands (issue #12): rich markup in names and
errors, non-ASCII names through heatmaps, a report that cannot be written, output
permissions, stale temporaries, a second run on a busy folder, the report kept across
invocations, hidden slide files and class names that would leave their folder."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import stat

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from histotile.postprocess import SlidePredictions
from histotile.workflows.cli.main import cli
from histotile.wsi.synthetic import write_synthetic_slide

SIZE = 512


def invoke(*args) -> tuple[int, str]:
    """Exit code and output with line wrapping undone (rich wraps at 80 columns)."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(autouse=True)
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def slide(folder: pathlib.Path, name: str, seed: int = 1) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    write_synthetic_slide(path, SIZE, SIZE, seed=seed, tile_size=256, tissue_fraction=0.6)
    return path


def broken(folder: pathlib.Path, name: str) -> pathlib.Path:
    path = folder / name
    path.write_bytes(b"II*\x00" + b"\x07" * 64)  # a TIFF header and nothing valid after it
    return path


def report(out: pathlib.Path, command: str) -> pd.DataFrame:
    return pd.read_csv(out / f"{command}-report.csv", keep_default_na=False)


def modes(root: pathlib.Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in root.rglob("*")}


def test_names_and_errors_are_printed_as_written_not_as_markup(tmp_path, monkeypatch):
    from histotile.workflows.cli import console

    monkeypatch.setattr(console.out, "width", 200)  # no folding inside the names
    monkeypatch.setattr(console.console, "width", 200)
    slides = tmp_path / "slides"
    slide(slides, "evil[reverse]x.tif")
    broken(slides, "bad[bold]y.tif")
    slide(slides, "geo.tif", seed=2)
    # A feature whose id is closing markup, with a geometry that is not a polygon.
    (slides / "geo.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "[/blink]", "geometry": {"type": "Polygon",
                                                          "coordinates": "oops"},
         "properties": {"classification": {"name": "tumour"}}}]}))
    code, output = invoke("tile", slides, "--out", tmp_path / "tiles", "--tile-size", "64",
                          "--classes", "normal,tumour")
    assert code == 1  # two slides failed, but the batch ran to the end
    assert "evil[reverse]x" in output and "bad[bold]y" in output
    assert "[/blink]" in output
    rows = report(tmp_path / "tiles", "tile").set_index("slide")
    assert rows.loc["evil[reverse]x", "status"] == "ok"
    assert int(rows.loc["evil[reverse]x", "tiles"]) > 0
    assert rows.loc["bad[bold]y", "status"] == rows.loc["geo", "status"] == "failed"
    assert "[/blink]" in rows.loc["geo", "error"]


def saved_predictions(folder: pathlib.Path, name: str, classes: tuple[str, str],
                      tiles: int | None = None):
    xs, ys = np.meshgrid(np.arange(0, SIZE, 64), np.arange(0, SIZE, 64))
    xs, ys = xs.ravel()[:tiles], ys.ravel()[:tiles]
    p = np.random.default_rng(0).random(xs.size).round(3)
    table = pd.DataFrame({"x": xs, "y": ys, "extent": 64,
                          f"prob_{classes[0]}": 1 - p, f"prob_{classes[1]}": p})
    predictions = SlidePredictions(name, "", (SIZE, SIZE), 0.5, classes, table,
                                   {"tile_size": 64}, {"name": "test-model",
                                                       "positive_class": classes[0]})
    predictions.save(folder / name / "predictions.csv")


def test_unicode_slide_and_class_names_make_heatmaps(tmp_path):
    import tifffile

    name = "my slide ünïcødé 病理"
    path = slide(tmp_path / "slides", f"{name}.tif")
    saved_predictions(tmp_path / "predictions", name, ("épithélium", "autre"))
    out = tmp_path / "heatmaps"
    code, output = invoke("heatmap", path, "--predictions", tmp_path / "predictions",
                          "--out", out)
    assert code == 0, output
    with tifffile.TiffFile(out / name / "heatmap.tif") as tiff:
        description = tiff.pages[0].description
    assert description.isascii() and "\\u" in description
    saved = json.loads((out / "heatmap-report.json").read_text(encoding="utf-8"))
    assert saved["records"][0]["slide"] == name
    assert saved["records"][0]["extra"]["positive_class"] == "épithélium"
    # Every output readable by others: 0644 files, 0755 folders (umask 022).
    for where, mode in modes(out).items():
        assert mode == (0o755 if (out / where).is_dir() else 0o644), where


def test_report_on_a_full_disk_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    path = slide(tmp_path / "slides", "a.tif")
    real = pathlib.Path.write_text

    def full(self, *args, **kwargs):
        if "tile-report" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full)
    out = tmp_path / "tiles"
    code, output = invoke("tile", path, "--out", out, "--tile-size", "64")
    assert code == 1
    assert "tile-report.csv: cannot write: the disk is full" in output
    assert "Traceback" not in output
    assert not list(out.glob("*tile-report*"))  # no half-written file, no temporary
    assert (out / "a" / "manifest.csv").is_file()  # the slide's own work was kept


def test_preview_on_a_full_disk_says_so(tmp_path, monkeypatch):
    path = slide(tmp_path / "slides", "a.tif")
    saved_predictions(tmp_path / "predictions", "a", ("normal", "tumour"))
    real = pathlib.Path.write_bytes

    def full(self, data):
        if "preview" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    out = tmp_path / "heatmaps"
    code, _ = invoke("heatmap", path, "--predictions", tmp_path / "predictions", "--out", out)
    assert code == 1
    error = report(out, "heatmap").loc[0, "error"]
    assert "preview.png: cannot write: the disk is full" in error
    assert not [p for p in (out / "a").iterdir() if "preview" in p.name]


def test_rerun_removes_stale_temporaries_and_keeps_every_slides_row(tmp_path):
    slides = tmp_path / "slides"
    first, second = slide(slides, "one.tif"), slide(slides, "two.tif", seed=2)
    out = tmp_path / "tiles"
    assert invoke("tile", first, "--out", out, "--tile-size", "64")[0] == 0
    stale = out / "one" / ".heatmap.abcd1234.tmp.tif"
    stale.write_bytes(b"half a heatmap")
    unrelated = out / "one" / ".notes.txt"
    unrelated.write_text("mine")
    code, output = invoke("tile", first, second, "--out", out, "--tile-size", "64",
                          "--overwrite")
    assert code == 0, output
    assert not stale.exists() and unrelated.exists()
    broken(slides, "two.tif")  # the latest run of 'two' fails: its row is replaced
    assert invoke("tile", second, "--out", out, "--tile-size", "64")[0] == 1
    rows = report(out, "tile").set_index("slide")
    assert sorted(rows.index) == ["one", "two"]  # 'one' kept from the earlier run
    assert rows.loc["one", "status"] == "ok" and rows.loc["two", "status"] == "failed"


def test_a_second_run_skips_a_folder_another_run_holds(tmp_path):
    from histotile._files import folder_lock

    slides = tmp_path / "slides"
    first, second = slide(slides, "one.tif"), slide(slides, "two.tif", seed=2)
    out = tmp_path / "tiles"
    with folder_lock(out / "one"):  # as another process would hold it
        code, output = invoke("tile", first, second, "--out", out, "--tile-size", "64")
    assert code == 0, output
    assert "another histotile run is working" in output
    rows = report(out, "tile").set_index("slide")
    assert rows.loc["one", "status"] == "skipped" and "another histotile run" in \
        rows.loc["one", "error"]
    assert rows.loc["two", "status"] == "ok"
    assert not (out / "one" / "manifest.csv").exists()
    # Once the other run is gone, the folder is worked on as usual.
    assert invoke("tile", first, "--out", out, "--tile-size", "64")[0] == 0
    assert (out / "one" / "manifest.csv").is_file()
    assert not list(out.glob("*/.histotile.lock"))  # released locks leave no file


def test_a_lock_whose_file_was_removed_by_its_last_holder_is_taken_again(tmp_path):
    from histotile._files import FolderBusyError, folder_lock

    with folder_lock(tmp_path) as path:
        assert path.exists()
        with pytest.raises(FolderBusyError, match="another histotile run is working"):
            with folder_lock(tmp_path):
                pass
    assert not path.exists()
    with folder_lock(tmp_path) as again:  # a new holder makes its own file
        assert again.exists()


def test_hidden_slide_and_missing_slide_fail_alone(tmp_path):
    slides = tmp_path / "slides"
    hidden, good = slide(slides, ".hidden.svs"), slide(slides, "good.tif")
    out = tmp_path / "tiles"
    code, output = invoke("tile", hidden, good, slides / "missing.tif", "--out", out,
                          "--tile-size", "64")
    assert code == 1
    rows = report(out, "tile").set_index("path")
    assert "name before the first dot is empty" in rows.loc[str(hidden), "error"]
    assert "missing.tif: no such file" in rows.loc[str(slides / "missing.tif"), "error"]
    assert rows.loc[str(good), "status"] == "ok"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "good", "manifest.csv", "manifest.json", "tile-report.csv", "tile-report.json"]


@pytest.mark.parametrize("classes", ["normal,..", "normal,a/b"])
def test_class_names_that_leave_the_folder_are_refused(tmp_path, classes):
    path = slide(tmp_path / "slides", "a.tif")
    code, output = invoke("tile", path, "--out", tmp_path / "tiles", "--classes", classes,
                          "--export-images")
    assert code == 2 and "cannot be a folder name" in output
    assert not (tmp_path / "tiles").exists()


def test_export_refuses_a_label_that_leaves_the_folder(tmp_path):
    from histotile.errors import DatasetError
    from histotile.tiling import export_imagefolder

    manifest = pd.DataFrame({"label": ["..", "x"], "path": ["a", "a"]})
    with pytest.raises(DatasetError, match="'..' cannot be a folder name"):
        export_imagefolder(manifest, tmp_path / "images")
    assert not (tmp_path / "images").exists()


def test_a_slide_without_tissue_tiles_is_reported_as_no_tissue(tmp_path):
    path = slide(tmp_path / "slides", "blank.tif")
    saved_predictions(tmp_path / "predictions", "blank", ("normal", "tumour"), tiles=0)
    out = tmp_path / "heatmaps"
    code, output = invoke("heatmap", path, "--predictions", tmp_path / "predictions",
                          "--out", out)
    assert code == 0, output
    row = report(out, "heatmap").loc[0]
    assert row["decision"].startswith("no tissue (0 tiles") and int(row["tiles"]) == 0
    assert "negative" not in output


def test_a_card_without_tiling_resolution_warns_that_level_0_is_used():
    from types import SimpleNamespace

    from histotile.postprocess.predict import settings_from_card

    bare = SimpleNamespace(card={"tile_size": 64}, classes=("a", "b"), tile_size=64,
                           model_dir="models/old")
    with pytest.warns(UserWarning, match="models/old: the model card records no tiling "
                                         "resolution.*cut at level 0"):
        settings = settings_from_card(bare)
    assert settings.level is None and settings.mpp is None and settings.magnification is None
    known = SimpleNamespace(card={"tile_size": 64, "tiling": {"tile_mpp": 2.0}},
                            classes=("a", "b"), tile_size=64, model_dir="m")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert settings_from_card(known).mpp == 2.0
