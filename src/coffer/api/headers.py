"""ASGI middleware adding protective headers to every API response: secrets must not be
cached by browsers or proxies, nor sniffed as another content type."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_API_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
)


class NoStoreHeadersMiddleware:
    """Adds ``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff`` under /api/."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in _API_HEADERS if n not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
