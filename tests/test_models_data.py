"""Training data: manifests and ImageFolders read into one tile table, the tiles read
exactly as the tiler's contract says, and bad input refused with clear errors."""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import histotile
from histotile.errors import DatasetError
from histotile.models.data import load_tiles
from histotile.models.synthetic import write_stain_imagefolder, write_stain_slides
from histotile.models.tile_source import TileSource, augment_batch
from histotile.tiling.tile_io import MANIFEST_COLUMNS, read_tile
from histotile.wsi import open_slide

SAMPLE = Path(histotile.__file__).parent / "data" / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_stain_slides(tmp_path_factory.mktemp("stain"), patients=3, grid=(4, 3),
                              tile_size=64, seed=1)


def test_manifest_table_geometry_and_sidecar(manifest):
    table = load_tiles(manifest)
    assert table.classes == ["eosin", "haematoxylin"]
    assert table.tile_size == 64 and len(table.frame) == 3 * 12
    assert table.geometry["tile_mpp"] == pytest.approx(0.5)
    assert table.geometry["tile_downsample"] == pytest.approx(1.0)
    assert table.geometry["magnification"] == pytest.approx(20.0)
    assert table.geometry["tiling"]["tile_size"] == 64  # from the tiles.json sidecar
    assert set(table.frame["group"]) == {"patient00", "patient01", "patient02"}
    frame = pd.read_csv(manifest)
    assert list(frame.columns[:len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert (table.targets == (frame["label"] == "haematoxylin").to_numpy()).all()


def test_tiles_are_read_like_the_tiler_contract_on_the_real_slide(tmp_path):
    """Level-0 tiles of the real Aperio sample, shrunk 256 -> 128 (a 2x target)."""
    rows = [{"slide": "CMU-1", "path": str(SAMPLE), "group": "CMU-1", "x": x, "y": y,
             "extent": 256, "level": 0, "read_size": 256, "size": 128,
             "tissue_fraction": 1.0, "label": label}
            for (x, y), label in zip([(0, 0), (1024, 1024), (1500, 2000), (256, 768)],
                                     ["a", "b", "a", "b"])]
    pd.DataFrame(rows).to_csv(tmp_path / "tiles.csv", index=False)
    table = load_tiles(tmp_path / "tiles.csv")
    assert table.geometry["tile_mpp"] == pytest.approx(0.499 * 2, rel=0.01)
    reader = table.reader()
    with open_slide(SAMPLE) as slide:
        for i, row in enumerate(rows):
            expected = read_tile(slide, row["x"], row["y"], 0, 256, 128)
            np.testing.assert_array_equal(reader[i], expected)
    # Cached in memory or on disk (read once by worker processes) and streamed sources
    # give the same batches, in any order.
    cached = TileSource(table.reader(), workers=2, cache_mb=64)
    on_disk = TileSource(table.reader(), workers=2, cache_mb=0, cache_dir=tmp_path)
    streamed = TileSource(table.reader(), workers=2, cache_mb=0, disk_cache=False)
    assert [s.cache_kind for s in (cached, on_disk, streamed)] == ["memory", "disk", "streamed"]
    assert not list(tmp_path.glob("histotile-tiles-*"))  # unlinked: nothing left behind
    order = np.array([3, 1, 0, 2])
    for (ia, ta), (ib, tb), (ic, tc) in zip(cached.batches(order, 3), streamed.batches(order, 3),
                                            on_disk.batches(order, 3)):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(ic, ia)
        np.testing.assert_array_equal(tc, ta)
    on_disk.close()


def test_disk_tiles_read_back_what_was_written_in_any_order(tmp_path):
    from histotile.models.tile_source import DiskTiles

    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    store = DiskTiles(10, (8, 8, 3), tmp_path)
    store[np.arange(0, 6)] = tiles[:6]  # a run: one write
    store[np.array([9, 7, 6, 8])] = tiles[[9, 7, 6, 8]]  # scattered
    np.testing.assert_array_equal(store[np.array([8, 0, 5, 9, 3])], tiles[[8, 0, 5, 9, 3]])
    np.testing.assert_array_equal(store[np.arange(10)], tiles)
    assert not any(tmp_path.iterdir())
    store.close()
    store.close()  # idempotent


def test_imagefolder_plain_and_patchified(tmp_path):
    root = write_stain_imagefolder(tmp_path / "folder", per_class=6, tile_size=64, patients=3)
    table = load_tiles(root)
    assert table.kind == "imagefolder" and table.tile_size == 64
    assert table.frame["label"].value_counts().to_dict() == {"eosin": 6, "haematoxylin": 6}
    assert table.frame["group"].nunique() == 3  # 'patientNN__' prefixes
    tile = table.reader()[0]
    on_disk = cv2.cvtColor(cv2.imread(table.frame["path"][0]), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(tile, on_disk)
    # Patchify: a 200x130 image gives 3x2 patches of 64 px.
    big = np.zeros((130, 200, 3), np.uint8)
    big[:, 64:128] = 200
    (tmp_path / "big" / "x").mkdir(parents=True)
    (tmp_path / "big" / "y").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "big" / "x" / "p1__a.png"), big)
    cv2.imwrite(str(tmp_path / "big" / "y" / "p2__b.png"), big)
    table = load_tiles(tmp_path / "big", tile_size=64, patchify=True)
    assert len(table.frame) == 12
    reader = table.reader()
    assert (reader[1] == 200).all() and (reader[0] == 0).all()


def test_missing_group_column(manifest, tmp_path):
    frame = pd.read_csv(manifest).drop(columns=["group"])
    frame.to_csv(manifest.parent / "nogroup.csv", index=False)
    with pytest.raises(DatasetError, match=r"nogroup\.csv: group column 'group' not found.*"
                                           r"group_column='slide'"):
        load_tiles(manifest.parent / "nogroup.csv")
    # Grouping by another column works.
    by_slide = load_tiles(manifest.parent / "nogroup.csv", group_column="slide")
    assert by_slide.frame["group"].nunique() == 3


def test_missing_columns_empty_and_single_class(manifest, tmp_path):
    frame = pd.read_csv(manifest)
    frame.drop(columns=["read_size"]).to_csv(manifest.parent / "cols.csv", index=False)
    with pytest.raises(DatasetError, match=r"cols\.csv: missing column\(s\) read_size"):
        load_tiles(manifest.parent / "cols.csv")
    frame.iloc[:0].to_csv(manifest.parent / "empty.csv", index=False)
    with pytest.raises(DatasetError, match=r"empty\.csv: the manifest holds no tiles"):
        load_tiles(manifest.parent / "empty.csv")
    frame.assign(label="eosin").to_csv(manifest.parent / "one.csv", index=False)
    with pytest.raises(DatasetError, match=r"only one class \(eosin\).*at least two"):
        load_tiles(manifest.parent / "one.csv")
    with pytest.raises(DatasetError, match="class.*necrosis have no tiles"):
        load_tiles(manifest, classes=["eosin", "necrosis"])
    with pytest.raises(DatasetError, match="no such manifest file or image folder"):
        load_tiles(tmp_path / "absent.csv")


def test_unreadable_slide_and_image_files(manifest, tmp_path):
    frame = pd.read_csv(manifest)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + b"\x00" * 64)
    frame.loc[0, "path"] = str(broken)
    frame.to_csv(manifest.parent / "bad.csv", index=False)
    with pytest.raises(DatasetError, match=r"slide .*broken\.tif cannot be read"):
        load_tiles(manifest.parent / "bad.csv")
    root = write_stain_imagefolder(tmp_path / "folder", per_class=3, tile_size=64)
    (root / "eosin" / "zz_truncated.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(DatasetError, match=r"zz_truncated\.png: unreadable image"):
        load_tiles(root)


def test_mixed_tile_sizes_need_a_tile_size(manifest, tmp_path):
    frame = pd.read_csv(manifest)
    frame.loc[:3, "size"] = 32
    frame.to_csv(manifest.parent / "mixed.csv", index=False)
    with pytest.raises(DatasetError, match=r"several sizes.*pass tile_size"):
        load_tiles(manifest.parent / "mixed.csv")
    assert load_tiles(manifest.parent / "mixed.csv", tile_size=64).reader()[0].shape == (64, 64, 3)


def test_unlabelled_tiles_are_left_out_and_max_tiles_is_stratified(manifest, tmp_path):
    frame = pd.read_csv(manifest)
    frame.loc[:4, "label"] = ""
    frame.to_csv(manifest.parent / "partial.csv", index=False)
    table = load_tiles(manifest.parent / "partial.csv")
    assert len(table.frame) == len(frame) - 5
    assert any("without a label" in note for note in table.notes)
    small = load_tiles(manifest, max_tiles=12, seed=0)
    again = load_tiles(manifest, max_tiles=12, seed=0)
    assert len(small.frame) <= 12 and set(small.frame["label"]) == {"eosin", "haematoxylin"}
    pd.testing.assert_frame_equal(small.frame, again.frame)


def test_augmentation_is_the_dihedral_group():
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 255, (64, 8, 8, 3), dtype=np.uint8)
    out = augment_batch(tiles, np.random.default_rng(1))
    orientations = []
    for src, dst in zip(tiles, out):
        variants = [np.rot90(src, k) for k in range(4)]
        variants += [v[:, ::-1] for v in variants]
        matches = [i for i, v in enumerate(variants) if np.array_equal(v, dst)]
        assert matches, "an augmented tile is not a flip/rotation of its source"
        orientations.append(matches[0])
    assert len(set(orientations)) == 8  # all eight orientations occur
