"""Registry, settings and the lazy-import rule."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from histotile.errors import ConfigError, ModelError
from histotile.models import MODEL_DEFAULTS, TrainSettings, available_models, create


@pytest.mark.parametrize("name", ["lenet", "squeezenet", "resnet18", "alexnet",
                                  "shufflenet_v2"])
@pytest.mark.parametrize("tile_size", [64, 100])
def test_every_model_builds_for_any_tile_size_from_64(name, tile_size):
    model = create(name, 3, tile_size).eval()
    with torch.inference_mode():
        out = model(torch.zeros(2, 3, tile_size, tile_size))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()


def test_registry_lists_models_per_backend():
    assert available_models() == ["tilenet", "lenet", "squeezenet", "resnet18", "alexnet",
                                  "shufflenet_v2"]
    assert available_models("mxnet") == ["lenet"]


def test_lenet_follows_the_study_architecture():
    model = create("lenet", 2, 128)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [20, 50]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5)]
    assert [d.out_features for d in dense] == [500, 84, 2]
    assert dense[0].in_features == 50 * 29 * 29  # 128 -> 124 -> 62 -> 58 -> 29
    assert sum(isinstance(m, torch.nn.Sigmoid) for m in model.modules()) == 2


def test_bad_names_sizes_and_classes():
    with pytest.raises(ModelError, match="unknown architecture"):
        create("vgg99", 2, 128)
    with pytest.raises(ModelError, match="at least 64 px"):
        create("resnet18", 2, 48)
    with pytest.raises(ModelError, match="at least 2 classes"):
        create("lenet", 1, 64)
    with pytest.raises(ModelError, match="not available for backend 'mxnet'"):
        create("resnet18", 2, 64, backend="mxnet")
    with pytest.raises(ModelError, match="never downloads"):
        create("resnet18", 2, 64, weights="/nonexistent/resnet18.pth")


def test_local_weights_fine_tune_keeps_backbone_and_fresh_head(tmp_path):
    torch.manual_seed(0)
    imagenet_like = create("resnet18", 10, 64)  # another head size, as ImageNet's 1000
    path = tmp_path / "resnet18_local.pth"
    torch.save(imagenet_like.state_dict(), path)
    model = create("resnet18", 2, 64, weights=path)
    np.testing.assert_array_equal(model.conv1.weight.detach().numpy(),
                                  imagenet_like.conv1.weight.detach().numpy())
    assert model.fc.out_features == 2
    # Weights of another architecture are refused.
    torch.save(create("lenet", 2, 64).state_dict(), tmp_path / "lenet.pth")
    with pytest.raises(ModelError, match="another architecture"):
        create("resnet18", 2, 64, weights=tmp_path / "lenet.pth")
    # A pickle that is not plain tensors is refused (weights_only loading).
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=r"junk.pth: .*torch.save\(model.state_dict"):
        create("resnet18", 2, 64, weights=tmp_path / "junk.pth")


def test_settings_defaults_follow_the_studies_and_round_trip():
    lenet = TrainSettings(model="lenet").resolved()
    # Adam at the study's learning rate: the study's SGD sat at chance for many epochs.
    assert (lenet.optimizer, lenet.lr, lenet.momentum, lenet.batch_size) == ("adam", 0.001,
                                                                            0.8, 32)
    resnet = TrainSettings(model="resnet18", lr=0.01).resolved()
    assert resnet.lr == 0.01 and resnet.epochs == MODEL_DEFAULTS["resnet18"]["epochs"] == 20
    assert (resnet.folds, resnet.test_fraction, resnet.group_column) == (4, 0.2, "group")
    again = TrainSettings.from_dict(resnet.to_dict())
    assert again == resnet
    with pytest.raises(ConfigError, match="unknown training setting.*colour"):
        TrainSettings.from_dict({"model": "lenet", "colour": "pink"})


@pytest.mark.parametrize("change, message", [
    ({"model": "vgg"}, "unknown model"),
    ({"backend": "mxnet", "model": "resnet18"}, "offers only model='lenet'"),
    ({"folds": 1}, "folds=1"),
    ({"test_fraction": 1.5}, "test_fraction"),
    ({"optimizer": "rmsprop"}, "unknown optimizer"),
    ({"lr": -1.0}, "lr=-1.0"),
    ({"tile_size": 32, "model": "resnet18"}, "64 px"),
    ({"tile_size": 8}, "16 px"),
    ({"patchify": True}, "needs tile_size"),
])
def test_bad_settings_name_the_setting(change, message):
    with pytest.raises(ConfigError, match=message):
        TrainSettings(**change).resolved()


def test_missing_mxnet_extra_is_a_clear_error(monkeypatch):
    from histotile.models import mxnet_backend

    monkeypatch.setattr(mxnet_backend, "_MX", None)
    monkeypatch.setitem(sys.modules, "mxnet", None)  # as if the extra were not installed
    with pytest.raises(ModelError, match=r"pip install 'histotile\[mxnet\]'.*backend='torch'"):
        create("lenet", 2, 64, backend="mxnet")


@pytest.mark.mxnet
def test_mxnet_import_leaves_torch_threads_alone():
    code = ("import torch; torch.set_num_threads(2);"
            "from histotile.models.mxnet_backend import mx; mx();"
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "2"


@pytest.mark.mxnet
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mxnet_and_torch_lenet_are_the_same_network_and_update(optimizer):
    """Same weights in both backends: same outputs, gradients and optimiser step."""
    from histotile.models.mxnet_backend import _Transform, build_lenet, mx, torch_adam
    from histotile.models.registry import get_spec
    from histotile.models.synthetic import stain_tiles
    from histotile.models.torch_backend import InputTransform

    mxnet = mx()  # imports MXNet with its numpy workaround
    autograd, gluon = mxnet.autograd, mxnet.gluon
    tiles = stain_tiles(["eosin", "haematoxylin"] * 8, 64, np.random.default_rng(0))
    labels = np.array([0, 1] * 8)
    spec = get_spec("lenet")
    torch_net = create("lenet", 2, 64)
    mx_net = build_lenet(2, 64)
    torch_params = list(torch_net.parameters())
    mx_params = list(mx_net.collect_params().values())
    assert [tuple(p.shape) for p in torch_params] == [p.shape for p in mx_params]
    for tp, mp in zip(torch_params, mx_params):
        mp.set_data(mxnet.nd.array(tp.detach().numpy()))
    loss_t = torch.nn.functional.cross_entropy(
        torch_net(InputTransform(spec, torch.device("cpu"))(tiles)), torch.from_numpy(labels))
    loss_t.backward()
    with autograd.record():
        loss_m = gluon.loss.SoftmaxCrossEntropyLoss()(
            mx_net(_Transform(spec.normalisation(), mxnet.cpu())(tiles)),
            mxnet.nd.array(labels))
    loss_m.backward()
    assert float(loss_m.mean().asscalar()) == pytest.approx(float(loss_t.detach()), abs=1e-5)
    for tp, mp in zip(torch_params, mx_params):
        expected = tp.grad.numpy()  # float32 kernels differ: 1 % of the tensor's scale
        np.testing.assert_allclose(mp.grad().asnumpy() / labels.size, expected, rtol=0,
                                   atol=1e-2 * np.abs(expected).max())
    if optimizer == "sgd":
        opt_t = torch.optim.SGD(torch_params, lr=0.01, momentum=0.8)
        opt_m = mxnet.optimizer.SGD(learning_rate=0.01, momentum=0.8)
    else:
        opt_t = torch.optim.Adam(torch_params, lr=1e-3)
        opt_m = torch_adam()(learning_rate=1e-3)
    trainer = gluon.Trainer(mx_net.collect_params(), opt_m)
    opt_t.step()
    trainer.step(labels.size)
    for tp, mp in zip(torch_params, mx_params):
        # Adam moves each weight by about lr on its first step; 1e-4 is a tenth of that.
        # A weight whose gradient is float32 noise may step the other way: allow 0.1 %.
        far = np.abs(mp.data().asnumpy() - tp.detach().numpy()) > 1e-4
        assert far.mean() < 1e-3, (tuple(tp.shape), int(far.sum()))


def test_backend_names_are_the_backend_table():
    from typing import get_args

    from histotile.models.backends import BACKENDS, BackendName

    assert set(get_args(BackendName)) == set(BACKENDS)


def test_settings_are_frozen_and_checked_when_made():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainSettings().epochs = 3  # type: ignore[misc]
    # Checked on construction, before any model default is filled in.
    with pytest.raises(ConfigError, match="unknown optimizer"):
        TrainSettings(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="choose one of weights"):
        TrainSettings(balance="oversample")
    assert TrainSettings(optimizer="Adam").resolved().optimizer == "adam"
