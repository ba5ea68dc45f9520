"""The HTML pages (slide list, viewer, classify); their scripts live in ``static/``."""

from __future__ import annotations

import functools

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from histotile.workflows.serve.static_files import STATIC, VENDOR

router = APIRouter(include_in_schema=False)

_MISSING_VIEWER = """<!doctype html><meta charset="utf-8"><title>histotile</title>
<p>The slide viewer's OpenSeadragon files are not installed in this copy of histotile
({path} is missing). Run <code>make vendor</code> in the source tree (it fetches
OpenSeadragon from the npm registry) or install histotile from a built package.</p>"""


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html")


@router.get("/")
def index() -> FileResponse:
    return _page("index.html")


@router.get("/view/{slide}")
def viewer(request: Request, slide: str):
    if request.app.state.histotile.catalog.path(slide) is None:
        raise HTTPException(404, f"no slide named {slide!r} on this server")
    if not VENDOR.is_file():
        return HTMLResponse(_MISSING_VIEWER.format(path=VENDOR), status_code=503)
    return _page("viewer.html")


@router.get("/classify")
def classify_page() -> FileResponse:
    return _page("classify.html")


@router.get("/favicon.ico")
def favicon() -> Response:
    """The tab icon browsers ask for on every page (a 404 there is a console error)."""
    return Response(_icon(), media_type="image/x-icon",
                    headers={"cache-control": "public, max-age=86400"})


@functools.lru_cache(maxsize=1)
def _icon() -> bytes:
    """A 32 px icon drawn here (no binary file in the source): a 4 x 4 heatmap in
    viridis' colours, as the viewer paints tiles."""
    import io

    import numpy as np
    from PIL import Image

    colours = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [253, 231, 37]], np.uint8)
    grid = np.array([[0, 1, 2, 3], [1, 2, 3, 3], [0, 1, 2, 2], [0, 0, 1, 2]])
    pixels = np.repeat(np.repeat(colours[grid], 8, axis=0), 8, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "ICO", sizes=[(32, 32)])
    return buffer.getvalue()
