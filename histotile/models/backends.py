"""The training backends: the :class:`Backend` protocol and one table of them, each imported
only when first used (torch or MXNet are loaded by the backend that needs them).

A leaf of the models stage (it imports no histotile module; the backend modules are named
here as strings and imported by :func:`load_backend`), so the registry, the fold runner
and the engines choose a backend in one place without importing each other. Add a backend:
a module implementing :class:`Backend`, one line in :data:`BACKENDS`, and its name in the
``backends`` of the :class:`~histotile.models.specs.ModelSpec` entries it provides.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import numpy as np

if TYPE_CHECKING:  # for the annotation only: this module imports no histotile module
    from histotile.models.epochs import FitResult

BackendName = Literal["torch", "mxnet"]
"""The training backends by name: the keys of :data:`BACKENDS` (a test keeps the two
alike)."""
BACKENDS: dict[str, str] = {
    "torch": "histotile.models.torch_backend",
    "mxnet": "histotile.models.mxnet_backend",
}
"""Backend name -> the module implementing :class:`Backend` (imported lazily)."""


class Backend(Protocol):
    """What a training backend provides (module-level functions of its module).

    ``fit`` trains in place and returns a :class:`~histotile.models.epochs.FitResult`
    (see :func:`histotile.models.torch_backend.fit`); ``predict_rows``
    returns float32 (N, classes) probabilities of manifest rows; ``load`` returns the
    inference runner of a model folder (an :class:`~histotile.models.runtimes.Engine`).
    """

    def build(self, name: str, num_classes: int, tile_size: int,
              weights: str | Path | None = None) -> Any: ...

    def resolve_device(self, device: str | None) -> Any: ...

    def seed_everything(self, seed: int) -> None: ...

    def fit(self, model: Any, spec: Any, source: Any, targets: np.ndarray,
            train_rows: np.ndarray, val_rows: np.ndarray | None, settings: Any, *,
            epochs: int, seed: int, device: Any, progress: Any, tag: str
            ) -> FitResult: ...

    def predict_rows(self, model: Any, spec: Any, source: Any, rows: np.ndarray,
                     batch_size: int, device: Any) -> np.ndarray: ...

    def save(self, model: Any, directory: Path) -> str: ...

    def load(self, card: dict[str, Any], directory: Path, device: str | None) -> Any: ...


def load_backend(name: str) -> Backend:
    """The backend module called ``name`` (``torch`` for any name not in the table, as
    the settings validate the name before any backend is used)."""
    return cast(Backend, importlib.import_module(BACKENDS.get(name, BACKENDS["torch"])))
