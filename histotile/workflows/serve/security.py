"""Request guards: the bearer token, the upload size limit and response headers, as
plain ASGI middleware (they run before any route and never read a slide)."""

from __future__ import annotations

import hmac
import json
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, parse_qsl

COOKIE = "histotile_token"
# Pages load only their own scripts, styles and images (no CDN, no inline script).
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
     b"script-src 'self'; frame-ancestors 'none'"),
]


async def _reply(send, status: int, message: str, extra: list | None = None) -> None:
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Token check (header ``Authorization: Bearer T``, the cookie set by opening a page
    with ``?token=T``, or that query itself), body size limit (413 before the route sees
    the body) and security headers on every response."""

    def __init__(self, app: Any, token: str | None, max_body: int) -> None:
        self.app = app
        self.token = token
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        set_cookie = []
        if self.token:
            granted, from_query = self._granted(scope)
            if not granted:
                await _reply(send, 401, "missing or wrong token (send 'Authorization: "
                                        "Bearer TOKEN', or open the page with ?token=TOKEN)",
                             [(b"www-authenticate", b"Bearer")])
                return
            if from_query:
                set_cookie = [(b"set-cookie", self._cookie(scope))]
                if _is_page_request(scope):  # the token out of the address bar
                    await _reply(send, 303, "token accepted; the page follows",
                                 [(b"location", _without_token(scope)), *set_cookie])
                    return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _reply(send, 413, f"the request body is over the limit of "
                                    f"{self.max_body:,} bytes (send a smaller file)")
            return
        receive = self._limited(receive)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *HEADERS,
                                                  *set_cookie]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except _TooLarge:
            await _reply(send, 413, f"the request body is over the limit of "
                                    f"{self.max_body:,} bytes (send a smaller file)")

    def _cookie(self, scope) -> bytes:
        """The token cookie; ``Secure`` when the page came over HTTPS, to this server or
        to a proxy in front of it (``X-Forwarded-Proto: https``)."""
        headers = dict(scope.get("headers") or [])
        forwarded = headers.get(b"x-forwarded-proto", b"").decode("latin-1")
        https = scope.get("scheme") == "https" or (
            forwarded.split(",")[0].strip().lower() == "https")
        return (f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                + ("; Secure" if https else "")).encode()

    def _limited(self, receive):
        seen = 0

        async def wrapped():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge
            return message
        return wrapped

    def _granted(self, scope) -> tuple[bool, bool]:
        """(granted, by the query): a valid token in the query counts even beside a valid
        header or cookie, so a page opened with ``?token=`` always loses it from the
        address bar."""
        token = self.token or ""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if any(hmac.compare_digest(value, token) for value in query.get("token", [])):
            return True, True
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), token):
            return True, False
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except CookieError:
            cookie = SimpleCookie()
        if COOKIE in cookie and hmac.compare_digest(cookie[COOKIE].value, token):
            return True, False
        return False, False


def _is_page_request(scope) -> bool:
    """A browser opening a page (GET or HEAD asking for HTML), not a script or API call."""
    headers = dict(scope.get("headers") or [])
    return (scope.get("method") in ("GET", "HEAD")
            and b"text/html" in headers.get(b"accept", b""))


def _without_token(scope) -> bytes:
    """The request's path and query with every ``token`` parameter left out."""
    from urllib.parse import quote, urlencode

    query = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                          keep_blank_values=True) if k != "token"]
    path = quote(scope.get("root_path", "") + scope["path"], safe="/:@!$&'()*+,;=[]~")
    path = "/" + path.lstrip("/")  # never '//host': a redirect stays on this server
    return (path + ("?" + urlencode(query) if query else "")).encode("latin-1")


class _TooLarge(Exception):
    pass
