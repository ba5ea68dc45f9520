"""The ``histotile train`` and ``histotile evaluate-images`` commands (registered on the
one ``cli`` group in :mod:`histotile.workflows.cli.main`)."""

from __future__ import annotations

import sys
from typing import Any

import click

from histotile.models.settings import BALANCES, FINALS, MONITORS, OPTIMIZERS, SCHEDULES
from histotile.workflows.cli.options import (
    config_option,
    examples,
    handle_errors,
    overwrite_option,
)


@click.command(epilog=examples("train"))
@click.argument("data", type=click.Path(exists=True))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Model folder to write (weights, model card, metrics, plots, log).")
@click.option("--model", default=None,
              help="tilenet (the default: a compact CNN for tiles and patches from 16 px), "
                   "lenet, squeezenet, resnet18, alexnet or shufflenet_v2.")
@click.option("--backend", type=click.Choice(["torch", "mxnet"]), default="torch",
              show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=None)
@click.option("--batch-size", type=click.IntRange(1), default=None)
@click.option("--lr", type=float, default=None,
              help="Peak learning rate (default: the model's; 3e-3 for tilenet).")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
              help="Optimiser (default: adamw for tilenet, adam for lenet, sgd for the "
                   "torchvision nets).")
@click.option("--patience", type=click.IntRange(0), default=None,
              help="Early stopping: epochs without a better validation figure (--monitor; "
                   "default 5; 0 disables it).")
@click.option("--balance", type=click.Choice(BALANCES), default=None,
              help="Class balance: loss 'weights' (default), a balanced 'sampler', or "
                   "'none'.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=None,
              help="Learning-rate schedule: 'onecycle' (warm-up, then cosine decay; "
                   "default), 'cosine' or 'constant'.")
@click.option("--warmup", type=click.FloatRange(0, 0.5), default=None,
              help="Share of the steps spent warming up (onecycle; default 0.2).")
@click.option("--monitor", type=click.Choice(MONITORS), default=None,
              help="Validation figure for early stopping and the kept epoch (default "
                   "balanced_accuracy).")
@click.option("--final", type=click.Choice(FINALS), default=None,
              help="Final model: the 'ensemble' of the fold models (default; averaged "
                   "probabilities, one file) or 'retrain' on all development tiles.")
@click.option("--folds", type=click.IntRange(2), default=None,
              help="Cross-validation folds (default 4).")
