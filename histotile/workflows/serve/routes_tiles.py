"""Deep Zoom: ``/slides/{slide}.dzi`` and ``/slides/{slide}_files/{level}/{col}_{row}.jpeg``.

A cached tile is answered on the event loop; a missing one is read and encoded in a
worker thread (at most ``tile_threads`` at once), so slide I/O never blocks the loop."""

from __future__ import annotations

from pathlib import Path

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

router = APIRouter(tags=["deep zoom"])
_CACHE_HEADERS = {"cache-control": "private, max-age=3600"}


def slide_path(request: Request, slide: str) -> Path:
    """The file of ``slide`` under the server's roots, else 404 (nothing is opened)."""
    path = request.app.state.histotile.catalog.path(slide)
    if path is None:
        raise HTTPException(404, f"no slide named {slide!r} on this server")
    return path


@router.get("/slides/{slide}.dzi", response_class=Response,
            responses={200: {"content": {"application/xml": {}}}, 404: {}, 422: {}})
async def dzi(request: Request, slide: str) -> Response:
    """The Deep Zoom descriptor (XML) of a slide."""
    state = request.app.state.histotile
    path = slide_path(request, slide)
    text = await anyio.to_thread.run_sync(state.tiles.dzi, path, limiter=state.tile_limiter)
    return Response(text, media_type="application/xml")


@router.get("/slides/{slide}_files/{level}/{col}_{row}.jpeg", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, 404: {}, 422: {}})
async def tile(request: Request, slide: str, level: int, col: int, row: int) -> Response:
    """One JPEG tile of the Deep Zoom pyramid; 404 outside it."""
    from histotile.workflows.serve.tiles import TileNotFound

    state = request.app.state.histotile
    path = slide_path(request, slide)
    data = state.tiles.cached(path, level, col, row)
    if data is None:
        try:
            data = await anyio.to_thread.run_sync(state.tiles.tile, path, level, col, row,
                                                  limiter=state.tile_limiter)
        except TileNotFound as error:
            raise HTTPException(404, f"{slide}: {error}") from None
    return Response(data, media_type="image/jpeg", headers=_CACHE_HEADERS)
