"""Standalone ephemeral secrets, in the shape of sirr's API: create, list, read, describe
(``HEAD``), change, delete; and ``POST /api/v1/prune``.

Keys may contain "/" (folders), so they are the last path segment(s) of each route.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.key_path import register_secret_key_convertor
from coffer.api.routes.secrets import (
    DELETE_DESCRIPTION,
    READS_DESCRIPTION,
    TTL_DESCRIPTION,
    TtlSeconds,
)
from coffer.api.serialize import ephemeral_json, head_answer, limits_json
from coffer.domain.read_limits import parse_limit_change, parse_read_limits
from coffer.domain.secret_value import SecretValue

register_secret_key_convertor()
router = APIRouter(prefix="/api/v1", tags=["ephemeral"])

_LIMIT_FIELDS = ("ttl_seconds", "max_reads", "delete", "reset")


class EphemeralCreate(BaseModel):
    """A new ephemeral secret: its name, value and limits (TTL one day unless given)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt limit must not pass unnoticed

    key: str
    value: str = Field(repr=False)
    ttl_seconds: TtlSeconds = Field(default=None, description=TTL_DESCRIPTION)
    max_reads: StrictInt | None = Field(default=None, description=READS_DESCRIPTION)
    delete: StrictBool = Field(default=True, description=DELETE_DESCRIPTION)


class EphemeralPatch(BaseModel):
    """A new value and/or a change of limits: only the fields sent count; ``null`` removes
    a read limit."""

    model_config = ConfigDict(extra="forbid")  # a misspelt limit must not pass unnoticed

    value: str | None = Field(default=None, repr=False)
    ttl_seconds: TtlSeconds = Field(default=None, description=TTL_DESCRIPTION)
    max_reads: StrictInt | None = Field(default=None, description=READS_DESCRIPTION)
    delete: StrictBool | None = Field(default=None, description=DELETE_DESCRIPTION)
    reset: StrictBool = Field(default=False, description="Zero the read count and unseal")


@router.post("/ephemeral", status_code=201)
async def create_ephemeral(
    body: EphemeralCreate, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Stores an ephemeral secret. Recorded as ``secret.created`` with its limits. 409 when
    a live one has that name."""
    limits = parse_read_limits(ttl=body.ttl_seconds, max_reads=body.max_reads, delete=body.delete)
    info = await run(services.ephemeral.create, caller, body.key, SecretValue(body.value), limits)
    return ephemeral_json(info)


@router.get("/ephemeral")
async def list_ephemeral(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Lists the organization's live ephemeral secrets with their limits (never values)."""
    infos = await run(services.ephemeral.list_secrets, caller)
    return {"secrets": [ephemeral_json(info) for info in infos]}


@router.get("/ephemeral/{key:secretkey}")
async def read_ephemeral(
    key: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Returns the value, counting the read; the last allowed read burns or seals it.
    Recorded as ``secret.read`` with ``read_count`` and ``max_reads``. 404 for an unknown,
    burned or expired secret, 410 for a sealed one."""
    revealed = await run(services.ephemeral.read, caller, key)
    return {"key": revealed.key, "value": revealed.value.reveal(), **limits_json(revealed.limits)}


@router.head("/ephemeral/{key:secretkey}")
async def head_ephemeral(key: str, caller: Caller, services: ServicesDep, run: Run) -> Response:
    """Describes the secret in ``X-Coffer-*`` headers without reading it. 410 when sealed."""
    info = await run(services.ephemeral.info, caller, key)
    return head_answer(info.limits)


@router.patch("/ephemeral/{key:secretkey}")
async def update_ephemeral(
    key: str, body: EphemeralPatch, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Replaces the value (its reads count afresh) and/or changes the limits; ``reset``
    unseals a sealed secret. Its creator or an admin only."""
    sent = body.model_fields_set
    given = {name: getattr(body, name) for name in _LIMIT_FIELDS if name in sent}
    change = parse_limit_change(given) if given else None
    value = SecretValue(body.value) if "value" in sent and body.value is not None else None
    info = await run(services.ephemeral.update, caller, key, value=value, change=change)
    return ephemeral_json(info)


@router.delete("/ephemeral/{key:secretkey}")
async def delete_ephemeral(
    key: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Destroys the ephemeral secret. Its creator or an admin only."""
    await run(services.ephemeral.delete, caller, key)
    return {"key": key, "deleted": True}


@router.post("/prune", tags=["ephemeral"])
async def prune(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Destroys every secret, ephemeral secret and share of the organization that is past
    its TTL (each recorded as ``secret.pruned``). Admins only."""
    report = await run(services.pruner.prune, caller)
    return {
        "pruned": {
            "secrets": report.secrets,
            "ephemeral": report.ephemeral,
            "shares": report.shares,
        }
    }
