"""The benchmark's measurements: each pipeline stage through histotile's public API, and the
baseline it is compared with, measured in the same run.

The stages live by job in :mod:`.stage_tiling` (tissue detection, tiling),
:mod:`.stage_networks` (training, prediction) and :mod:`.stage_heatmap`; this module is
their table (:data:`STAGES`) and runs one (:func:`run_stage`). Each stage runs in a fresh
child process (see :mod:`.child`), takes a dict of plain parameters and returns a dict of
plain results; the caller adds the wall and CPU time of the section the stage timed with
its :class:`Meter`, and the process's peak memory.
Setup that a user pays once per process (imports, the tissue colour table, loading the
model) stays outside the timed section.

Baselines (as the tiling, models and postprocess issues name them):

* tissue detection, tiling: plain OpenSlide reads of the same pixels (the mask's level;
  the blocks the tiler reads, in as many processes);
* training, prediction: the bare network (forward, or forward + backward + optimiser
  step) on a ready-made tensor on the same device, its steady rate extrapolated to the
  stage's tile count;
* heatmap: an OpenSlide read of level 0 in full-width bands, as the renderer reads it.
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from typing import Any

from histotile.workflows.benchmark.inputs import TILE, tiling_settings
from histotile.workflows.benchmark.meter import Meter, own_peak_rss_mib
from histotile.workflows.benchmark.stage_heatmap import heatmap, heatmap_baseline
from histotile.workflows.benchmark.stage_networks import (
    predict,
    predict_baseline,
    train_baseline,
    train_epoch,
    untrained_model,
)
from histotile.workflows.benchmark.stage_tiling import (
    read_plan,
    read_rects,
    tiling,
    tiling_baseline,
    tissue,
    tissue_baseline,
)

# Names the per-stage scripts in benchmarks/ import from here.
__all__ = ["STAGES", "TILE", "Meter", "read_plan", "read_rects", "run_stage",
           "tiling_settings", "untrained_model"]

STAGES: dict[str, Callable[[dict, Meter], dict]] = {
    "tissue": tissue, "tissue_baseline": tissue_baseline,
    "tiling": tiling, "tiling_baseline": tiling_baseline,
    "train": train_epoch, "train_baseline": train_baseline,
    "predict": predict, "predict_baseline": predict_baseline,
    "heatmap": heatmap, "heatmap_baseline": heatmap_baseline,
}


def run_stage(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in this process; adds ``seconds``, ``cpu_seconds`` (the timed
    section) and the peak resident memory of this process and of its largest child (whose
    inherited mark is at most this process's own peak, so the larger of the two is
    exact)."""
    meter = Meter()
    result = STAGES[name](params, meter)
    own = own_peak_rss_mib()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    result.update(seconds=meter.seconds, cpu_seconds=meter.cpu_seconds,
                  peak_rss_mib=own, peak_rss_children_mib=children)
    torch = sys.modules.get("torch")  # only stages that ran a network imported it
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu_name"] = torch.cuda.get_device_name()
    return result
