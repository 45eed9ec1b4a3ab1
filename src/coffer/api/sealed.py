"""The server of a vault whose root key is split into Shamir shares: sealed until enough
shares arrive at ``POST /api/v1/sys/unseal``, then the whole API.

While sealed it answers ``/healthz``, ``GET /api/v1/sys/seal-status`` and the unseal call;
``/readyz`` gets 503 ``{"status": "sealed"}`` (the node cannot serve yet) and everything else
503 ``sealed``. Shares need no token (they are the credential) and each carries a checksum;
the server keeps them in memory only and forgets a set that rebuilds a key that is not the
vault's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from coffer.api.errors import status_for
from coffer.crypto.providers.shamir import ShamirRootProvider, UnsealProgress
from coffer.domain.errors import CofferError, InvalidInput, Sealed, TooLarge, WrongRootKey
from coffer.domain.root_keys import RootKeyRecord

MAX_UNSEAL_BODY = 4096
SEAL_STATUS = "/api/v1/sys/seal-status"
UNSEAL = "/api/v1/sys/unseal"


def progress_json(progress: UnsealProgress) -> dict[str, Any]:
    """The seal status shape shared by the sealed gate and the unsealed API."""
    return {
        "sealed": not progress.unsealed,
        "threshold": progress.threshold,
        "progress": progress.received,
    }


class SealedGate:
    """Answers for the vault until it is unsealed, then passes every request to the app
    that ``open_app`` builds (it opens the vault with the rebuilt root key)."""

    def __init__(
        self,
        shamir: ShamirRootProvider,
        record: RootKeyRecord,
        open_app: Callable[[], ASGIApp],
    ) -> None:
        self._shamir = shamir
        self._record = record
        self._open_app = open_app
        self._app: ASGIApp | None = None
        self._opening = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is not None and scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/healthz":
            await _json(send, 200, {"status": "ok", "sealed": True})
        elif path == "/readyz":
            await _json(send, 503, {"status": "sealed"})
        elif path == SEAL_STATUS and method in ("GET", "HEAD"):
            await _json(send, 200, progress_json(self._shamir.progress()))
        elif path == UNSEAL and method == "POST":
            await self._unseal(receive, send)
        else:
            await _error(send, Sealed("the vault is sealed; run `coffer unseal` with its shares"))

    async def _unseal(self, receive: Receive, send: Send) -> None:
        try:
            share = _share_of(await _body(receive))
            progress = self._shamir.add_share(share, self._record)
            if progress.unsealed:
                async with self._opening:
                    if self._app is None:
                        self._app = await asyncio.to_thread(self._open_app)
        except WrongRootKey as exc:
            await _json(send, 400, {"error": exc.to_dict()})
            return
        except CofferError as exc:
            await _error(send, exc)
            return
        await _json(send, 200, progress_json(progress))


def _share_of(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    share = data.get("share") if isinstance(data, dict) else None
    if not isinstance(share, str) or not share.strip():
        raise InvalidInput("share is required: one SLIP-39 share (its words)", field="share")
    return share


async def _body(receive: Receive) -> bytes:
    chunks = bytearray()
    while True:
        message = await receive()
        chunks += message.get("body", b"")
        if len(chunks) > MAX_UNSEAL_BODY:
            raise TooLarge(f"the request body is larger than {MAX_UNSEAL_BODY} bytes")
        if not message.get("more_body"):
            return bytes(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _error(send: Send, error: CofferError) -> None:
    await _json(send, status_for(error), {"error": error.to_dict()})


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
