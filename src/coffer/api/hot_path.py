"""ASGI short-cut for ``GET /api/v1/projects/{p}/environments/{e}/secrets/{key}``.

The plain read (no query string, bearer token) of a current value is answered here, before
the middleware stack and FastAPI's routing and dependency machinery, doing itself what those
layers would do for it: the client address behind trusted proxies, the per-address rate
limit and the protective headers. When the reader returns None (any problem at all) the
request goes on to the full stack, which applies every rule and produces the error; the
FastAPI route also documents this endpoint in the OpenAPI schema. The answer is
byte-for-byte what the route would give.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from coffer.api.client_address import Network, as_forwarded
from coffer.api.context import BlockingRunner
from coffer.api.http_metrics import SECRET_ROUTE, set_route
from coffer.api.security_headers import headers_for
from coffer.api.serialize import revealed_json
from coffer.domain.errors import RateLimited
from coffer.services.fast_read import FastSecretReader
from coffer.services.throttle import Throttle

_PATH = re.compile(r"/api/v1/projects/([^/]+)/environments/([^/]+)/secrets/([\s\S]+)")


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value).decode("latin-1")
    return None


class FastReadMiddleware:
    """Answers plain secret reads directly; passes everything else to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        reader: FastSecretReader,
        runner: BlockingRunner,
        throttle: Throttle,
        proxies: tuple[Network, ...],
    ) -> None:
        self.app = app
        self.reader = reader
        self.runner = runner
        self.throttle = throttle
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await self.app(scope, receive, send)
            return
        set_route(scope, SECRET_ROUTE)
        seen = as_forwarded(scope, self.proxies)  # the full stack works it out itself
        peer = seen.get("client")
        client = peer[0] if peer else None
        try:
            self.throttle.hit("api_per_ip", client or "unknown")
        except RateLimited:
            await self.app(scope, receive, send)  # counted again there, and refused
            return
        secret = await self.reader.read(
            self.runner,
            token,
            match.group(1),
            match.group(2),
            match.group(3),
            source_ip=client,
            user_agent=_header(scope, b"user-agent"),
        )
        if secret is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            revealed_json(secret), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                    *headers_for(seen),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
