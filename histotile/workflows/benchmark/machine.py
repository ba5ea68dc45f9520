"""What ran the benchmark: CPU, cores, memory, GPU, and the versions that matter."""

from __future__ import annotations

import datetime
import os
import platform
from importlib import metadata
from typing import Any

from histotile import __version__
from histotile._threads import available_cores


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe_machine(measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The machine, from this process and from what the stages reported: the device the
    networks ran on and, on CUDA, the GPU's name."""
    devices = sorted({str(r["device"]) for r in measured.values() if r.get("device")})
    gpus = sorted({str(r["gpu_name"]) for r in measured.values() if r.get("gpu_name")})
    return {"date": datetime.date.today().isoformat(), "cpu": _cpu_model(),
            "cores": available_cores(), "memory_gib": _memory_gib(),
            "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "histotile": __version__,
            "torch": _version("torch"), "openslide": _version("openslide-bin"),
            "network_devices": devices, "gpus": gpus}
