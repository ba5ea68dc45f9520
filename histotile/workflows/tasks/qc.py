"""``histotile qc``: quality control of a batch of slides before training: per slide a
QC picture (``OUT/<slide>/qc.png``) and record; for the batch ``OUT/qc-report.csv`` and
``.json`` (tissue/pen/blur/fold fractions and the pass/warn/fail flag of every slide)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from histotile.workflows.slide_options import QCOptions
from histotile.workflows.tasks.execution import Execution
from histotile.workflows.tasks.report import SlideRecord


def qc_task(slide_path: str, out_dir: str, options: QCOptions | None = None
            ) -> dict[str, Any]:
    """QC of one slide (resumable like every per-slide task): the picture and the record
    (``area_fractions``: the fractions, blur left out when it could not be judged;
    ``decision``: the flag; ``extra``: the reasons and the settings)."""
    from histotile._settings import required
    from histotile.tiling.qc import slide_qc, write_picture
    from histotile.workflows.tasks.resumable import resumable

    options = options or QCOptions()
    settings = options.qc

    def work(outputs, _prepared) -> dict[str, Any]:
        result = slide_qc(slide_path, settings)
        picture = write_picture(required(result.picture, "the QC picture"),
                                outputs.path("qc.png"))
        fractions = {k: v for k, v in result.fractions.items() if not math.isnan(v)}
        return {"area_fractions": fractions, "decision": result.flag,
                "warning": _unmeasured_blur(result, settings),
                "outputs": {"qc_picture": str(picture)},
                "extra": {"reasons": result.reasons, "view_mpp": result.view_mpp,
                          "qc": settings.to_dict()}}

    return resumable("qc", slide_path, out_dir, options.overwrite, settings.to_dict(), work)


def _unmeasured_blur(result, settings) -> str | None:
    """Why ``fraction_blur`` is missing from a slide's record (None when it was measured
    or not asked for): never left out in silence."""
    if settings.blur_tiles == 0 or not math.isnan(result.fractions.get("blur", 0.0)):
        return None
    if result.view_mpp is None:
        return ("blur not measured: the slide records no microns per pixel, and focus is "
                "judged on tiles read at about 1 um/px (no fraction_blur; convert the slide "
                "to a format that records its scale to have focus checked)")
    return ("blur not measured: no part of the tissue is large enough for a focus tile of "
            f"{settings.blur_tile_um:g} um (no fraction_blur)")


def qc_batch(slides: Iterable[str | Path], out_dir: str | Path,
             options: QCOptions | None = None, execution: Execution | None = None,
             show_progress: bool = True) -> list[SlideRecord]:
    """QC every slide; return the records (write the report with
    :func:`~histotile.workflows.tasks.report.write_report`)."""
    from histotile.workflows.tasks.batch import resolve_slides, run_jobs

    jobs = [{"slide_path": str(p), "out_dir": str(out_dir), "options": options or QCOptions()}
            for p in resolve_slides(slides)]
    return run_jobs(qc_task, jobs, execution, "qc", show_progress)
