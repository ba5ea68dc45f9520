"""The ``histotile train`` and ``histotile evaluate-images`` commands (registered on the
one ``cli`` group in :mod:`histotile.workflows.cli.main`). Each builds its settings
dataclass once, here, and hands it on whole; every default and every closed set is read
from that dataclass or its module."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import click

from histotile.models.groups import REGION
from histotile.models.operating_point import DEFAULT_TILE_THRESHOLD
from histotile.models.settings import (
    BACKENDS,
    BALANCES,
    FINALS,
    MODEL_DEFAULTS,
    MONITORS,
    OPTIMIZERS,
    RECIPE_DEFAULTS,
    SCHEDULES,
    TrainSettings,
)
from histotile.models.specs import SMALLEST_TILE_SIZE, SPECS
from histotile.tiling.stain import METHODS as STAIN_METHODS
from histotile.workflows.cli.options import (
    config_option,
    examples,
    handle_errors,
    overwrite_option,
)
from histotile.workflows.cli.settings import settings_option
from histotile.workflows.tasks.image_evaluation import THRESHOLDS, ImageEvaluationSettings
from histotile.workflows.training.task import TrainPlacement

_TRAIN = TrainSettings()
_RECIPE = RECIPE_DEFAULTS[_TRAIN.backend]
_PLACEMENT = TrainPlacement()
_IMAGES = ImageEvaluationSettings()


def _per_model(key: str) -> str:
    """Each model's default of ``key`` (from its spec), models of one value together:
    ``"adamw for tilenet; adam for lenet; sgd for squeezenet, resnet18, ..."``."""
    names: dict[Any, list[str]] = {}
    for model, defaults in MODEL_DEFAULTS.items():
        names.setdefault(defaults[key], []).append(model)
    return "; ".join(f"{value} for {', '.join(models)}" for value, models in names.items())


def _models() -> str:
    others = [name for name in SPECS if name != _TRAIN.model]
    return (f"{_TRAIN.model} (the default: any side from "
            f"{SPECS[_TRAIN.model].min_tile_size} px), {', '.join(others[:-1])} or "
            f"{others[-1]}.")


def train_settings(flags: dict[str, Any]) -> TrainSettings:
    """The command line's training settings, with those of its --config file that have
    no flag; ``--patchify N`` is ``patch_size=N, patchify=True``."""
    extra = click.get_current_context().meta.get("histotile.train_settings") or {}
    values = {**extra, **flags}
    if values.get("patch_size"):
        values["patchify"] = True
    return TrainSettings.from_dict(values)


@click.command(epilog=examples("train"))
@click.argument("data", type=click.Path(exists=True))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Model folder to write (weights, model card, metrics, plots, log).")
@click.option("--model", default=_TRAIN.model, help=_models())
@click.option("--backend", type=click.Choice(BACKENDS), default=_TRAIN.backend,
              show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=_TRAIN.epochs,
              help=f"Maximum epochs per fold and for the final model (default: the "
                   f"model's: {_per_model('epochs')}).")
@click.option("--batch-size", type=click.IntRange(1), default=_TRAIN.batch_size,
              help=f"Tiles per step (default: the model's: {_per_model('batch_size')}).")
@click.option("--lr", type=float, default=_TRAIN.lr,
              help=f"Peak learning rate (default: the model's: {_per_model('lr')}).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=_TRAIN.optimizer,
              help=f"Optimiser (default: the model's: {_per_model('optimizer')}).")
@click.option("--patience", type=click.IntRange(0), default=_TRAIN.patience,
              show_default=True,
              help="Early stopping: epochs without a better validation figure (--monitor; "
                   "0 disables it).")
@click.option("--balance", type=click.Choice(BALANCES), default=_TRAIN.balance,
              help="Class balance: loss 'weights', a balanced 'sampler', or 'none' "
                   f"(default: {_RECIPE['balance']}).")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=_TRAIN.schedule,
              help="Learning-rate schedule: 'onecycle' (warm-up, then cosine decay), "
                   f"'cosine' or 'constant' (default: {_RECIPE['schedule']}).")
@click.option("--warmup", type=click.FloatRange(0, 0.5), default=_TRAIN.warmup,
              show_default=True, help="Share of the steps spent warming up (onecycle).")
@click.option("--monitor", type=click.Choice(MONITORS), default=_TRAIN.monitor,
              help="Validation figure for early stopping and the kept epoch (default: "
                   f"{_RECIPE['monitor']}).")
@click.option("--final", type=click.Choice(FINALS), default=_TRAIN.final,
              help="Final model: the 'ensemble' of the fold models (averaged "
                   "probabilities, one file) or 'retrain' on all development tiles "
                   f"(default: {_RECIPE['final']}).")
@click.option("--folds", type=click.IntRange(2), default=_TRAIN.folds, show_default=True,
              help="Cross-validation folds.")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True),
              default=_TRAIN.test_fraction, show_default=True,
              help="Share of tiles held out for test, drawn by groups.")
@click.option("--tile-size", type=click.IntRange(SMALLEST_TILE_SIZE), default=_TRAIN.tile_size,
              help="Network input side: tiles or patches are resized to it (default: "
                   "their own size).")
@click.option("--max-tiles", type=click.IntRange(2), default=_TRAIN.max_tiles,
              help="Use at most this many tiles (seeded, stratified by class).")
@click.option("--threads", type=click.IntRange(1), default=_TRAIN.threads,
              help="torch threads (default: the CPU cores).")
@click.option("--device", default=_TRAIN.device,
              help="cpu, cuda or cuda:N (default: CUDA when present).")
@click.option("--augment", default=_TRAIN.augment, show_default=True,
              help="Augmentations of training tiles, comma-separated: flip (flips and "
                   "90-degree rotations), colour (HED/HSV jitter, brightness, contrast), "
                   "blur.")
@click.option("--no-augment", is_flag=True,
              help="No augmentation (same as --augment none).")
@click.option("--stain-normalise", "stain", type=click.Choice(STAIN_METHODS),
              default=_TRAIN.stain,
              help="For an image folder: fit a stain normaliser to its images (or to "
                   "--stain-reference) and normalise every training and predicted tile "
                   "with it (a manifest's comes from 'histotile tile').")
@click.option("--stain-reference", type=click.Path(exists=True, dir_okay=False),
              default=_TRAIN.stain_reference, help="Reference image of that normaliser.")
@click.option("--positive-class", default=_TRAIN.positive_class,
              help="The class to detect, written to the model card (default: the one "
                   "given to 'tile'; required for two classes whose order comes from the "
                   "data, e.g. an image folder's sorted folder names).")
@click.option("--operating-point", default=_TRAIN.operating_point, show_default=True,
              help="How the positive class's threshold is chosen on the out-of-fold "
                   "predictions: balanced (maximum balanced accuracy), youden (maximum "
                   "TPR - FPR, the same for two classes), sensitivity=0.9, "
                   "specificity=0.9, or a fixed threshold such as 0.5.")
@click.option("--calibrate/--no-calibrate", default=_TRAIN.calibrate, show_default=True,
              help="Fit a temperature on the out-of-fold predictions; the model card "
                   "records it and prediction applies it.")
@click.option("--default-class", default=_TRAIN.default_class,
              help="Label of unannotated tiles, written to the model card (default: the "
                   "one given to 'tile', else the first class).")
@click.option("--group-column", default=_TRAIN.group_column, show_default=True,
              help="Manifest column to group folds by (slide or patient).")
@click.option("--group-by", default=_TRAIN.group_by,
              help="Group folds and the test split by 'patient' (parsed from file names; "
                   f"BreakHis by default), 'slide', 'region' ({REGION}-px cells of one "
                   "slide) or a manifest COLUMN.")
@click.option("--group-pattern", default=_TRAIN.group_pattern,
              help="Regular expression with a named group 'group' finding the patient in "
                   "file names, e.g. '^(?P<group>[^_]+)_'.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False),
              default=_TRAIN.weights,
              help="Local pretrained weights file (nothing is ever downloaded).")
@click.option("--patchify", "patch_size", type=click.IntRange(SMALLEST_TILE_SIZE),
              default=_TRAIN.patch_size,
              help="For an image folder: cut each image into patches of this side (px).")
@click.option("--patch-stride", type=click.IntRange(1), default=_TRAIN.patch_stride,
              help="Step between patches (px; default: the patch size, i.e. no overlap; "
                   "225 at 117 gives 15 patches of a 700x460 image).")
@click.option("--seed", type=int, default=_TRAIN.seed, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=_PLACEMENT.workers,
              help="Train the folds (then the final model) as tasks on a local Dask cluster "
                   "of this many worker processes.")
@click.option("--scheduler", default=_PLACEMENT.scheduler,
              help="Train the folds on a running Dask cluster, e.g. tcp://host:8786.")
@click.option("--retries", type=click.IntRange(0), default=_PLACEMENT.retries,
              show_default=True, help="Extra attempts for a fold whose Dask worker crashed.")
@click.option("--ddp", type=click.IntRange(1), default=_PLACEMENT.ddp,
              help="Train each model data-parallel on this many processes of this machine "
                   "(torchrun; gloo on CPU, NCCL on CUDA).")
@click.option("--ddp-timeout", type=click.FloatRange(1), default=_PLACEMENT.ddp_timeout,
              show_default=True,
              help="Seconds a rank waits for the others before the job fails.")
@overwrite_option
@config_option
@handle_errors
@settings_option(TrainPlacement, "placement")
@settings_option(TrainSettings, build=train_settings)
def train(data: str, out_dir: str, settings: TrainSettings, placement: TrainPlacement,
          no_augment: bool, overwrite: bool) -> None:
    """Train a tile classifier with grouped, stratified cross-validation."""
    from histotile.workflows.training.parallel import train_command

    if no_augment:
        settings = dataclasses.replace(settings, augment="none")
    train_command(data, out_dir, settings, placement, overwrite=overwrite,
                  argv=sys.argv[1:])


@click.command("evaluate-images", epilog=examples("evaluate-images"),
               help=f"""Image-level decisions by patch majority and the threshold table: for
    t = {THRESHOLDS[0]:.2f} ... {THRESHOLDS[-1]:.2f}, accuracy, sensitivity and specificity of
    "an image is positive when at least t of its patches are" (>= t, the rule slide
    decisions use too). FOLDER holds one sub-folder of images per class.""")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for images.csv, thresholds.csv/.md and thresholds.png.")
@click.option("--positive-class", default=_IMAGES.positive_class,
              help="The class called positive (default: the model card's).")
@click.option("--patchify", "patch_size", type=click.IntRange(SMALLEST_TILE_SIZE),
              default=_IMAGES.patch_size,
              help="Patch side in pixels (default: as the model was trained).")
@click.option("--patch-stride", type=click.IntRange(1), default=_IMAGES.patch_stride,
              help="Step between patches (default: as trained, else the patch size).")
@click.option("--threshold", "tile_threshold", type=click.FloatRange(0, 1),
              default=_IMAGES.tile_threshold,
              help="Probability from which a patch is positive (default: the model "
                   f"card's operating point, else {DEFAULT_TILE_THRESHOLD:g}).")
@click.option("--tta", is_flag=True, default=_IMAGES.tta,
              help="Test-time augmentation: average each patch's 8 flips and rotations.")
@click.option("--target-sensitivity", type=click.FloatRange(0, 1),
              default=_IMAGES.target_sensitivity, show_default=True,
              help="Choose the highest t whose sensitivity reaches this.")
@click.option("--batch-size", type=click.IntRange(1), default=_IMAGES.batch_size,
              help="Patches per inference batch (default: the model's).")
@config_option
@handle_errors
@settings_option(ImageEvaluationSettings)
def evaluate_images(model_dir: str, folder: str, out_dir: str,
                    settings: ImageEvaluationSettings) -> None:
    from histotile.workflows.tasks.image_evaluation import evaluate_image_folder

    evaluate_image_folder(model_dir, folder, out_dir, settings)
