"""A two-stage pipeline for prediction: batch k+1 is prepared (stain-normalised) in one
background thread while the network runs batch k on the caller's thread.

Why a thread and not a process: the preparation is numpy and OpenCV, which release the
GIL in their array loops, and a process would copy every batch twice. Why only one batch
ahead: memory stays at two prepared batches whatever the tile count, and the network,
not the queue, sets the pace. Hand-written (a dozen lines around
:class:`concurrent.futures.ThreadPoolExecutor`) because no maintained library offers an
ordered, bounded, exception-propagating map of two stages that is any shorter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Prepared = TypeVar("Prepared")
Result = TypeVar("Result")


def overlapped(items: Sequence[Item], prepare: Callable[[Item], Prepared],
               run: Callable[[Prepared], Result]) -> list[Result]:
    """``[run(prepare(item)) for item in items]``, in order, with ``prepare`` of the next
    item in one worker thread while ``run`` works on the current one on this thread.

    An exception in either stage reaches the caller (after the worker has finished the
    one item it may be preparing: no thread outlives the call). ``prepare`` of the first
    item cannot overlap anything, so a single item runs without a thread."""
    if len(items) < 2:
        return [run(prepare(item)) for item in items]
    results = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="histotile-prepare") as pool:
        pending = pool.submit(prepare, items[0])
        for item in items[1:]:
            ready = pending.result()
            pending = pool.submit(prepare, item)
            results.append(run(ready))
        results.append(run(pending.result()))
    return results
