"""Per-address rate limit for the API, applied before anything else runs.

A request over ``COFFER_RATE_LIMIT_IP`` gets 429 with ``Retry-After`` and the usual error
body. Only ``/api/`` paths are counted: ``/healthz``, ``/readyz`` and ``/metrics`` are never
limited, so probes and scrapes keep working under a flood.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from coffer.domain.errors import RateLimited
from coffer.services.throttle import Throttle

IP_COUNTED = "coffer.ip_counted"
"""Set in the scope by a layer above that already counted the request (the hot path)."""


class RateLimitMiddleware:
    """Counts each ``/api/`` request against its client address."""

    def __init__(self, app: ASGIApp, throttle: Throttle) -> None:
        self.app = app
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith("/api/")
            or scope.get(IP_COUNTED)
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        try:
            self.throttle.hit("api_per_ip", client[0] if client else "unknown")
        except RateLimited as limited:
            body = json.dumps({"error": limited.to_dict()}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(limited.retry_after).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
