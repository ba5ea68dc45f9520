"""``histotile serve``: a web viewer for slides and their heatmaps, and a REST service for
the models (a workflow: no stage imports it).

* :mod:`.settings`: the options (:class:`ServeSettings`).
* :mod:`.catalog`: the slides under the given roots, looked up by name only.
* :mod:`.tiles`: Deep Zoom tiles (OpenSlide's ``DeepZoomGenerator``) and their cache.
* :mod:`.fast_tiles`: tile requests answered ahead of FastAPI's routing (plain ASGI).
* :mod:`.results`: slide summaries and overlay data from a results folder.
* :mod:`.classify`: uploads cut into patches and predicted; TF-Serving ``:predict``.
* :mod:`.jobs`: ``run`` jobs started from the pages.
* :mod:`.security`: token, upload limit, response headers.
* :mod:`.app`, ``routes_*``: the FastAPI application; ``static/``: pages and scripts.
"""

from histotile.workflows.serve.settings import ServeSettings


def create_app(settings: ServeSettings):
    """The ASGI application (see :func:`histotile.workflows.serve.app.create_app`)."""
    from histotile.workflows.serve.app import create_app as _create

    return _create(settings)


def serve(settings: ServeSettings, on_ready=None) -> None:
    """Run the server (see :func:`histotile.workflows.serve.app.serve`)."""
    from histotile.workflows.serve.app import serve as _serve

    _serve(settings, on_ready)


def serve_settings(settings: ServeSettings, echo=None) -> None:
    """``histotile serve``: check the ``serve`` extra is installed, then run with
    ``settings`` (``echo`` receives the address once the server listens)."""
    from histotile.errors import ConfigError

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"histotile serve needs the 'serve' extra ({error.name} is "
                          "missing): pip install 'histotile[serve]'") from None
    serve(settings, on_ready=(lambda url: echo(f"histotile serve: {url}")) if echo else None)


__all__ = ["ServeSettings", "create_app", "serve", "serve_settings"]
