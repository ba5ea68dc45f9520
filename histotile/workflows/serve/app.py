"""The FastAPI application of ``histotile serve``: pages, Deep Zoom tiles, the slide
API, classification and jobs. :func:`create_app` builds it from :class:`ServeSettings`."""

from __future__ import annotations

from typing import Any

from histotile.errors import HistotileError
from histotile.workflows.serve.settings import ServeSettings
from histotile.workflows.serve.static_files import STATIC

_BODY_MARGIN = 1024 * 1024  # multipart headers around the file


class State:
    """Everything the routes share, built once per app."""

    def __init__(self, settings: ServeSettings) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from histotile._threads import thread_budget
        from histotile.workflows.serve.catalog import SlideCatalog
        from histotile.workflows.serve.classify import Classifier
        from histotile.workflows.serve.jobs import Jobs
        from histotile.workflows.serve.tiles import DeepZoomTiles

        self.settings = settings
        self.catalog = SlideCatalog(settings.roots)
        self.tiles = DeepZoomTiles(settings.tile_size, settings.overlap, settings.jpeg_quality,
                                   int(settings.tile_cache_mb * 1024 * 1024))
        # A plain executor rather than anyio.to_thread with a limiter: a hand-over costs
        # ~13 us of event-loop time instead of ~40-75 us (measured), and its queue is FIFO.
        self.tile_pool = ThreadPoolExecutor(settings.tile_threads or thread_budget(),
                                            thread_name_prefix="histotile-tile")
        self.classifier = (Classifier(settings.model, settings.max_pixels)
                           if settings.model is not None else None)
        self.jobs = (Jobs(settings.results, settings.model)
                     if settings.model is not None and settings.results is not None else None)

    async def in_tile_thread(self, function, *args):
        """``function(*args)`` in a tile thread (slide I/O, encoding), awaited."""
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self.tile_pool, function,
                                                                *args)


def create_app(settings: ServeSettings):
    """The ASGI app serving ``settings.roots`` (validated first)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from fastapi.staticfiles import StaticFiles

    from histotile import __version__
    from histotile.workflows.serve.fast_tiles import FastTiles
    from histotile.workflows.serve.http_rules import (
        ERROR_RESPONSES,
        HeadAsGet,
        install_error_handlers,
    )
    from histotile.workflows.serve.routes_api import router as api_router
    from histotile.workflows.serve.routes_ops import install as install_ops
    from histotile.workflows.serve.routes_pages import router as pages_router
    from histotile.workflows.serve.routes_tiles import router as tiles_router
    from histotile.workflows.serve.security import Guard

    settings.validate()
    state = State(settings)
    app = FastAPI(title="histotile serve", version=__version__,
                  description="Deep Zoom slides, tile-prediction heatmaps, slide results, "
                              "image classification (also TensorFlow-Serving style) and "
                              "run jobs of histotile.",
                  responses=ERROR_RESPONSES)
    app.state.histotile = state
    install_error_handlers(app)

    @app.exception_handler(HistotileError)
    async def histotile_error(_request: Request, error: HistotileError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=getattr(error, "status", 422))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        # Never a bare crash: the server keeps running and says what happened.
        return JSONResponse({"detail": f"internal error: {type(error).__name__}: {error}"},
                            status_code=500)

    app.include_router(tiles_router)
    app.include_router(api_router)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(FastTiles, state=state)  # inside Guard: added first
    app.add_middleware(HeadAsGet)  # HEAD reaches FastTiles and the routes as GET
    app.add_middleware(Guard, token=settings.token,
                       max_body=settings.max_upload_bytes + _BODY_MARGIN)
    install_ops(app, state)  # health, readiness, metrics: outermost, so added last
    return app


def serve(settings: ServeSettings, on_ready: Any = None) -> None:
    """Run the server until interrupted (uvicorn, one process)."""
    import uvicorn

    app = create_app(settings)
    if on_ready is not None:
        on_ready(f"http://{settings.host}:{settings.port}/")
    # Access lines off (log_level warning would drop them anyway, after formatting);
    # uvicorn picks uvloop and httptools when installed ('standard' extra).
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                access_log=False)
