"""``/api/v1/tokens`` (the caller's sessions, CLI tokens and keys; everyone's for admins)
and ``/api/v1/keys`` (API keys, at most 5 active per person)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.serialize import issued_json, token_json
from coffer.services.token_issuer import API_KEY

router = APIRouter(prefix="/api/v1", tags=["tokens"])


class KeyCreate(BaseModel):
    """A name for the key and, optionally, a lifetime such as ``30d``."""

    name: str = Field(max_length=1024)
    expires_in: str | None = Field(default=None, max_length=32)


@router.get("/tokens")
async def list_tokens(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    all: bool = Query(default=False, description="Every token of the organization (admins)"),
) -> dict[str, Any]:
    """Lists active tokens: the caller's own, or with ``all=true`` everyone's."""
    tokens = await run(services.tokens.list_tokens, caller, everyone=all)
    return {"tokens": [token_json(t, current_id=caller.actor.token_id) for t in tokens]}


@router.delete("/tokens/{token_id}")
async def revoke_token(
    token_id: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Revokes a token (the caller's own; anyone's for admins and owners)."""
    info = await run(services.tokens.revoke, caller, token_id)
    return {"revoked": True, **token_json(info)}


@router.post("/keys", status_code=201)
async def create_key(
    body: KeyCreate, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Creates an API key that acts as the caller; the key is in this answer only."""
    issued = await run(
        services.tokens.create_api_key, caller, body.name, expires_in=body.expires_in
    )
    return issued_json(issued)


@router.get("/keys")
async def list_keys(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Lists the caller's active API keys (never the keys themselves)."""
    keys = await run(services.tokens.list_api_keys, caller)
    return {"keys": [token_json(k, current_id=caller.actor.token_id) for k in keys]}


@router.delete("/keys/{key_id}")
async def revoke_key(
    key_id: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Revokes one of the caller's API keys."""
    info = await run(services.tokens.revoke, caller, key_id, kind=API_KEY)
    return {"revoked": True, **token_json(info)}
