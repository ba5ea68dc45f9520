"""The number of threads histotile may keep busy in this process.

A Dask worker process that was given one thread must use one core, or two workers on
two cores fight over them: readers, compressors and torch all ask here. Set
``HISTOTILE_THREADS`` to fix the budget (histotile's local clusters set it per worker);
otherwise it is every core this process may run on.
"""

from __future__ import annotations

import os

ENVIRONMENT = "HISTOTILE_THREADS"


def available_cores() -> int:
    """Cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def thread_budget() -> int:
    """Threads histotile may keep busy: ``HISTOTILE_THREADS`` when set, else the cores."""
    value = os.environ.get(ENVIRONMENT, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            pass
    return available_cores()
