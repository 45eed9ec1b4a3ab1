"""ASGI short-cut for ``GET /api/v1/projects/{p}/environments/{e}/secrets/{key}``.

The plain read (no query string) of a current value is answered here, below FastAPI's
routing and dependency machinery. When the reader returns None (any problem at all) the
request goes on to the FastAPI route, which applies every rule and produces the error; the
route also documents this endpoint in the OpenAPI schema. The answer is byte-for-byte what
the route would give.
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from coffer.api.context import BlockingRunner
from coffer.api.serialize import revealed_json
from coffer.services.fast_read import FastSecretReader

_PATH = re.compile(r"/api/v1/projects/([^/]+)/environments/([^/]+)/secrets/([\s\S]+)")


def _bearer(scope: Scope) -> str | None:
    scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value).decode("latin-1")
    return None


class FastReadMiddleware:
    """Answers plain secret reads directly; passes everything else to ``app``."""

    def __init__(self, app: ASGIApp, reader: FastSecretReader, runner: BlockingRunner) -> None:
        self.app = app
        self.reader = reader
        self.runner = runner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        token = _bearer(scope) if match else None
        if match is None or not token:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        secret = await self.runner(
            self.reader.read,
            token,
            match.group(1),
            match.group(2),
            match.group(3),
            source_ip=client[0] if client else None,
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
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
