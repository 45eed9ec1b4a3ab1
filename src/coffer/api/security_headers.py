"""ASGI middleware adding protective headers to every response.

* ``Content-Security-Policy``: nothing may load and no page may frame coffer
  (``frame-ancestors 'none'``); the interactive API docs get just the script and style
  sources they need, and the share page (``/s/``) its own script, style sheet and API.
* ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
  ``X-Frame-Options: DENY`` everywhere.
* ``Strict-Transport-Security`` when the request came over TLS.
* ``Cache-Control: no-store`` under ``/api/``: secrets must not be cached by browsers or proxies.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_STRICT_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# FastAPI's /docs and /redoc load their assets from jsDelivr and inline a start-up script.
_DOCS_CSP = (
    b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; "
    b"script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com; "
    b"connect-src 'self'; worker-src blob:"
)
_DOCS_PATHS = ("/docs", "/redoc")
_SHARE_CSP = (
    b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; "
    b"script-src 'self'; style-src 'self'; connect-src 'self'"
)
_SHARE_PATHS = ("/s/", "/assets/")
_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
_NO_STORE = (b"cache-control", b"no-store")
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


def headers_for(scope: Scope) -> list[tuple[bytes, bytes]]:
    """Returns the protective headers a response to ``scope`` carries."""
    path: str = scope["path"]
    if path.startswith(_DOCS_PATHS):
        csp = _DOCS_CSP
    elif path.startswith(_SHARE_PATHS):
        csp = _SHARE_CSP
    else:
        csp = _STRICT_CSP
    headers = [(b"content-security-policy", csp), *_COMMON]
    if path.startswith("/api/"):
        headers.append(_NO_STORE)
    if scope.get("scheme") == "https":
        headers.append(_HSTS)
    return headers


class SecurityHeadersMiddleware:
    """Adds ``headers_for(scope)`` to every HTTP response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((n, v) for n, v in extra if n not in present),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
