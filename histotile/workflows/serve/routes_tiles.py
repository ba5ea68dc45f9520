"""Deep Zoom: ``/slides/{slide}.dzi`` and ``/slides/{slide}_files/{level}/{col}_{row}.jpeg``.

A cached tile is answered on the event loop without any file-system call; a missing one
is looked up, read and encoded in a tile thread (``tile_threads`` of them, one per core by
default), so slide I/O never blocks the loop."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

router = APIRouter(tags=["deep zoom"])
CACHE_HEADERS = {"cache-control": "private, max-age=3600"}


def slide_path(request: Request, slide: str) -> Path:
    """The file of ``slide`` under the server's roots, else 404 (nothing is opened)."""
    path = request.app.state.histotile.catalog.path(slide)
    if path is None:
        raise HTTPException(404, f"no slide named {slide!r} on this server")
    return path


@router.get("/slides/{slide}.dzi", response_class=Response,
            responses={200: {"content": {"application/xml": {}}}})
async def dzi(request: Request, slide: str) -> Response:
    """The Deep Zoom descriptor (XML) of a slide."""
    state = request.app.state.histotile
    path = slide_path(request, slide)
    text = await state.in_tile_thread(state.tiles.dzi, path)
    return Response(text, media_type="application/xml")


@router.get("/slides/{slide}_files/{level}/{col}_{row}.jpeg", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
async def tile(request: Request, slide: str, level: int, col: int, row: int) -> Response:
    """One JPEG tile of the Deep Zoom pyramid; 404 outside it."""
    try:
        data = await tile_bytes(request.app.state.histotile, slide, level, col, row)
    except LookupError as error:
        raise HTTPException(404, f"{slide}: {error}") from None
    return Response(data, media_type="image/jpeg", headers=CACHE_HEADERS)


async def tile_bytes(state, slide: str, level: int, col: int, row: int) -> bytes:
    """The JPEG of one tile: from the cache, else made in a tile thread. Raises
    :class:`LookupError` for an unknown slide or a tile outside the pyramid."""
    # A tile served before comes from memory with no file-system call on the event loop
    # (a blocking call there hands the GIL to the tile threads and waits to get it back);
    # it was read after its slide passed the roots check.
    known = state.catalog.known(slide)
    data = None if known is None else state.tiles.cached(known, level, col, row)
    if data is None:
        data = await state.in_tile_thread(_read_tile, state, slide, level, col, row)
    return data


def _read_tile(state, slide: str, level: int, col: int, row: int) -> bytes:
    """In a tile thread: the roots check of ``slide`` (links followed), then its tile."""
    path = state.catalog.path(slide)
    if path is None:
        raise LookupError("no slide of that name on this server")
    return state.tiles.tile(path, level, col, row)
