"""Whole-slide extraction, background sampling, manifests, balancing, patches, export."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from tiling_fixtures import SAMPLE, lossless_overlay

from histotile.errors import DatasetError, OutputExistsError
from histotile.tiling import (
    MANIFEST_COLUMNS,
    PaintedOverlay,
    TilingSettings,
    balance,
    breakhis_label,
    breakhis_patient,
    breakhis_tumour_type,
    detect_tissue,
    export_imagefolder,
    extract_tiles,
    patch_dataset,
    patchify_image,
    read_manifest,
    read_tile,
    tissue_fraction,
    write_manifest,
)
from histotile.wsi import open_slide
from histotile.wsi.synthetic import write_synthetic_slide

CLASSES = ("normal", "tumour")


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("extract") / "slide.tif"
    write_synthetic_slide(path, 4096, 3072, seed=21, tissue_fraction=0.3, tile_size=256)
    return path


@pytest.fixture(scope="module")
def overlay(slide_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("extract_ov") / "overlay.png"
    return lossless_overlay(slide_path, out, [((0, 255, 0), (1024, 1024, 1024, 768))], 4)


def test_manifest_columns_and_contents(slide_path, overlay):
    settings = TilingSettings(tile_size=128, classes=CLASSES, keep_background=0.0)
    df = extract_tiles(slide_path, settings, annotation=PaintedOverlay(overlay))
    assert list(df.columns) == [*MANIFEST_COLUMNS, "artefact", "frac_normal", "frac_tumour"]
    assert (df["slide"] == "slide").all() and (df["group"] == "slide").all()
    assert (df[["extent", "level", "read_size", "size"]] == (128, 0, 128, 128)).all().all()
    assert (df["tissue_fraction"] >= settings.min_tissue).all()
    assert set(df["label"]) == {"normal", "tumour"}
    # Raster order, no duplicates.
    keys = df["y"].to_numpy() * 10**6 + df["x"].to_numpy()
    assert (np.diff(keys) > 0).all()
    # The manifest's tissue fraction is that of the tile as read_tile reads it.
    with open_slide(slide_path) as slide:
        threshold = detect_tissue(slide).threshold  # the slide's adaptive threshold
        for row in df.sample(8, random_state=0).itertuples():
            tile = read_tile(slide, row.x, row.y, row.level, row.read_size, row.size)
            assert tissue_fraction(tile, threshold) == row.tissue_fraction
    in_mark = ((df["x"] >= 1024) & (df["x"] + 128 <= 2048) & (df["y"] >= 1024)
               & (df["y"] + 128 <= 1792))
    assert (df.loc[in_mark, "label"] == "tumour").all() and in_mark.sum() > 0


def test_background_keep_fraction_is_honoured(slide_path):
    base = TilingSettings(tile_size=128, keep_background=0.0)
    tissue_only = extract_tiles(slide_path, base)
    everything = extract_tiles(slide_path, TilingSettings(tile_size=128, keep_background=1.0))
    n_grid = (4096 // 128) * (3072 // 128)
    assert len(everything) == n_grid  # all background kept, even far from tissue
    n_background = n_grid - len(tissue_only)
    kept = extract_tiles(slide_path, TilingSettings(tile_size=128, keep_background=0.1))
    background = kept[kept["tissue_fraction"] < 0.25]
    assert len(background) == round(0.1 * n_background)
    assert len(kept) == len(tissue_only) + len(background)
    # Sampled background comes from the whole slide, not only near the tissue.
    assert (background["tissue_fraction"] == 0).sum() > len(background) / 2


def test_same_seed_same_manifest_whatever_the_workers(slide_path, overlay):
    settings = TilingSettings(tile_size=128, classes=CLASSES, keep_background=0.2, seed=5)
    ann = PaintedOverlay(overlay)
    done = []
    one = extract_tiles(slide_path, settings, annotation=ann, workers=1, progress=done.append)
    two = extract_tiles(slide_path, settings, annotation=ann, workers=2)
    pd.testing.assert_frame_equal(one, two)
    assert sum(done) == (4096 // 128) * (3072 // 128)
    other = extract_tiles(slide_path, TilingSettings(**{**settings.to_dict(), "seed": 6}),
                          annotation=ann)
    assert not one[["x", "y"]].equals(other[["x", "y"]])


def test_overlapping_tiles_at_reduced_resolution(slide_path):
    settings = TilingSettings(tile_size=96, stride=64, mpp=1.5, keep_background=0.0)
    df = extract_tiles(slide_path, settings)
    assert (df["level"] == 1).all() and (df["read_size"] == 144).all()
    assert (df["extent"] == 288).all() and (df["size"] == 96).all()
    assert set(np.diff(np.sort(df["x"].unique()))) <= {192, 384, 576, 768, 960, 1152}


def test_sample_slide_extraction():
    df = extract_tiles(SAMPLE, TilingSettings(tile_size=128, keep_background=0.0))
    assert 100 < len(df) < 400
    assert df["tissue_fraction"].min() >= 0.25


def test_manifest_round_trip_and_errors(tmp_path, slide_path, overlay):
    settings = TilingSettings(tile_size=128, classes=CLASSES)
    df = extract_tiles(slide_path, settings, annotation=PaintedOverlay(overlay))
    path = write_manifest(df, tmp_path / "m.csv")
    back = read_manifest(path)
    pd.testing.assert_frame_equal(back, df, check_exact=False, rtol=1e-5)
    with pytest.raises(OutputExistsError):
        write_manifest(df, path)
    plain = extract_tiles(slide_path, TilingSettings(tile_size=128))
    write_manifest(plain, tmp_path / "plain.csv")
    assert (read_manifest(tmp_path / "plain.csv")["label"] == "").all()
    (tmp_path / "bad.csv").write_text("slide,x\nfoo,1\n")
    with pytest.raises(DatasetError, match="bad.csv.*lacks columns"):
        read_manifest(tmp_path / "bad.csv")
    broken = df.copy()
    broken["x"] = "left"
    broken.to_csv(tmp_path / "broken.csv", index=False)
    with pytest.raises(DatasetError, match="'x' must hold whole numbers"):
        read_manifest(tmp_path / "broken.csv")
    with pytest.raises(DatasetError, match="not found"):
        read_manifest(tmp_path / "missing.csv")


def _labelled(counts: dict[str, int]) -> pd.DataFrame:
    labels = [name for name, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"x": np.arange(len(labels)), "label": labels})


def test_balance_ratios_are_exact():
    df = _labelled({"normal": 900, "tumour": 130, "other": 41})
    even = balance(df, {"normal": 1, "tumour": 1}, seed=0)
    assert even["label"].value_counts().to_dict() == {"normal": 130, "tumour": 130}
    three = balance(df, {"normal": 4, "tumour": 2, "other": 1}, seed=0)
    assert three["label"].value_counts().to_dict() == {"normal": 164, "tumour": 82,
                                                       "other": 41}
    assert balance(df, {"normal": 1, "tumour": 1}, seed=0).equals(even)
    assert not balance(df, {"normal": 1, "tumour": 1}, seed=1).equals(even)
    assert (np.diff(even["x"].to_numpy()) > 0).all()  # original order kept
    with pytest.raises(DatasetError, match="no tiles labelled"):
        balance(df, {"normal": 1, "stroma": 1}, seed=0)


def test_fifteen_patches_from_a_700_by_460_image(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (460, 700, 3), dtype=np.uint8)
    patches = patchify_image(image, 225)
    assert patches.shape == (15, 225, 225, 3)
    assert np.array_equal(patches[0], image[:225, :225])
    assert np.array_equal(patches[6], image[112:337, 112:337])  # row 1, column 1
    folder = tmp_path / "malignant"
    folder.mkdir()
    cv2.imwrite(str(folder / "SOB_M_DC-14-2523-40-001.png"), image[:, :, ::-1])
    cv2.imwrite(str(folder / "SOB_M_DC-14-2523-40-002.png"), image[::-1, :, ::-1].copy())
    df = patch_dataset(tmp_path, group=lambda p: p.stem.split("-")[2])
    assert len(df) == 30 and list(df.columns) == list(MANIFEST_COLUMNS)
    assert set(df["label"]) == {"malignant"} and set(df["group"]) == {"2523"}
    typed = patch_dataset(tmp_path, label=breakhis_tumour_type, group=breakhis_patient)
    assert set(typed["label"]) == {"DC"} and set(typed["group"]) == {"14-2523"}
    assert breakhis_label(folder / "SOB_B_A-14-22549AB-40-001.png") == "benign"
    with pytest.raises(DatasetError, match="image.png: not a BreakHis file name"):
        breakhis_label(tmp_path / "image.png")
    # Patches are read back through the manifest like any tile.
    row = df.iloc[6]
    with open_slide(row["path"]) as img:
        tile = read_tile(img, row["x"], row["y"], 0, 225, 225)
    assert np.array_equal(tile, patches[6])


def test_export_imagefolder(tmp_path, slide_path, overlay):
    settings = TilingSettings(tile_size=128, classes=CLASSES, keep_background=0.0)
    df = extract_tiles(slide_path, settings, annotation=PaintedOverlay(overlay)).head(40)
    out = export_imagefolder(df, tmp_path / "folder")
    files = sorted(out.rglob("*.png"))
    assert len(files) == 40
    row = df.iloc[3]
    path = out / row["label"] / f"slide_{row['x']}_{row['y']}.png"
    with open_slide(slide_path) as slide:
        expected = read_tile(slide, row["x"], row["y"], 0, 128, 128)
    assert np.array_equal(cv2.imread(str(path))[:, :, ::-1], expected)
    with pytest.raises(OutputExistsError):
        export_imagefolder(df, out)
    with pytest.raises(DatasetError, match="no label"):
        export_imagefolder(extract_tiles(slide_path, TilingSettings(tile_size=128)).head(3),
                           tmp_path / "other")


def test_blank_slide_keeps_only_the_background_sample(tmp_path):
    syn = write_synthetic_slide(tmp_path / "glass.tif", 2048, 1536, tissue_fraction=0.0)
    df = extract_tiles(syn.path, TilingSettings(tile_size=128, keep_background=0.05))
    assert len(df) == round(0.05 * 16 * 12)
    assert (df["tissue_fraction"] == 0).all()


def test_load_annotation_picks_the_kind(tmp_path, slide_path, overlay):
    from histotile.tiling import GeoJSONAnnotation, LabelMask, load_annotation
    from histotile.wsi.synthetic import write_overlay

    tif = write_overlay(slide_path, tmp_path / "o.tif", [], downsample=8)
    assert isinstance(load_annotation(tif), PaintedOverlay)
    assert isinstance(load_annotation(overlay), PaintedOverlay)
    grey = tmp_path / "mask.png"
    cv2.imwrite(str(grey), np.zeros((96, 128), np.uint8))
    assert isinstance(load_annotation(grey, classes=CLASSES), LabelMask)
    (tmp_path / "a.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    assert isinstance(load_annotation(tmp_path / "a.geojson"), GeoJSONAnnotation)
    from histotile.errors import AnnotationError

    with pytest.raises(AnnotationError, match="not found"):
        load_annotation(tmp_path / "nope.png")
