"""Air bubbles and coverslip edges (histotile.tiling.mount_artefacts): found on synthetic
rims and lines drawn over real tissue and glass, not on the tissue of the bundled slide
or of a synthetic one, and counted by slide QC."""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from tiling_fixtures import SAMPLE, copy_with

from histotile.errors import ConfigError
from histotile.tiling.artefacts import ARTEFACTS, artefact_masks
from histotile.tiling.mount_artefacts import bubble_mask, edge_mask, mount_masks
from histotile.tiling.qc import COLOURS, FAIL, PASS, WARN, QCSettings, qc_picture, slide_qc
from histotile.workflows.cli.main import cli
from histotile.wsi import open_slide
from histotile.wsi.synthetic import BACKGROUND_RGB, write_synthetic_slide

MPP = 0.499  # the bundled slide's
KEEP = 0.37  # share of the light a rim passes: grey 90 over glass


@functools.lru_cache(maxsize=1)
def sample_pixels() -> np.ndarray:
    with open_slide(SAMPLE) as slide:
        pixels = slide.read_region((0, 0), 0, slide.dimensions)
    pixels.setflags(write=False)
    return pixels


def glass(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), BACKGROUND_RGB, np.uint8)


def darken(image: np.ndarray, ink: np.ndarray, keep: float = KEEP) -> np.ndarray:
    """``image`` seen through a grey absorber where ``ink`` (uint8 0-255) is drawn: a
    refractile rim or an edge passes ``keep`` of the light of every colour, over glass
    (dark grey) and over tissue alike."""
    return (image * (1 - (1 - keep) * ink[..., None] / 255.0)).astype(np.uint8)


