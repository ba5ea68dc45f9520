"""Helpers of the Dask worker-loss tests: killing the worker that runs a given task."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any


def kill_workers_running(client: Any, match: str, stop: threading.Event,
                         kills: list[str], limit: int, delay: float = 0.0) -> None:
    """SIGKILL the worker process running a task whose key contains ``match``, each
    worker at most once (a restarted worker comes back under a new address), until
    ``limit`` kills or ``stop``; ``delay`` seconds between finding the worker and the
    kill (to let the task get under way). Every kill's address goes into ``kills``."""
    while not stop.is_set() and len(kills) < limit:
        try:
            for address, keys in client.processing().items():
                if address not in kills and any(match in str(k) for k in keys):
                    pid = client.run(os.getpid, workers=[address])[address]
                    time.sleep(delay)
                    os.kill(pid, signal.SIGKILL)
                    kills.append(address)
                    break
        except Exception:  # noqa: BLE001 - the cluster is in flux while workers die
            pass
        time.sleep(0.01)
