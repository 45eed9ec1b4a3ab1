"""Share links: ``coffer share`` stores a client-side ciphertext here and hands out
``/s/{token}#{key}``.

* ``GET /s/{token}`` is the interstitial page: it shows what the link allows and a "reveal"
  button, and never counts a read, so link previews and scanners burn nothing.
* ``POST /api/v1/shares/{token}/reveal`` (the button, or ``coffer share get``) counts the
  read and returns the ciphertext, only to a caller presenting the key's proof.
* The key stays in the fragment, which browsers never send: the server cannot read a share.
"""

from __future__ import annotations

import base64
import binascii
import html
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.routes.secrets import (
    DELETE_DESCRIPTION,
    READS_DESCRIPTION,
    TTL_DESCRIPTION,
    TtlSeconds,
)
from coffer.api.serialize import head_answer, iso, limits_json
from coffer.domain.errors import InvalidInput, NotFound
from coffer.domain.models import EphemeralInfo
from coffer.domain.read_limits import LimitStatus, parse_read_limits

router = APIRouter(tags=["shares"])

SHARE_PATH = "/s/"
_ASSETS = {"share.js": "text/javascript", "share.css": "text/css"}


class ShareCreate(BaseModel):
    """A client-side sealed value (base64 envelope), the proof of its key, and limits."""

    model_config = ConfigDict(extra="forbid")  # a misspelt limit must not pass unnoticed

    ciphertext: str = Field(description="Base64 of the AES-256-GCM envelope (crypto.share)")
    proof: str = Field(description="URL-safe base64 SHA-256 proof of the key (43 chars)")
    ttl_seconds: TtlSeconds = Field(default=None, description=TTL_DESCRIPTION)
    max_reads: StrictInt | None = Field(default=1, description=READS_DESCRIPTION)
    delete: StrictBool = Field(default=True, description=DELETE_DESCRIPTION)


class ShareReveal(BaseModel):
    """The proof that the caller holds the link's key."""

    model_config = ConfigDict(extra="forbid")  # a misspelt limit must not pass unnoticed

    proof: str


def _decode_envelope(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("ciphertext must be base64", field="ciphertext") from None


@router.post("/api/v1/shares", status_code=201)
async def create_share(
    body: ShareCreate, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Stores a share (one read and a day unless told otherwise) and returns its link's
    path, shown once; append ``#`` and the key to make the link."""
    limits = parse_read_limits(ttl=body.ttl_seconds, max_reads=body.max_reads, delete=body.delete)
    envelope = _decode_envelope(body.ciphertext)
    created = await run(services.shares.create, caller, envelope, body.proof, limits)
    return {
        "id": created.info.key,
        "token": created.token,
        "path": SHARE_PATH + created.token,
        "limits": limits_json(created.info.limits),
    }


@router.head("/api/v1/shares/{token}")
async def head_share(token: str, services: ServicesDep, run: Run) -> Response:
    """Describes the share in ``X-Coffer-*`` headers without reading it. No token needed."""
    info = await run(services.shares.info, token)
    return head_answer(info.limits)


@router.post("/api/v1/shares/{token}/reveal")
async def reveal_share(
    token: str, body: ShareReveal, request: Request, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Counts one read and returns the ciphertext (base64), for the holder of the whole
    link. 404 for a wrong, expired or spent link or a wrong proof; 410 when sealed."""
    opened = await run(
        services.shares.open,
        token,
        body.proof,
        source_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
    return {
        "ciphertext": base64.b64encode(opened.ciphertext).decode("ascii"),
        "limits": limits_json(opened.limits),
    }


def _page(title: str, body: str, *, status: int) -> HTMLResponse:
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{html.escape(title)} · coffer</title>
<link rel="stylesheet" href="/assets/share.css">
</head><body><main>
<h1>{html.escape(title)}</h1>
{body}
</main></body></html>
"""
    return HTMLResponse(document, status_code=status, headers={"Cache-Control": "no-store"})


def _describe(info: EphemeralInfo) -> str:
    limits = info.limits
    parts = []
    if limits.reads_remaining is not None:
        reads = limits.reads_remaining
        parts.append(f"It can be revealed {reads} more time{'s' if reads != 1 else ''}")
    if limits.expires_at is not None:
        parts.append(f"it expires at {iso(limits.expires_at)}")
    return (", ".join(parts) or "It can be revealed") + "."


@router.api_route("/s/{token}", methods=["GET", "HEAD"], include_in_schema=False)
async def share_page(token: str, services: ServicesDep, run: Run) -> HTMLResponse:
    """The interstitial page of a share link. Shows what the link allows and a reveal
    button; counts nothing (previews and scanners only ever load this page)."""
    try:
        info = await run(services.shares.info, token)
    except NotFound:
        return _page(
            "This link has expired",
            "<p>It was already opened, has expired, or never existed.</p>",
            status=404,
        )
    if info.limits.status is LimitStatus.SEALED:
        return _page("This share is sealed", "<p>Its read limit was reached.</p>", status=410)
    body = f"""<p>Someone shared a secret with you. {html.escape(_describe(info))}</p>
<p>Revealing it counts as a read; when no reads remain it is destroyed.</p>
<button id="reveal" type="button" data-token="{html.escape(token)}">Reveal secret</button>
<p id="status" role="status"></p>
<pre id="secret" hidden></pre>
<button id="copy" type="button" hidden>Copy</button>
<script src="/assets/share.js" defer></script>"""
    return _page("A secret was shared with you", body, status=200)


@router.api_route("/assets/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def asset(name: str) -> Response:
    """The share page's script and style sheet."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no asset {name!r}", field="name")
    content = resources.files("coffer.api").joinpath("static", name).read_bytes()
    return Response(content, media_type=media_type, headers={"Cache-Control": "no-cache"})
