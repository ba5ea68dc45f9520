"""The MXNet (Gluon) backend: the study's LeNet with the same architecture, training
semantics (optimiser settings, loss, early stopping, augmentation), metrics, save and
load as the PyTorch backend.

MXNet 1.9.1 is retired upstream and optional (the ``mxnet`` extra). It is imported only
here, lazily, with two workarounds: ``numpy.bool`` is restored before the import
(MXNet uses the alias removed in numpy 1.24), and torch's intra-op thread count, which
importing MXNet lowers to 1, is put back afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from histotile._settings import required
from histotile.errors import ModelError
from histotile.models.epochs import (
    EpochSums,
    EpochTracker,
    FitResult,
    Progress,
    run_epochs,
)
from histotile.models.settings import TrainSettings
from histotile.models.specs import ModelSpec, get_spec
from histotile.models.tile_source import TileSource

log = logging.getLogger("histotile.models")
WEIGHTS_FILE = "model.params"
_MX: Any = None


def mx() -> Any:
    """The ``mxnet`` module, imported once with the numpy and torch-threads workarounds.
    :class:`ModelError` when the extra is not installed."""
    global _MX
    if _MX is not None:
        return _MX
    if "bool" not in vars(np):
        np.bool = bool  # type: ignore[attr-defined]  # MXNet 1.9 uses the removed alias
    threads = 0
    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    try:
        import mxnet
    except ImportError as error:
        raise ModelError(f"backend='mxnet' needs the optional MXNet extra ({error}): install "
                         "it with pip install 'histotile[mxnet]' (mxnet==1.9.1 with numpy<2), "
                         "or use backend='torch'") from None
    finally:
        if threads:  # torch imported
            torch.set_num_threads(threads)
    _MX = mxnet
    return mxnet


_TORCH_ADAM: Any = None


def torch_adam() -> Any:
    """An MXNet optimiser with PyTorch's Adam update (``torch.optim.Adam``), registered
    once. MXNet's built-in Adam adds epsilon after the bias correction of the step size,
    which shrinks the steps of parameters with tiny gradients (LeNet's wide first dense
    layer) and made the same run learn far slower than in PyTorch."""
    global _TORCH_ADAM
    if _TORCH_ADAM is not None:
        return _TORCH_ADAM
    mxnet = mx()
    nd = mxnet.nd
    optimizer_base: Any = mxnet.optimizer.Optimizer  # MXNet is untyped

    class TorchAdam(optimizer_base):
        def __init__(self, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

        def create_state(self, index: Any, weight: Any) -> Any:
            return (nd.zeros(weight.shape, weight.context, dtype=weight.dtype),
                    nd.zeros(weight.shape, weight.context, dtype=weight.dtype))

        def update(self, index: Any, weight: Any, grad: Any, state: Any) -> None:
            # MXNet's fused Adam kernel with torch's bias corrections folded into the
            # step size and epsilon: w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
            self._update_count(index)
            step = self._index_update_count[index]
            correction2 = float(np.sqrt(1.0 - self.beta2 ** step))
            lr = self._get_lr(index) * correction2 / (1.0 - self.beta1 ** step)
            mean, var = state
            nd.adam_update(weight, grad, mean, var, out=weight, lr=lr, beta1=self.beta1,
                           beta2=self.beta2, epsilon=self.epsilon * correction2,
                           wd=self._get_wd(index), rescale_grad=self.rescale_grad,
                           clip_gradient=self.clip_gradient or -1.0, lazy_update=False)

    mxnet.optimizer.Optimizer.register(TorchAdam)
    _TORCH_ADAM = TorchAdam
    return TorchAdam


def resolve_device(device: str | None) -> Any:
    """An MXNet context: ``None`` = GPU 0 when MXNet sees one, else CPU; ``"cuda:N"`` /
    ``"gpu:N"`` / ``"cpu"`` as named."""
    mxnet = mx()
    gpus = mxnet.context.num_gpus()
    if device is None:
        return mxnet.gpu(0) if gpus else mxnet.cpu()
    kind, _, index = str(device).partition(":")
    if kind == "cpu":
        return mxnet.cpu()
    if kind in ("cuda", "gpu"):
        number = int(index or 0)
        if number >= gpus:
            raise ModelError(f"device={device!r}: MXNet sees {gpus} GPU(s); use device='cpu' "
                             "or leave it unset")
        return mxnet.gpu(number)
    raise ModelError(f"device={device!r}: not a device name (use 'cpu' or 'cuda:N')")


def seed_everything(seed: int) -> None:
    mx().random.seed(int(seed))


def build_lenet(num_classes: int, tile_size: int, weights: str | Path | None = None,
                ctx: Any = None) -> Any:
    """The Gluon LeNet: conv 20@5x5 (ReLU), max-pool 2, conv 50@5x5 (ReLU), max-pool 2,
    dense 500 and 84 (sigmoid), dense ``num_classes``. Xavier (Glorot-uniform) weights and
    zero biases, as the PyTorch LeNet; given a local ``.params`` file, loaded from it."""
    mxnet = mx()
    from mxnet.gluon import nn

    ctx = ctx or mxnet.cpu()

    net = nn.HybridSequential()
    net.add(nn.Conv2D(20, kernel_size=5, activation="relu"),
            nn.MaxPool2D(2, 2),
            nn.Conv2D(50, kernel_size=5, activation="relu"),
            nn.MaxPool2D(2, 2),
            nn.Flatten(),
            nn.Dense(500, activation="sigmoid"),
            nn.Dense(84, activation="sigmoid"),
            nn.Dense(num_classes))
    net.initialize(mxnet.init.Xavier(), ctx=ctx)
    net(mxnet.nd.zeros((1, 3, tile_size, tile_size), ctx=ctx))  # resolve deferred shapes
    if weights is not None:
        load_params(net, Path(weights), ctx)
    net.hybridize(static_alloc=True)
    return net


def load_params(net: Any, path: Path, ctx: Any) -> None:
    """MXNet's own NDArray format (no pickle): every tensor must match."""
    import zipfile

    if zipfile.is_zipfile(path):  # torch.save writes a zip archive; MXNet never does
        raise ModelError(f"{path}: this is a PyTorch weights file, not MXNet parameters "
                         "(the model card says backend 'mxnet'); use the model folder "
                         "'histotile train --backend mxnet' wrote, or the torch model's card")
    mxnet = mx()
    try:
        net.load_parameters(str(path), ctx=ctx)
    except (mxnet.base.MXNetError, AssertionError, ValueError, RuntimeError) as error:
        # MXNet messages start with "Traceback ..." of its C++ stack: show the line that
        # says what failed.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        said = [line for line in lines if "Error" in line or "Check failed" in line]
        first = (said or lines[-1:] or [type(error).__name__])[0]
        raise ModelError(f"{path}: the MXNet parameters do not fit this LeNet ({first}); "
                         "use a .params file saved from the same architecture, classes and "
                         "tile size") from None


