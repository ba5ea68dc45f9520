"""`histotile qc`: per-slide QC pictures, fractions and flags, and the batch report."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from tiling_fixtures import RED_PEN, SAMPLE, copy_with

from histotile.errors import ConfigError
from histotile.tiling.qc import COLOURS, FAIL, PASS, QCSettings, slide_qc
from histotile.workflows.cli.main import cli


def inked_copy(tmp_path):
    """The sample slide with a wide red stroke across its tissue (rows 600-1400)."""
    def paint(band, y0, ds):
        top, bottom = int(max(0, (600 - y0) / ds)), int(max(0, (1400 - y0) / ds))
        if bottom > top:
            region = band[top:bottom].astype(np.float64) * (np.asarray(RED_PEN) / 243.0)
            band[top:bottom] = np.clip(region, 0, 255).astype(np.uint8)
        return band

    return copy_with(SAMPLE, tmp_path / "inked.tif", paint)


def test_qc_flags_an_inked_slide_and_passes_the_clean_one(tmp_path):
    clean = slide_qc(SAMPLE, QCSettings(blur_tiles=8))
    assert clean.flag == PASS, clean.reasons
    assert clean.fractions["pen"] < 0.01
    assert 0.2 < clean.fractions["tissue"] < 0.6
    assert clean.fractions["blur"] == 0.0
    inked = slide_qc(inked_copy(tmp_path), QCSettings(blur_tiles=0))
    assert inked.fractions["pen"] > 0.15
    assert inked.flag == FAIL and any(r.startswith("pen") for r in inked.reasons)
    assert np.isnan(inked.fractions["blur"])
    # The stroke is outlined in the pen colour on the picture.
    assert (inked.picture == COLOURS["pen"]).all(axis=-1).sum() > 100
    assert (clean.picture == COLOURS["pen"]).all(axis=-1).sum() <= 15 * 15  # the legend


def test_qc_settings_reject_unknown_and_inconsistent_values():
    with pytest.raises(ConfigError, match="pen_limit"):
        QCSettings.from_dict({"pen_limit": 0.1})
    with pytest.raises(ConfigError, match="blur_warn"):
        QCSettings(blur_warn=0.5, blur_fail=0.2)


def test_qc_command_writes_pictures_and_report(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    inked_copy(slides)
    out = tmp_path / "qc"
    result = CliRunner().invoke(cli, ["qc", str(SAMPLE), str(slides / "inked.tif"),
                                      "--out", str(out), "--blur-tiles", "4"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = pd.read_csv(out / "qc-report.csv")
    flags = dict(zip(report.slide, report.decision))
    assert flags == {"CMU-1-Small-Region": "pass", "inked": "fail"}
    assert {"fraction_tissue", "fraction_pen", "fraction_fold", "fraction_blur",
            "fraction_bubble", "fraction_edge"} <= set(report.columns)
    records = json.loads((out / "qc-report.json").read_text())["records"]
    reasons = {r["slide"]: r["extra"]["reasons"] for r in records}
    assert reasons["inked"] and not reasons["CMU-1-Small-Region"]
    for name in ("CMU-1-Small-Region", "inked"):
        picture = cv2.imread(str(out / name / "qc.png"))
        assert picture is not None and picture.shape[0] > 1000
    assert "fail" in result.output
    # The summary in a log (not a terminal) shows every figure whole: each slide's tissue
    # percentage and name on its row, nothing cut to an ellipsis.
    assert "…" not in result.output
    for row in report.itertuples():
        line = next(t for t in result.output.splitlines() if row.slide in t and "│" in t)
        assert f"{row.fraction_tissue:.1%}" in line and row.decision in line


def test_tile_report_records_the_qc_figures(tmp_path):
    from histotile.workflows.slide_options import TileOptions
    from histotile.workflows.tasks.slide import tile_task

    options = TileOptions.from_dict({"tile_size": 128})
    record = tile_task(str(SAMPLE), str(tmp_path / "tiles"), options)
    qc = record["extra"]["qc"]
    assert qc["flag"] == PASS
    assert set(qc) == {"flag", "reasons", "tissue", "pen", "fold", "bubble",
                       "edge"}  # blur: not measured
    # The figures come from the tiling plan's view: those `histotile qc` reads off its own
    # read of the view, on a clean slide and on an inked one (which fails for its pen).
    inked = inked_copy(tmp_path)
    for path, report in ((SAMPLE, qc), (inked, tile_task(str(inked), str(tmp_path / "i"),
                                                           options)["extra"]["qc"])):
        screened = slide_qc(path, QCSettings(blur_tiles=0))
        assert (report["flag"], report["reasons"]) == (screened.flag, screened.reasons)
        for kind in ("tissue", "pen", "fold", "bubble", "edge"):
            assert report[kind] == pytest.approx(screened.fractions[kind], abs=1e-12), kind
    assert report["flag"] == FAIL and report["pen"] > 0.15
    manifest = pd.read_csv(record["outputs"]["manifest"])
    assert "artefact" in manifest.columns and (manifest["artefact"] < 0.5).all()


def test_qc_says_why_blur_was_not_measured_on_a_slide_without_mpp(tmp_path):
    from histotile.workflows.slide_options import QCOptions
    from histotile.workflows.tasks.qc import qc_task

    image = np.full((600, 800, 3), 240, np.uint8)
    cv2.circle(image, (400, 300), 220, (150, 80, 170), -1)  # a purple disc of "tissue"
    cv2.imwrite(str(tmp_path / "nompp.png"), image)
    record = qc_task(str(tmp_path / "nompp.png"), str(tmp_path / "out"),
                     QCOptions(qc=QCSettings(blur_tiles=8)))
    assert "blur" not in record["area_fractions"]
    assert "blur not measured" in record["warning"] and "microns per pixel" in record["warning"]
