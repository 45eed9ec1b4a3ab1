"""Secrets of one environment: list, set, get, head, change limits, delete, history and
rollback.

Keys may contain "/" (folders), so they are the last path segment(s) of each route.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, WithJsonSchema

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.key_path import register_secret_key_convertor
from coffer.api.routes.inventory import InventoryBody
from coffer.api.serialize import (
    head_answer,
    revealed_json,
    secret_info_json,
    version_json,
    write_json,
)
from coffer.domain.read_limits import parse_limit_change, parse_read_limits
from coffer.domain.secret_value import SecretValue

register_secret_key_convertor()
router = APIRouter(prefix="/api/v1/projects/{project}/environments/{environment}", tags=["secrets"])


# Any JSON value: the domain's parser names ``ttl_seconds`` in its error whatever the type
# (a pydantic union would name a branch such as ``ttl_seconds.int``).
TtlSeconds = Annotated[
    Any, WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]})
]
TTL_DESCRIPTION = "Time to live: seconds, or 30s, 5m, 2h, 7d (at most 365 days)"
READS_DESCRIPTION = "Reads allowed before the secret is burned or sealed (1 to 1,000,000)"
DELETE_DESCRIPTION = "Burn the secret after its last read (true) or seal it (false)"


class SecretWrite(BaseModel):
    """A new version's value, an optional comment, and optional read limits."""

    model_config = ConfigDict(extra="forbid")  # a misspelt limit must not pass unnoticed

    value: str = Field(repr=False)
    comment: str | None = None
    ttl_seconds: TtlSeconds = Field(default=None, description=TTL_DESCRIPTION)
    max_reads: StrictInt | None = Field(default=None, description=READS_DESCRIPTION)
    delete: StrictBool = Field(default=True, description=DELETE_DESCRIPTION)
    inventory: InventoryBody | None = Field(
        default=None, description="Inventory metadata to change with this write"
    )


class LimitPatch(BaseModel):
    """A change of limits: only the fields sent count; ``null`` removes a TTL or limit."""

    model_config = ConfigDict(extra="forbid")  # a misspelt limit must not pass unnoticed

    ttl_seconds: TtlSeconds = Field(default=None, description=TTL_DESCRIPTION)
    max_reads: StrictInt | None = Field(default=None, description=READS_DESCRIPTION)
    delete: StrictBool | None = Field(default=None, description=DELETE_DESCRIPTION)
    reset: StrictBool = Field(default=False, description="Zero the read count and unseal")

    def given(self) -> dict[str, object]:
        """The fields the request actually sent."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class Rollback(BaseModel):
    """The version whose value becomes current again."""

    version: int
    comment: str | None = None


@router.get("/secrets")
async def list_secrets(
    project: str, environment: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Lists keys and versions (never values)."""
    infos = await run(services.secrets.list_keys, caller, project, environment)
    return {"secrets": [secret_info_json(info) for info in infos]}


@router.put("/secrets/{key:secretkey}")
async def set_secret(
    project: str,
    environment: str,
    key: str,
    body: SecretWrite,
    caller: Caller,
    services: ServicesDep,
    run: Run,
) -> dict[str, Any]:
    """Writes a new version of the secret (creating it on first write). With
    ``ttl_seconds`` or ``max_reads`` the secret gets those limits; without them it keeps
    its own. Each new version counts its reads afresh. ``inventory`` changes the secret's
    metadata in the same transaction. Refused (400 ``policy_violation``, naming the rule)
    when the secret would break its environment's policy."""
    limits = parse_read_limits(ttl=body.ttl_seconds, max_reads=body.max_reads, delete=body.delete)
    inventory = body.inventory.change() if body.inventory is not None else None
    result = await run(
        services.secrets.set,
        caller,
        project,
        environment,
        key,
        SecretValue(body.value),
        comment=body.comment,
        limits=limits,
        inventory=inventory,
    )
    return write_json(result)


@router.head("/secrets/{key:secretkey}")
async def head_secret(
    project: str, environment: str, key: str, caller: Caller, services: ServicesDep, run: Run
) -> Response:
    """Describes the secret in ``X-Coffer-*`` headers (status, version, read count, reads
    remaining, expiry) without reading it: nothing is counted or recorded. 410 when
    sealed."""
    info = await run(services.secrets.info, caller, project, environment, key)
    return head_answer(info.limits, {"X-Coffer-Version": str(info.version)})


@router.patch("/secrets/{key:secretkey}")
async def change_secret_limits(
    project: str,
    environment: str,
    key: str,
    body: LimitPatch,
    caller: Caller,
    services: ServicesDep,
    run: Run,
) -> dict[str, Any]:
    """Changes the TTL (from now), read limit or burn/seal choice, or resets the read count
    (``reset``: unseals a sealed secret). Needs write access."""
    change = parse_limit_change(body.given())
    info = await run(services.secrets.change_limits, caller, project, environment, key, change)
    return secret_info_json(info)


@router.get("/secrets/{key:secretkey}")
async def get_secret(
    project: str,
    environment: str,
    key: str,
    caller: Caller,
    services: ServicesDep,
    run: Run,
    version: int | None = Query(default=None, description="A past version; default current"),
    expand: bool = Query(default=False, description="Expand ${...} references"),
) -> dict[str, Any]:
    """Returns the value of the current (or given) version. Recorded as ``secret.read``;
    a limited secret's read is counted, and its last allowed read burns or seals it. 404
    for a burned or expired secret, 410 for a sealed one."""
    secret = await run(
        services.secrets.get, caller, project, environment, key, version=version, expand=expand
    )
    return revealed_json(secret)


@router.delete("/secrets/{key:secretkey}")
async def delete_secret(
    project: str, environment: str, key: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Destroys the secret and every one of its versions. Irreversible."""
    destroyed = await run(services.secrets.delete, caller, project, environment, key)
    return {"key": key, "deleted": True, "versions_destroyed": destroyed}


@router.get("/history/{key:secretkey}")
async def secret_history(
    project: str, environment: str, key: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Lists every version of the secret, newest first, without values."""
    versions = await run(services.secrets.history, caller, project, environment, key)
    return {"key": key, "versions": [version_json(v) for v in versions]}


@router.post("/rollback/{key:secretkey}")
async def rollback_secret(
    project: str,
    environment: str,
    key: str,
    body: Rollback,
    caller: Caller,
    services: ServicesDep,
    run: Run,
) -> dict[str, Any]:
    """Writes a new version carrying the value of an earlier one."""
    result = await run(
        services.secrets.rollback,
        caller,
        project,
        environment,
        key,
        version=body.version,
        comment=body.comment,
    )
    return write_json(result)