class _Transform:
    """uint8 NHWC tiles -> normalised float32 NCHW NDArray on ``ctx``."""

    def __init__(self, normalisation: dict[str, Any], ctx: Any) -> None:
        mean = np.asarray(normalisation["mean"], np.float32)
        std = np.asarray(normalisation["std"], np.float32)
        self.scale = mx().nd.array((1.0 / (float(normalisation["divide_by"]) * std))
                                   .reshape(1, 3, 1, 1), ctx=ctx)
        self.shift = mx().nd.array((-mean / std).reshape(1, 3, 1, 1), ctx=ctx)
        self.ctx = ctx

    def __call__(self, tiles: np.ndarray) -> Any:
        x = mx().nd.array(tiles, ctx=self.ctx, dtype=np.uint8).astype("float32")
        return mx().nd.broadcast_add(mx().nd.broadcast_mul(x.transpose((0, 3, 1, 2)),
                                                            self.scale), self.shift)


def _copy_params(net: Any) -> dict[str, Any]:
    return {name: p.data().copy() for name, p in net.collect_params().items()}


def _set_params(net: Any, values: dict[str, Any]) -> None:
    for name, p in net.collect_params().items():
        p.set_data(values[name])


def fit(model: Any, spec: ModelSpec, source: TileSource, targets: np.ndarray,
        train_rows: np.ndarray, val_rows: np.ndarray | None, settings: TrainSettings, *,
        epochs: int, seed: int, device: Any, progress: Progress, tag: str) -> FitResult:
    """Same contract as :func:`histotile.models.torch_backend.fit`."""
    mxnet = mx()
    from mxnet import autograd, gluon

    if model.collect_params().list_ctx() != [device]:
        model.collect_params().reset_ctx(device)
    transform = _Transform(spec.normalisation(), device)
    rates: dict[str, Any] = {"learning_rate": settings.lr, "wd": settings.weight_decay}
    if settings.optimizer == "sgd":  # MXNet's SGD matches torch.optim.SGD
        optimizer: Any = mxnet.optimizer.SGD(momentum=settings.momentum, **rates)
    else:
        optimizer = torch_adam()(**rates)
    trainer = gluon.Trainer(model.collect_params(), optimizer)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    batch_size = required(settings.batch_size, "batch_size")
    steps = -(-train_rows.size // batch_size)

    def train_epoch(epoch: int, rng: np.random.Generator) -> EpochSums:
        loss_sum, correct, seen = 0.0, 0, 0
        for step, (rows, tiles) in enumerate(source.batches(
                train_rows, batch_size, shuffle=True, rng=rng,
                augment=settings.augment), start=1):
            x = transform(tiles)
            y = mxnet.nd.array(targets[rows], ctx=device, dtype=np.float32)
            with autograd.record():
                logits = model(x)
                loss = loss_fn(logits, y)
            loss.backward()
            trainer.step(rows.size)
            loss_sum += float(loss.sum().asscalar())
            correct += int((logits.argmax(axis=1) == y).sum().asscalar())
            seen += rows.size
            progress("batch", tag=tag, epoch=epoch, step=step, steps=steps)
        return loss_sum, correct, seen

    def validate() -> np.ndarray | None:
        if val_rows is None or val_rows.size == 0:
            return None
        return predict_rows(model, spec, source, val_rows, batch_size, device,
                            transform=transform)

    return run_epochs(
        EpochTracker(tag, epochs, settings.patience, progress), epochs=epochs, seed=seed,
        train_epoch=train_epoch, validate=validate,
        val_targets=None if val_rows is None else targets[val_rows],
        snapshot=lambda: _copy_params(model), restore=lambda w: _set_params(model, w))


def _predict_batches(model: Any, transform: _Transform,
                     batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for tiles in batches:
        yield mx().nd.softmax(model(transform(tiles)), axis=1).asnumpy()


def predict_rows(model: Any, spec: ModelSpec, source: TileSource, rows: np.ndarray,
                 batch_size: int, device: Any, transform: _Transform | None = None
                 ) -> np.ndarray:
    transform = transform or _Transform(spec.normalisation(), device)
    batches = (tiles for _, tiles in source.batches(rows, max(batch_size, 64)))
    return np.concatenate(list(_predict_batches(model, transform, batches))).astype(np.float32)


def save(model: Any, directory: Path) -> str:
    model.save_parameters(str(directory / WEIGHTS_FILE))
    return WEIGHTS_FILE


class MXNetRunner:
    """Inference half of :class:`Predictor` for MXNet models."""

    name = "mxnet"  # the engine name (histotile.models.engines)

    def __init__(self, card: dict[str, Any], directory: Path, device: str | None) -> None:
        spec = get_spec(card["architecture"], "mxnet")
        self.device = resolve_device(device)
        self.model = build_lenet(len(card["classes"]), int(card["tile_size"]), None,
                                 ctx=self.device)
        load_params(self.model, directory / card.get("weights_file", WEIGHTS_FILE),
                    self.device)
        self.transform = _Transform(card["input"].get("normalisation",
                                                      spec.normalisation()), self.device)

    def predict(self, tiles: np.ndarray, batch_size: int) -> np.ndarray:
        batches = (tiles[s:s + batch_size] for s in range(0, tiles.shape[0], batch_size))
        return np.concatenate(list(_predict_batches(self.model, self.transform, batches)))


def build(name: str, num_classes: int, tile_size: int,
          weights: str | Path | None = None) -> Any:
    """The registry network ``name`` on MXNet (LeNet only: the registry checked it)."""
    return build_lenet(num_classes, tile_size, weights)


def load(card: dict[str, Any], directory: Path, device: str | None) -> MXNetRunner:
    """The inference runner of an MXNet model folder."""
    return MXNetRunner(card, directory, device)
