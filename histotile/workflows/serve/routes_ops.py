"""Operations: ``/healthz`` (the process answers), ``/readyz`` (the model is loaded and the
slides are readable) and ``/metrics`` (Prometheus text, prometheus-client), and the ASGI
middleware that measures every request.

The middleware is the outermost layer of the app. Health probes go from it straight to
the router, past the token (an orchestrator's probe carries none); so does ``/metrics``
with ``public_metrics``, otherwise it needs the token like every other route. Metrics
live in a registry of their own per app (never prometheus-client's global one), so two
apps in one process count separately.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from histotile.workflows.serve.security import HEADERS

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"
# Route templates whose 200 answers are counted as tiles served and as classifications.
TILE_ROUTE = "/slides/{slide}_files/{level}/{col}_{row}.jpeg"
CLASSIFY_ROUTES = ("/api/classify", "/v1/models/{name}:predict")
JOB_STATES = ("queued", "running", "done", "failed")
# Request latency buckets (seconds): cached tiles take well under a millisecond, a
# classification of a large upload seconds.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            10.0, 30.0)

router = APIRouter(tags=["operations"])


class Metrics:
    """The service's Prometheus metrics (names end in ``_total`` / ``_seconds``)."""

    def __init__(self, jobs: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("histotile_http_requests", "HTTP requests by route template, "
                                "method and status", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("histotile_http_request_duration_seconds",
                                 "Time to answer a request (seconds), by route template",
                                 ["route", "method"], buckets=_BUCKETS, registry=self.registry)
        self.tiles = Counter("histotile_tiles_served", "Deep Zoom tiles served (200 answers)",
                             registry=self.registry)
        self.classifications = Counter("histotile_classifications", "Classification requests "
                                       "answered (200) by route: /api/classify one image, "
                                       ":predict one or more", ["route"],
                                       registry=self.registry)
        self.registry.register(_RunsCollector(jobs))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)
        if status == 200:
            if route == TILE_ROUTE:
                self.tiles.inc()
            elif route in CLASSIFY_ROUTES:
                self.classifications.labels(route).inc()


class _RunsCollector:
    """``histotile_runs{state}``: the service's run jobs by state, read at each scrape."""

    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        counts = dict.fromkeys(JOB_STATES, 0)
        for job in self.jobs.all() if self.jobs is not None else []:
            counts[job.state] = counts.get(job.state, 0) + 1
        family = GaugeMetricFamily("histotile_runs", "Run jobs of the service by state",
                                   labels=["state"])
        for state, count in counts.items():
            family.add_metric([state], count)
        yield family


class ModelLoader:
    """Loads the served model once, in a thread, the first time readiness is asked."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def state(self) -> str:
        """``none`` (no model served), ``loading``, ``loaded`` or ``failed``."""
        if self.classifier is None:
            return "none"
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._load, daemon=True,
                                                name="histotile-model-load")
                self._thread.start()
            if self._thread.is_alive():
                return "loading"
        return "failed" if self.error is not None else "loaded"

    def _load(self) -> None:
        try:
            _ = self.classifier.predictor
        except Exception as error:  # noqa: BLE001 - reported by /readyz, never raised
            self.error = f"{type(error).__name__}: {error}"


def _readable(root: Path) -> str | None:
    """None when ``root`` can be read (a folder listed), else why not."""
    try:
        if root.is_dir():
            with os.scandir(root) as entries:
                next(entries, None)
        else:
            with open(root, "rb") as handle:
                handle.read(1)
    except OSError as error:
        return f"{root}: {error.strerror or error}"
    return None


def ready_response(state: Any, ops: Ops) -> JSONResponse:
    """200 when ready, else 503; ``checks`` says what was found."""
    model = ops.loader.state()
    problems = [p for p in map(_readable, state.settings.roots) if p is not None]
    checks: dict[str, Any] = {"model": model, "slides": problems or "readable"}
    if model == "failed":
        checks["model_error"] = ops.loader.error
    ready = model in ("none", "loaded") and not problems
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


def metrics_response(ops: Ops) -> Response:
    """The metrics in Prometheus' text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(ops.metrics.registry), media_type=CONTENT_TYPE_LATEST)


# The routes document the endpoints (OpenAPI) and answer /metrics behind the token; the
# open paths are answered by OpsMiddleware with the same functions, before the token check.
@router.get(HEALTH_PATH)
def healthz() -> dict[str, str]:
    """The process is up and answering (liveness). Needs no token."""
    return {"status": "ok"}


@router.get(READY_PATH, responses={503: {"description": "not ready; `checks` says why"}})
def readyz(request: Request) -> JSONResponse:
    """Ready for traffic: the model (when one is served) is loaded and every slide root is
    readable. 503 until then; the first call starts loading the model. Needs no token."""
    return ready_response(request.app.state.histotile, request.app.state.histotile_ops)


@router.get(METRICS_PATH, response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests and latency by route template, tiles served,
    classifications, run jobs by state. Needs the token unless ``--public-metrics``."""
    return metrics_response(request.app.state.histotile_ops)


class Ops:
    """What the operations routes share: the metrics and the model loader."""

    def __init__(self, state: Any) -> None:
        self.metrics = Metrics(state.jobs)
        self.loader = ModelLoader(state.classifier)


class OpsMiddleware:
    """Outermost ASGI layer: times and counts every HTTP request by its route template;
    answers GETs of the health probes (and of ``/metrics`` when public) itself, before
    the token check."""

    def __init__(self, app: Any, state: Any, ops: Ops, public_metrics: bool) -> None:
        self.app = app
        self.metrics = ops.metrics
        self.answers: dict[str, Callable[[], Response]] = {
            HEALTH_PATH: lambda: JSONResponse(healthz()),
            READY_PATH: lambda: ready_response(state, ops)}
        if public_metrics:
            self.answers[METRICS_PATH] = lambda: metrics_response(ops)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        answer = (self.answers.get(scope["path"]) if scope["method"] in ("GET", "HEAD")
                  else None)
        open_path = answer is not None

        async def watched(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if open_path:
                    message = {**message, "headers": [*message.get("headers", []), *HEADERS]}
            await send(message)

        try:
            if answer is None:
                await self.app(scope, receive, watched)
            else:
                await answer()(scope, receive, watched)
        finally:
            route = scope["path"] if open_path else _template(scope, status)
            self.metrics.observe(route, scope["method"], status, time.perf_counter() - start)


def _template(scope: dict, status: int) -> str:
    """The route template a request matched; tiles answered ahead of routing (fast_tiles)
    by their route's; ``other`` for requests no route took (404s, refused tokens)."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return route.path
    path = scope["path"]
    if status == 200 and path.startswith("/slides/") and path.endswith(".jpeg"):
        return TILE_ROUTE
    return "other"


def install(app: Any, state: Any) -> None:
    """Add the operations routes and their middleware to ``app`` (call it last, after
    every other middleware, so that it runs first)."""
    ops = Ops(state)
    app.state.histotile_ops = ops
    app.include_router(router)
    app.add_middleware(OpsMiddleware, state=state, ops=ops,
                       public_metrics=state.settings.public_metrics)
