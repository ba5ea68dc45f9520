"""The benchmark's training and prediction stages, and their baseline: the bare network
(forward, or forward + backward + optimiser step) on a ready-made tensor on the same
device, its steady rate extrapolated to the stage's tile count."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from histotile.workflows.benchmark.inputs import CLASSES, SLIDE_MPP, TILE, tiling_settings
from histotile.workflows.benchmark.meter import Meter

# --- training -----------------------------------------------------------------------------

def train_epoch(params: dict, meter: Meter) -> dict:
    """One epoch of LeNet (histotile's defaults) on the tiles of the manifest the tiling
    stage wrote (all of them, or a stratified sample of ``max_tiles``): tiles read from
    the slide by DataLoader workers, augmented, normalised; the model folder written."""
    import pandas as pd

    from histotile.models import TrainSettings, train

    settings = TrainSettings(model="lenet", epochs=1, folds=0, test_fraction=0.0, patience=0,
                             device=params["device"], seed=0,
                             max_tiles=params.get("max_tiles"))
    started: dict[str, Any] = {}

    def on_event(event: str, **info: Any) -> None:
        if event == "start":
            started.update(info)

    with meter:
        train(params["manifest"], params["model_dir"], settings, progress=on_event,
              overwrite=True)
    history = pd.read_csv(Path(params["model_dir"]) / "history.csv")
    log = (Path(params["model_dir"]) / "train.log").read_text(encoding="utf-8")
    cache = next((line.split(" INFO tiles ", 1)[1].strip() for line in log.splitlines()
                  if " INFO tiles " in line), "")
    return {"tiles": int(started["tiles"]), "device": str(started["device"]),
            "epoch_seconds": float(history["seconds"].iloc[-1]), "tile_cache": cache}


def _synchronise(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _steady_rate(step: Callable[[], int], device, seconds: float) -> float:
    """Tiles per second of ``step`` (returns the tiles it processed) after a warm-up,
    over about ``seconds``."""
    step()
    _synchronise(device)
    tiles, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        tiles += step()
    _synchronise(device)
    return tiles / (time.perf_counter() - started)


def train_baseline(params: dict, meter: Meter) -> dict:
    """Forward + backward + the optimiser step of a bare LeNet (histotile's training
    defaults: optimiser, batch size, channels-last; on CUDA mixed precision with a grad
    scaler, as training runs there) on a ready-made tensor."""
    import torch

    from histotile._settings import required
    from histotile.models import TrainSettings, create, get_spec
    from histotile.models.torch_backend import autocast, prepare, resolve_device

    settings = TrainSettings(model="lenet", device=params["device"]).resolved()
    device = resolve_device(settings.device)
    spec = get_spec("lenet")
    model = prepare(create("lenet", len(CLASSES), TILE), spec, device).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=required(settings.lr, "lr"),
                                momentum=required(settings.momentum, "momentum"),
                                weight_decay=required(settings.weight_decay, "weight_decay"))
    batch = required(settings.batch_size, "batch_size")
    x = torch.randn(batch, 3, TILE, TILE, device=device).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, len(CLASSES), (batch,), device=device)

    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None

    def step() -> int:
        optimiser.zero_grad(set_to_none=True)
        with autocast(device):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        if scaler is None:
            loss.backward()
            optimiser.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
        return batch

    with meter:
        rate = _steady_rate(step, device, float(params.get("seconds", 3.0)))
    return {"rate": rate, "batch_size": batch, "device": str(device)}


# --- prediction ---------------------------------------------------------------------------

def untrained_model(architecture: str, directory: str | Path, device: str | None) -> Path:
    """A model folder holding a freshly initialised ``architecture`` (seeded): the speed of
    a trained one, not its answers. Written by the models stage's own card writer."""
    import torch

    from histotile.models import create, get_spec
    from histotile.models.card import build_card, write_card
    from histotile.models.torch_backend import save

    directory = Path(directory)
    if (directory / "model_card.json").exists():
        return directory
    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    weights = save(create(architecture, len(CLASSES), TILE), directory)
    write_card(build_card(architecture=architecture, backend="torch",
                          description=f"untrained {architecture} (benchmark: speed only)",
                          classes=list(CLASSES), tile_size=TILE, weights_file=weights,
                          normalisation=get_spec(architecture).normalisation(),
                          geometry={"tile_mpp": SLIDE_MPP, "tile_downsample": 1.0},
                          settings={}, data={}, metrics={}, final_epochs=None), directory)
    return directory


def predict(params: dict, meter: Meter) -> dict:
    """:func:`predict_slide` over every tissue tile, or with ``parts`` > 1 over one
    contiguous slice (the middle one) of them; then the time for every tile is the
    measured time plus the rest at the steady rate (after the first batch)."""
    from histotile.models import Predictor
    from histotile.postprocess import predict_slide

    model_dir = params["model_dir"]
    if params.get("architecture"):
        model_dir = untrained_model(params["architecture"], model_dir, params["device"])
    # engine "auto": the fastest installed engine for the device (onnxruntime on CPU)
    predictor = Predictor(model_dir, device=params["device"])
    parts = int(params.get("parts") or 1)
    part = (parts // 2, parts) if parts > 1 else None
    stamps: list[tuple[float, int]] = []

    def on_progress(done: int, _total: int) -> None:
        stamps.append((time.perf_counter(), done))

    with meter:
        result = predict_slide(params["slide"], predictor, tiling=tiling_settings(),
                               part=part, progress=on_progress)
    if params.get("predictions"):
        result.save(params["predictions"], overwrite=True)
    tiles = len(result)
    out = {"tiles": tiles, "device": predictor.device, "batch_size": predictor.batch_size,
           "engine": predictor.engine}
    if len(stamps) >= 3:
        (t0, n0), (t1, n1) = stamps[0], stamps[-1]
        out["steady_rate"] = (n1 - n0) / (t1 - t0)
    return out


def predict_baseline(params: dict, meter: Meter) -> dict:
    """The loaded network's forward pass and softmax on a ready-made normalised batch on
    its device (mixed precision on CUDA, as the Predictor runs it)."""
    import torch

    from histotile.models import Predictor
    from histotile.models.torch_backend import autocast

    model_dir = params["model_dir"]
    if params.get("architecture"):
        model_dir = untrained_model(params["architecture"], model_dir, params["device"])
    # The baseline stays the bare eager torch network, whatever engine predicts.
    predictor = Predictor(model_dir, device=params["device"], engine="torch")
    device = torch.device(predictor.device)
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (predictor.batch_size, TILE, TILE, 3), dtype=np.uint8)
    batch = predictor.to_input(tiles)

    def step() -> int:
        with autocast(device):
            torch.softmax(predictor.network(batch).float(), dim=1).cpu()
        return batch.shape[0]

    with meter, torch.inference_mode():
        rate = _steady_rate(step, device, float(params.get("seconds", 3.0)))
    return {"rate": rate, "batch_size": predictor.batch_size, "device": predictor.device}
