"""The model specs, the backend table and the torch builders agree: each model is written
once (its spec) and every backend named in a spec exists and builds it."""

from __future__ import annotations

import importlib

import pytest

from histotile.errors import ModelError
from histotile.models.backends import BACKENDS, Backend, load_backend
from histotile.models.settings import MODEL_DEFAULTS
from histotile.models.specs import SPECS, check_tile_size

PROTOCOL = [name for name in vars(Backend) if not name.startswith("_")]


def test_every_backend_module_implements_the_protocol():
    assert {"build", "fit", "predict_rows", "save", "load"} <= set(PROTOCOL)
    for name, module in BACKENDS.items():
        backend = importlib.import_module(module)  # the mxnet module imports mxnet lazily
        missing = [attr for attr in PROTOCOL if not callable(getattr(backend, attr, None))]
        assert missing == [], f"backend {name!r} lacks {missing}"


def test_every_spec_names_known_backends_and_holds_its_defaults():
    for name, spec in SPECS.items():
        assert set(spec.backends) <= set(BACKENDS), name
        assert MODEL_DEFAULTS[name] == dict(spec.defaults) and spec.defaults, name
        assert {"optimizer", "lr", "batch_size", "epochs"} <= set(spec.defaults), name
    assert set(MODEL_DEFAULTS) == set(SPECS)


def test_every_torch_spec_has_a_registered_builder():
    from histotile.models.torch_nets import BUILDERS

    assert set(BUILDERS) == {name for name, spec in SPECS.items() if "torch" in spec.backends}
    model = load_backend("torch").build("lenet", 3, 64)
    assert model(__import__("torch").zeros(2, 3, 64, 64)).shape == (2, 3)


def test_tile_size_minimum_comes_from_the_spec():
    assert check_tile_size(64, SPECS["lenet"].min_tile_size) == 64
    with pytest.raises(ModelError, match="at least 96 px"):
        check_tile_size(64, 96)
