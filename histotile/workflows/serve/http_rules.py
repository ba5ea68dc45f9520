"""HTTP as the OpenAPI document and RFC 9110 describe it: HEAD answered like GET, 405
answers that list every method of the path in ``Allow``, and one error body
(:class:`ErrorBody`) declared for every error status a route can answer."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """What every error answer holds."""

    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong and what to do, as a sentence; for a request whose "
                    "parameters do not match this document (422), the list of problems "
                    "(``loc``, ``msg``, ``type``) as FastAPI reports them.")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Statuses any route may answer: the token (401), an unknown slide, model or job (404), a
# body over the limit (413, from the guard), parameters this document refuses or a file
# histotile cannot use (422).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("Missing or wrong token (when the server has one)."),
    404: _error("No such slide, model, job or tile on this server."),
    413: _error("The request body, an image or a batch is over the server's limits."),
    422: _error("A parameter or an uploaded image that cannot be used."),
}
BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("The body cannot be parsed (not JSON, or broken multipart)."),
}
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    **BODY_RESPONSES,
    415: _error("The upload is not a PNG, JPEG or TIFF image."),
}


class HeadAsGet:
    """ASGI middleware: a HEAD request runs as GET and its body is dropped, so every GET
    route answers HEAD with the same status and headers (``content-length`` included)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


def allowed_methods(app: Any, scope: MutableMapping[str, Any]) -> list[str]:
    """The methods some route answers at ``scope``'s path (HEAD with GET), sorted: each
    method probed through the routes' own ``matches`` (routers included in routers
    answer for their routes). Routes that take any method (mounts) are left out."""
    from starlette.routing import Match

    routes = [r for r in app.router.routes
              if r.matches({**scope, "method": "\0"})[0] is not Match.FULL]
    methods = {m for m in _METHODS
               if any(r.matches({**scope, "method": m})[0] is Match.FULL for r in routes)}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install_error_handlers(app: Any) -> None:
    """HTTP errors as ``{"detail": ...}``; a 405 with the path's full ``Allow`` (Starlette
    names only the first route that matched the path, though a path may have several)."""
    from fastapi import Request
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        headers = dict(error.headers or {})
        if error.status_code == 405:
            methods = allowed_methods(request.app, request.scope)
            if methods:
                headers["Allow"] = ", ".join(methods)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code,
                            headers=headers)
