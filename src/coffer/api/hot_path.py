"""ASGI short-cuts for the two requests every deploy makes: the plain read and the plain
write of a secret (``GET`` and ``PUT /api/v1/projects/{p}/environments/{e}/secrets/{key}``
with a bearer token, no query string; for ``PUT`` a JSON body of ``value`` and optional
``comment`` only).

They are answered here, before the middleware stack and FastAPI's routing and dependency
machinery, doing themselves what those layers would: the client address behind trusted
proxies, the per-address and per-identity rate limits, the body-size limit and the
protective headers. The read is ``FastSecretReader``; writes are group-committed
(``write_batch``) through ``SecretService.set_many``, which applies the same validation,
policy and ``SecretOps.write`` as the route's ``set``. Whenever a request
is not the plain case, or the reader returns None, it goes on to the full stack (with its
body replayed), which applies every rule and produces the error; the FastAPI routes also
document these endpoints in the OpenAPI schema. Answers are byte-for-byte the routes'.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coffer.api.client_address import Network, as_forwarded
from coffer.api.context import BlockingRunner
from coffer.api.errors import error_response, unavailable_response
from coffer.api.http_metrics import SECRET_ROUTE, set_route
from coffer.api.rate_limit import IP_COUNTED
from coffer.api.security_headers import headers_for
from coffer.api.serialize import revealed_json, write_json
from coffer.api.write_batch import WriteBatcher
from coffer.crypto.tokens import hash_token, token_kind
from coffer.domain.errors import CofferError, RateLimited
from coffer.domain.models import CallContext
from coffer.domain.secret_value import SecretValue
from coffer.services.auth import SESSION_TOKEN_KIND
from coffer.services.container import Services
from coffer.services.secrets import SecretWrite
from coffer.storage.database import DATABASE_UNAVAILABLE

_PATH = re.compile(r"/api/v1/projects/([^/]+)/environments/([^/]+)/secrets/([\s\S]+)")
_WRITE_FIELDS = frozenset({"value", "comment"})


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value).decode("latin-1")
    return None


def _plain_write(body: bytes) -> tuple[str, str | None] | None:
    """(value, comment) of a body the hot path may write; None for anything else."""
    try:
        fields = json.loads(body)
    except ValueError:
        return None
    if not isinstance(fields, dict) or not _WRITE_FIELDS.issuperset(fields):
        return None
    value, comment = fields.get("value"), fields.get("comment")
    if not isinstance(value, str) or not (comment is None or isinstance(comment, str)):
        return None
    return value, comment


class HotPathMiddleware:
    """Answers plain secret reads and writes directly; passes everything else to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        services: Services,
        runner: BlockingRunner,
        proxies: tuple[Network, ...],
        *,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.services = services
        self.runner = runner
        self.proxies = proxies
        self.max_body_bytes = max_body_bytes
        self.writes = WriteBatcher(services.secrets, runner)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if scope["type"] != "http" or method not in ("GET", "PUT") or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        match = _PATH.fullmatch(scope["path"])
        scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
        token = token.strip()
        if match is None or scheme.lower() != "bearer" or not token:
            await self.app(scope, receive, send)
            return
        set_route(scope, SECRET_ROUTE)
        seen = as_forwarded(scope, self.proxies)  # the full stack works it out itself
        peer = seen.get("client")
        client = peer[0] if peer else None
        try:
            self.services.throttle.hit("api_per_ip", client or "unknown")
        except RateLimited:
            await self.app(scope, receive, send)  # refused there, with the usual answer
            return
        scope[IP_COUNTED] = True  # the full stack must not count this request again
        project, environment, key = match.group(1), match.group(2), match.group(3)
        user_agent = _header(scope, b"user-agent")
        if method == "GET":
            secret = await self.services.fast_reader.read(
                self.runner,
                token,
                project,
                environment,
                key,
                source_ip=client,
                user_agent=user_agent,
            )
            if secret is None:
                await self.app(scope, receive, send)
                return
            await self._answer(seen, send, 200, revealed_json(secret))
            return
        ctx = self._caller(token, client, user_agent)
        length = _header(scope, b"content-length")
        if (
            ctx is None
            or length is None
            or not length.isdigit()
            or int(length) > self.max_body_bytes
        ):
            await self.app(scope, receive, send)  # the body limit and every rule there
            return
        body = await _whole_body(receive)
        plain = _plain_write(body) if body is not None else None
        if plain is None:
            await self.app(scope, _replaying(body, receive), send)
            return
        try:
            self.services.throttle.hit("api_per_identity", ctx.actor.id)
            result = await self.writes.write(
                SecretWrite(ctx, project, environment, key, SecretValue(plain[0]), plain[1])
            )
        except CofferError as error:
            await self._send(seen, send, error_response(error))
            return
        except DATABASE_UNAVAILABLE:
            await self._send(seen, send, unavailable_response())
            return
        await self._answer(seen, send, 200, write_json(result))

    def _caller(self, token: str, client: str | None, user_agent: str | None) -> CallContext | None:
        """The caller of a bearer token whose holder is cached; None sends the request down
        the full stack (which loads, checks and refuses exactly as for any route)."""
        if token_kind(token) in (None, SESSION_TOKEN_KIND):
            return None
        now = time.time()
        holder = self.services.fast_reader.holders.cached(hash_token(token), now)
        if holder is None or not holder.active(now):
            return None
        return CallContext(actor=holder.actor, source_ip=client, user_agent=user_agent)

    async def _answer(self, scope: Scope, send: Send, status: int, payload: Any) -> None:
        body = json.dumps(
            payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                    *headers_for(scope),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _send(self, scope: Scope, send: Send, response: JSONResponse) -> None:
        present = {name for name, _ in response.raw_headers}
        response.raw_headers.extend(h for h in headers_for(scope) if h[0] not in present)

        async def no_body() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, no_body, send)


async def _whole_body(receive: Receive) -> bytes | None:
    """The request body (its declared length is within the limit; the server enforces it),
    or None when the client went away."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes | None, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` first (all of it, as one message), then the rest."""
    if body is None:
        return receive
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
