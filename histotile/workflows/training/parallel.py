"""``histotile train`` beyond one process: folds on a Dask cluster (``--workers``,
``--scheduler``), one model data-parallel on ``torch.distributed`` ranks (started by
``torchrun ... -m histotile train``, or by ``--ddp N`` on this machine)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from histotile._atomic import check_writable
from histotile._threads import available_cores
from histotile.errors import ConfigError, ModelError

#: Options of the train command that say where training runs (not training settings).
PLACEMENT_KEYS = ("workers", "scheduler", "retries", "ddp", "ddp_timeout")


def train_command(data: str | Path, out_dir: str | Path, options: dict[str, Any],
                  argv: list[str] | None = None) -> Any:
    """The ``train`` command: pick the engine from ``options`` (and torchrun's
    environment), then train. ``argv``: the command line, for ``--ddp`` to relaunch."""
    from histotile.models.distributed import RankInfo
    from histotile.workflows.tasks.batch import train_model
    from histotile.workflows.tasks.execution import Execution
    from histotile.workflows.training.cluster import fold_runner

    placement = {k: options.pop(k, None) for k in PLACEMENT_KEYS}
    ddp, info = placement["ddp"], RankInfo.from_environment()
    execution = Execution(scheduler=placement["scheduler"], workers=placement["workers"],
                          retries=2 if placement["retries"] is None else placement["retries"])
    if (ddp or info is not None) and execution.distributed:
        raise ConfigError("--ddp (or torchrun) trains one model on several processes; "
                          "--workers/--scheduler spread the folds over a Dask cluster: "
                          "choose one")
    timeout = float(placement["ddp_timeout"] or 600.0)
    if info is not None:
        return run_rank(data, out_dir, options, info, timeout)
    if ddp and ddp > 1:
        if argv is None:
            raise ConfigError("--ddp relaunches the command line; from Python, start "
                              "torchrun yourself")
        check_writable(out_dir, bool(options.get("overwrite")))  # before starting ranks
        return launch(ddp, argv)
    with fold_runner(execution) as runner:
        return train_model(data, out_dir, options, fold_runner=runner)


def run_rank(data: str | Path, out_dir: str | Path, options: dict[str, Any], info: Any,
             timeout_s: float) -> Any:
    """This process as one rank of a torchrun job. Rank 0 writes ``out_dir``; the
    other ranks write theirs to a temporary folder, deleted at the end."""
    from histotile.models import distributed
    from histotile.workflows.tasks.batch import train_model

    # Each rank gets its share of the machine's cores unless told otherwise.
    os.environ.setdefault("HISTOTILE_THREADS",
                          str(max(1, available_cores() // max(1, info.local_world_size))))
    parallel = distributed.start(info, options.get("device"), timeout_s)
    scratch = None
    if info.rank != 0:
        scratch = Path(tempfile.mkdtemp(prefix=f"histotile-rank{info.rank}-"))
        out_dir = scratch / "model"
    try:
        # On CUDA the rank's device is the current one (distributed.start chose it), which
        # device=None (and "cuda") resolves to.
        return train_model(data, out_dir, options, show_progress=info.rank == 0,
                           fold_runner=distributed.DistributedFolds(parallel))
    except Exception as error:
        if isinstance(error, RuntimeError):  # a collective that failed or timed out
            error = ModelError(f"rank {info.rank} of {info.world_size}: data-parallel "
                               f"training stopped ({str(error).splitlines()[0]}); another "
                               "rank failed or stopped answering")
        _tell_torchrun(error)
        raise error from None
    finally:
        distributed.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _tell_torchrun(error: BaseException) -> None:
    """Write the error where torchrun collects a failed rank's message (the file named by
    ``TORCHELASTIC_ERROR_FILE``; nothing without one)."""
    if os.environ.get("TORCHELASTIC_ERROR_FILE"):
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(error)


def launch(processes: int, argv: list[str]) -> None:
    """Run the same command line as ``processes`` ranks on this machine through
    torchrun (``torch.distributed.run``); a failed rank ends the others and is named in
    the :class:`ModelError`."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("HISTOTILE_THREADS", str(max(1, available_cores() // processes)))
    os.environ.setdefault("OMP_NUM_THREADS", os.environ["HISTOTILE_THREADS"])
    args = get_args_parser().parse_args(
        ["--standalone", "--nproc-per-node", str(processes), "--module", "histotile",
         *argv])
    try:
        run(args)
    except ChildFailedError as error:
        rank, failure = error.get_first_failure()
        message = failure.message
        if isinstance(message, dict):  # torchrun's error-file record
            message = message.get("message", "")
        lines = str(message or "").strip().splitlines()
        detail = lines[-1] if lines else f"exit code {failure.exitcode}"
        raise ModelError(f"data-parallel training on {processes} processes failed: rank "
                         f"{rank} stopped ({detail}); the other ranks were ended") from None
