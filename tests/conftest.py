"""Shared fixtures: the bundled real slide and small synthetic slides made per session."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import histotile
from histotile.wsi.synthetic import write_synthetic_slide

DATA = Path(histotile.__file__).parent / "data"


@pytest.fixture(scope="session")
def real_slide_path() -> Path:
    """The real H&E Aperio sample (CC0), 2220x2967, one level, 0.499 um/px, 20x."""
    return DATA / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="session")
def synthetic_pyramid(tmp_path_factory) -> Path:
    """A 3000x2000 synthetic pyramidal JPEG TIFF at 0.5 um/px with 3 levels."""
    path = tmp_path_factory.mktemp("slides") / "synthetic.tif"
    write_synthetic_slide(path, 3000, 2000, seed=3, mpp=0.5, tile_size=256, levels=3)
    return path


from serve_fixtures import serve_world  # noqa: E402,F401 - the serve tests' session fixture


def _mxnet_installed() -> bool:
    """True when the optional mxnet extra is installed; found without importing it, so
    collection stays fast and the test process keeps its threads and numpy untouched."""
    return importlib.util.find_spec("mxnet") is not None


# The longest test files, longest first. `make test` hands whole files to its two
# processes as they free up (pytest-xdist's loadfile), in collection order; a long file
# collected late (alphabetical: test_workflows_benchmark.py near the end) kept one process
# busy for two minutes after the other had finished. Started first, the long files run
# beside the many short ones. The order changes no test's outcome.
LONG_FILES_FIRST = (
    "test_workflows_benchmark.py",
    "test_models_train.py",
    "test_models_train_folds_dask.py",
    "test_models_distributed.py",
    "test_workflows_dask.py",
    "test_workflows_serve_browser.py",
    "test_workflows_train_parallel_cli.py",
    "test_workflows_class_roles.py",
)


def _long_first(items: list) -> None:
    """Sort ``items`` in place: the files of :data:`LONG_FILES_FIRST` in that order, then
    every other file in collection order (a file's tests keep their own order)."""
    rank = {name: index for index, name in enumerate(LONG_FILES_FIRST)}
    position = {item: index for index, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), position[item]))


def pytest_collection_modifyitems(config, items):
    """The long files first (:data:`LONG_FILES_FIRST`); tests marked `mxnet` skip, with a
    reason, when the mxnet extra is not importable."""
    _long_first(items)
    if not any(item.get_closest_marker("mxnet") for item in items):
        return
    if _mxnet_installed():
        return
    skip = pytest.mark.skip(reason="needs the mxnet extra (pip install 'histotile[mxnet]')")
    for item in items:
        if item.get_closest_marker("mxnet"):
            item.add_marker(skip)