def with_bubble(image: np.ndarray, mpp: float, centre_px: tuple[int, int],
                axes_um: tuple[float, float], angle: float = 20.0,
                rim_um: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """The image with an elliptic bubble rim ``rim_um`` thick, and the true filled region."""
    axes = (round(axes_um[0] / mpp), round(axes_um[1] / mpp))
    thick = max(1, round(rim_um / mpp))
    ink = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(ink, centre_px, axes, angle, 0, 360, 255, thick, cv2.LINE_AA)
    truth = np.zeros(image.shape[:2], np.uint8)
    cv2.ellipse(truth, centre_px, (axes[0] + thick // 2, axes[1] + thick // 2), angle, 0, 360,
                1, cv2.FILLED)
    return darken(image, ink), truth.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("where, centre, axes_um", [
    ("tissue", (1300, 900), (250.0, 180.0)),  # 69 % of it over tissue
    ("tissue", (900, 1300), (300.0, 220.0)),
    ("glass", (1000, 1000), (400.0, 250.0)),
])
def test_a_bubble_is_found_over_tissue_and_glass(where, centre, axes_um):
    base = sample_pixels() if where == "tissue" else glass(2048, 2048)
    image, truth = with_bubble(base, MPP, centre, axes_um)
    found = bubble_mask(image, MPP)
    assert found.shape == truth.shape
    assert iou(found, truth) >= 0.7
    assert not edge_mask(image, MPP).any()


def test_a_bubble_is_found_at_the_qc_scale():
    image, truth = with_bubble(glass(400, 500), 8.0, (250, 200), (600.0, 450.0))
    assert iou(bubble_mask(image, 8.0), truth) >= 0.7


def test_round_stained_things_and_small_rings_are_not_bubbles():
    image = glass(2048, 2048)
    # A dense haematoxylin-purple nucleus cluster, and a ring of it (a gland's nuclei).
    cv2.circle(image, (500, 500), 300, (90, 40, 120), cv2.FILLED)
    cv2.ellipse(image, (1400, 600), (500, 350), 0, 0, 360, (90, 40, 120), 16, cv2.LINE_AA)
    # A round tissue fragment (the bundled slide's tissue in a disc).
    disc = np.zeros(image.shape[:2], np.uint8)
    cv2.circle(disc, (600, 1500), 400, 1, cv2.FILLED)
    image[disc > 0] = sample_pixels()[500:2548, 100:2148][disc > 0]
    # A grey rim, but 60 um across: below the size range (a 100-um one is found).
    small, _ = with_bubble(image, MPP, (1500, 1600), (30.0, 30.0))
    assert not bubble_mask(small, MPP).any()
    larger, truth = with_bubble(image, MPP, (1500, 1600), (70.0, 70.0))
    assert iou(bubble_mask(larger, MPP), truth) >= 0.5


def straight(image: np.ndarray, start: tuple[int, int], end: tuple[int, int],
             width_px: int) -> tuple[np.ndarray, np.ndarray]:
    ink = np.zeros(image.shape[:2], np.uint8)
    cv2.line(ink, start, end, 255, width_px, cv2.LINE_AA)
    return darken(image, ink, 0.45), ink > 128


@pytest.mark.parametrize("start, end", [((1000, 0), (1000, 2047)),  # straight across
                                        ((0, 300), (2047, 700))])  # tilted by 11 degrees
def test_a_coverslip_edge_is_found_and_its_band_covers_it(start, end):
    # 4 x 4 mm at 2 um/px: the bundled slide's tissue (shrunk 4x) on glass.
    mpp = 2.0
    image = glass(2048, 2048)
    tissue = cv2.resize(sample_pixels(), None, fx=MPP / mpp, fy=MPP / mpp,
                        interpolation=cv2.INTER_AREA)
    image[600:600 + tissue.shape[0], 700:700 + tissue.shape[1]] = tissue
    assert not edge_mask(image, mpp).any()
    image, line = straight(image, start, end, 5)  # 10 um wide
    band = edge_mask(image, mpp)
    assert band[line].mean() > 0.9
    assert band.mean() < 0.05  # a band along the line, not the image
    assert not bubble_mask(image, mpp).any()


def test_short_lines_are_not_coverslip_edges():
    mpp = 2.0
    image, _ = straight(glass(2048, 2048), (200, 1000), (800, 1000), 5)  # 1.2 mm
    assert not edge_mask(image, mpp).any()


def test_tissue_alone_has_no_bubbles_or_edges(tmp_path):
    pixels = sample_pixels()
    views = [(pixels[:2048, :2048], MPP), (pixels[919:, 172:], MPP),
             (cv2.resize(pixels, None, fx=1 / 16, fy=1 / 16, interpolation=cv2.INTER_AREA),
              MPP * 16)]
    synthetic = write_synthetic_slide(tmp_path / "s.tif", 8192, 8192, seed=3,
                                      tissue_fraction=0.5)
    with open_slide(synthetic.path) as slide:
        views.append((slide.thumbnail(512), 8192 / 512 * synthetic.mpp))
    for image, mpp in views:
        masks = mount_masks(image, mpp)
        assert masks["bubble"].mean() < 0.01 and masks["edge"].mean() < 0.01


def test_artefact_masks_include_bubbles_and_edges():
    image, truth = with_bubble(glass(1024, 1024), 2.0, (512, 512), (500.0, 400.0))
    masks = artefact_masks(image, 2.0)
    assert set(masks) == set(ARTEFACTS) >= {"bubble", "edge"}
    assert iou(masks["bubble"], truth) >= 0.7 and not masks["edge"].any()


def bubble_slide(out):
    """The bundled slide with a 0.5 x 0.36 mm bubble rim (8 um) over its tissue."""
    centre, axes = (900, 2500), (250.0 / MPP, 180.0 / MPP)  # level-0 px

    def paint(band, y0, ds):
        ink = np.zeros(band.shape[:2], np.uint8)
        cv2.ellipse(ink, (round(centre[0] / ds), round((centre[1] - y0) / ds)),
                    (round(axes[0] / ds), round(axes[1] / ds)), 20, 0, 360, 255,
                    max(1, round(16 / ds)), cv2.LINE_AA)
        return darken(band, ink)

    return copy_with(SAMPLE, out, paint)


def test_qc_counts_a_bubble_over_the_tissue(tmp_path):
    settings = QCSettings(blur_tiles=0)
    clean = slide_qc(SAMPLE, settings)
    assert clean.flag == PASS and clean.fractions["bubble"] == clean.fractions["edge"] == 0
    result = slide_qc(bubble_slide(tmp_path / "bubble.tif"), settings)
    share = result.fractions["bubble"]
    assert share >= settings.bubble_warn
    assert result.flag == (FAIL if share >= settings.bubble_fail else WARN)
    assert any(reason.startswith("bubble") for reason in result.reasons)
    assert (result.picture == COLOURS["bubble"]).all(axis=-1).sum() > 15 * 15 + 100
    strict = slide_qc(tmp_path / "bubble.tif", QCSettings(blur_tiles=0, bubble_warn=0.005,
                                                                   bubble_fail=0.01))
    assert strict.flag == FAIL


def test_qc_settings_check_the_new_thresholds():
    with pytest.raises(ConfigError, match="bubble_warn"):
        QCSettings(bubble_warn=0.5, bubble_fail=0.2)
    with pytest.raises(ConfigError, match="edge_warn"):
        QCSettings.from_dict({"edge_warn": 0.2, "edge_fail": 0.1})
    assert QCSettings.from_dict(QCSettings(edge_fail=0.3).to_dict()).edge_fail == 0.3


def test_qc_command_takes_the_bubble_threshold(tmp_path):
    slide = bubble_slide(tmp_path / "bubble.tif")
    flags = {}
    for limit in ("0.5", "0.05"):
        out = tmp_path / f"qc{limit}"
        result = CliRunner().invoke(cli, ["qc", str(slide), "--out", str(out),
                                          "--blur-tiles", "0", "--bubble-fail", limit],
                                    catch_exceptions=False)
        report = pd.read_csv(out / "qc-report.csv")
        assert report["fraction_bubble"].iloc[0] > 0.02, result.output
        flags[limit] = report["decision"].iloc[0]
    assert flags == {"0.5": WARN, "0.05": FAIL}


def test_the_legend_wraps_on_narrow_pictures():
    masks = {kind: np.zeros((30, 40), bool) for kind in COLOURS}
    fractions = dict.fromkeys(COLOURS, 0.0)
    picture = qc_picture(glass(600, 800), masks, fractions, PASS, size=300)
    rows = -(-(len(COLOURS) + 1) // 2)  # two entries a row on 300 px, the flag last
    assert picture.shape == (225 + 28 * rows, 300, 3)
    wide = qc_picture(glass(400, 1200), masks, fractions, PASS, size=1200)
    assert wide.shape[0] == 400 + 28  # one row
