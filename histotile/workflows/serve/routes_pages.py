"""The HTML pages (slide list, viewer, classify); their scripts live in ``static/``."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

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
