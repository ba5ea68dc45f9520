"""Where ``histotile serve`` finds its static files: the pages and the vendored viewer.

A leaf module (imports nothing of histotile), so the app and the page routes share it."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
VENDOR = STATIC / "vendor" / "openseadragon" / "openseadragon.min.js"
