"""CNN tile classifiers: a model registry (LeNet in PyTorch and MXNet; torchvision
SqueezeNet, ResNet18, AlexNet, ShuffleNet V2), training with grouped stratified
cross-validation and a held-out test split, and :class:`Predictor` for inference.

Importing this package does not import torch or mxnet; they load when a model is built,
trained or loaded (mxnet only inside the MXNet backend).
"""

import os

# OpenMP threads that spin while waiting collapse throughput when the cores are shared
# (measured on 2 cores with other jobs running: torch LeNet training 8 tiles/s spinning,
# 70 tiles/s passive). Takes effect when torch is first imported after this package;
# an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from histotile.models.card import read_card
from histotile.models.data import TileTable, load_tiles
from histotile.models.metrics import classification_metrics, confusion_matrix, summarise
from histotile.models.predict import Predictor
from histotile.models.registry import available_models, create, get_spec
from histotile.models.settings import MODEL_DEFAULTS, TrainSettings
from histotile.models.splits import Splits, make_splits
from histotile.models.train import TrainResult, train

__all__ = [
    "MODEL_DEFAULTS",
    "Predictor",
    "Splits",
    "TileTable",
    "TrainResult",
    "TrainSettings",
    "available_models",
    "classification_metrics",
    "confusion_matrix",
    "create",
    "get_spec",
    "load_tiles",
    "make_splits",
    "read_card",
    "summarise",
    "train",
]