@click.option("--test-fraction", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Share of tiles held out for test, drawn by groups (default 0.2).")
@click.option("--tile-size", type=click.IntRange(8), default=None,
              help="Network input side: tiles or patches are resized to it (default: "
                   "their own size).")
@click.option("--max-tiles", type=click.IntRange(2), default=None,
              help="Use at most this many tiles (seeded, stratified by class).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="torch threads (default: the CPU cores).")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when "
                                             "present).")
@click.option("--augment", default=None,
              help="Augmentations of training tiles, comma-separated: flip (flips and "
                   "90-degree rotations), colour (HED/HSV jitter, brightness, contrast), "
                   "blur (default: flip,colour).")
@click.option("--no-augment", is_flag=True, default=None,
              help="No augmentation (same as --augment none).")
@click.option("--stain-normalise", "stain", type=click.Choice(["macenko", "reinhard"]),
              default=None,
              help="For an image folder: fit a stain normaliser to its images (or to "
                   "--stain-reference) and normalise every training and predicted tile "
                   "with it (a manifest's comes from 'histotile tile').")
@click.option("--stain-reference", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Reference image of that normaliser.")
@click.option("--positive-class", default=None,
              help="The class to detect, written to the model card (default: the one "
                   "given to 'tile'; required for two classes whose order comes from the "
                   "data, e.g. an image folder's sorted folder names).")
@click.option("--operating-point", default=None,
              help="How the positive class's threshold is chosen on the out-of-fold "
                   "predictions: balanced (default; maximum balanced accuracy), youden "
                   "(maximum TPR - FPR, the same for two classes), sensitivity=0.9, "
                   "specificity=0.9, or a fixed threshold such as 0.5.")
@click.option("--calibrate/--no-calibrate", default=None,
              help="Fit a temperature on the out-of-fold predictions; the model card "
                   "records it and prediction applies it (default off).")
@click.option("--default-class", default=None,
              help="Label of unannotated tiles, written to the model card (default: the "
                   "one given to 'tile', else the first class).")
@click.option("--group-column", default=None,
              help="Manifest column to group folds by (default 'group': slide or patient).")
@click.option("--group-by", default=None,
              help="Group folds and the test split by 'patient' (parsed from file names; "
                   "BreakHis by default), 'slide', 'region' (512-px cells of one slide) or "
                   "a manifest COLUMN.")
@click.option("--group-pattern", default=None,
              help="Regular expression with a named group 'group' finding the patient in "
                   "file names, e.g. '^(?P<group>[^_]+)_'.")
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Local pretrained weights file (nothing is ever downloaded).")
@click.option("--patchify", "patch_size", type=click.IntRange(16), default=None,
              help="For an image folder: cut each image into patches of this side (px).")
@click.option("--patch-stride", type=click.IntRange(1), default=None,
              help="Step between patches (px; default: the patch size, i.e. no overlap; "
                   "225 at 117 gives 15 patches of a 700x460 image).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Train the folds (then the final model) as tasks on a local Dask cluster "
                   "of this many worker processes.")
@click.option("--scheduler", default=None,
              help="Train the folds on a running Dask cluster, e.g. tcp://host:8786.")
@click.option("--retries", type=click.IntRange(0), default=2, show_default=True,
              help="Extra attempts for a fold whose Dask worker crashed.")
@click.option("--ddp", type=click.IntRange(1), default=None,
              help="Train each model data-parallel on this many processes of this machine "
                   "(torchrun; gloo on CPU, NCCL on CUDA).")
@click.option("--ddp-timeout", type=click.FloatRange(1), default=600, show_default=True,
              help="Seconds a rank waits for the others before the job fails.")
@overwrite_option
@config_option
@handle_errors
def train(data: str, out_dir: str, **options: Any) -> None:
    """Train a tile classifier with grouped, stratified cross-validation."""
    from histotile.workflows.training.parallel import train_command

    extra = click.get_current_context().meta.get("histotile.train_settings") or {}
    train_command(data, out_dir, {**extra, **options}, argv=sys.argv[1:])


@click.command("evaluate-images", epilog=examples("evaluate-images"))
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Folder for images.csv, thresholds.csv/.md and thresholds.png.")
@click.option("--positive-class", default=None,
              help="The class called positive (default: the model card's).")
@click.option("--patchify", "patch_size", type=click.IntRange(16), default=None,
              help="Patch side in pixels (default: as the model was trained).")
@click.option("--patch-stride", type=click.IntRange(1), default=None,
              help="Step between patches (default: as trained, else the patch size).")
@click.option("--threshold", "tile_threshold", type=click.FloatRange(0, 1), default=None,
              help="Probability from which a patch is positive (default: the model "
                   "card's operating point, else 0.5).")
@click.option("--tta", is_flag=True, default=None,
              help="Test-time augmentation: average each patch's 8 flips and rotations.")
@click.option("--target-sensitivity", type=click.FloatRange(0, 1), default=1.0,
              show_default=True, help="Choose the highest t whose sensitivity reaches this.")
@click.option("--batch-size", type=click.IntRange(1), default=None)
@config_option
@handle_errors
def evaluate_images(model_dir: str, folder: str, out_dir: str, **options: Any) -> None:
    """Image-level decisions by patch majority and the threshold table: for t = 0.10 ...
    0.90, accuracy, sensitivity and specificity of "an image is positive when at least t
    of its patches are" (>= t, the rule slide decisions use too). FOLDER holds one
    sub-folder of images per class."""
    from histotile.workflows.tasks.batch import evaluate_image_folder

    evaluate_image_folder(model_dir, folder, out_dir, options)
