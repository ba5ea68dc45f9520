"""The options of ``histotile serve``, typed once at the edge."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histotile._settings import refuse_unknown
from histotile.errors import ConfigError

LOOPBACK = "127.0.0.1"


@dataclass
class ServeSettings:
    """How ``histotile serve`` runs.

    Attributes:
        roots: files or folders whose slides the server may show; nothing outside them.
        results: a results folder of ``histotile run`` (``<slide>/predictions.csv``...),
            and where jobs started from the page write.
        model: a model folder for the classify page, ``:predict`` and jobs.
        host, port: where to listen (loopback by default).
        token: bearer token every request must carry (required off loopback, unless
            ``insecure``).
        insecure: allow listening off loopback without a token.
        public_metrics: serve ``/metrics`` without the token (``/healthz`` and ``/readyz``
            never need it).
        max_upload_mb: uploads above this many megabytes get 413.
        max_pixels: decoded images above this many pixels get 413.
        tile_cache_mb: memory for recently served Deep Zoom tiles (JPEG bytes).
        tile_size, overlap: Deep Zoom tile side and overlap (px); 254 + 2 x 1 = 256.
        jpeg_quality: quality of served tiles (1-100).
        threshold: the tile threshold of the classify service (probability; None: the
            model card's operating point, else
            :data:`~histotile.models.operating_point.DEFAULT_TILE_THRESHOLD`).
        tile_threads: threads that read slides and encode tiles (off the event loop);
            None: one per core (``HISTOTILE_THREADS`` when set), as the work is
            JPEG decoding and encoding that release the GIL.
    """

    roots: list[Path] = field(default_factory=list)
    results: Path | None = None
    model: Path | None = None
    host: str = LOOPBACK
    port: int = 8000
    token: str | None = None
    insecure: bool = False
    public_metrics: bool = False
    max_upload_mb: float = 50.0
    max_pixels: int = 50_000_000
    tile_cache_mb: float = 64.0
    tile_size: int = 254
    overlap: int = 1
    jpeg_quality: int = 80
    threshold: float | None = None
    tile_threads: int | None = None

    def __post_init__(self) -> None:
        self.roots = [Path(r) for r in self.roots]
        self.results = Path(self.results) if self.results is not None else None
        self.model = Path(self.model) if self.model is not None else None

    def validate(self) -> ServeSettings:
        """Raise :class:`ConfigError` naming the first bad option; return self."""
        if not self.roots:
            raise ConfigError("serve: give the slide files or folders to serve (PATHS)")
        for root in self.roots:
            if not root.exists():
                raise ConfigError(f"{root}: no such file or folder (check the path)")
        if self.results is not None and self.results.exists() and not self.results.is_dir():
            raise ConfigError(f"{self.results}: --results must be a folder")
        if self.model is not None and not (self.model / "model_card.json").is_file():
            raise ConfigError(f"{self.model}: not a model folder (no model_card.json); pass "
                              "a folder written by 'histotile train'")
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port {self.port}: use 1-65535")
        if not self.is_loopback() and not self.token and not self.insecure:
            raise ConfigError(f"--host {self.host}: listening beyond this machine needs "
                              "--token SECRET (clients send 'Authorization: Bearer SECRET') "
                              "or an explicit --insecure")
        for name in ("max_upload_mb", "tile_cache_mb"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_pixels < 1 or (self.tile_threads is not None and self.tile_threads < 1):
            raise ConfigError("max_pixels and tile_threads must be at least 1")
        if self.tile_size < 16 or not 0 <= self.overlap < self.tile_size // 2:
            raise ConfigError(f"tile_size {self.tile_size} / overlap {self.overlap}: use a "
                              "tile of at least 16 px and an overlap under half of it")
        if not 1 <= self.jpeg_quality <= 100 or not 0 <= (self.threshold or 0) <= 1:
            raise ConfigError("jpeg_quality must be 1-100 and threshold 0-1")
        return self

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ServeSettings:
        """Settings from a plain dict; unknown keys are refused."""
        refuse_unknown(cls, values, "serve")
        return cls(**values)
