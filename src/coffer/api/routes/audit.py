"""``/api/v1/audit``: query, verify, export, inclusion proofs, prune, and the public key."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep
from coffer.audit.checkpoints import Checkpoint
from coffer.domain.audit_query import parse_audit_filter
from coffer.domain.errors import InvalidQuery

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

_MEDIA = {"jsonl": "application/x-ndjson", "cef": "text/plain", "syslog": "text/plain"}
_CHUNK = 1 << 16


class VerifyRequest(BaseModel):
    """Optionally, a checkpoint seen before that the log must still contain."""

    known_checkpoint: dict[str, Any] | None = None


class PruneRequest(BaseModel):
    """Keep entries of the last ``days`` days (default: COFFER_AUDIT_RETENTION_DAYS)."""

    days: int | None = Field(default=None, ge=1, le=36500)


@router.get("")
async def query_audit(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    since: str | None = Query(default=None, description="Unix seconds, inclusive"),
    until: str | None = Query(default=None, description="Unix seconds, inclusive"),
    action: str | None = Query(default=None, description="secret.read or secret.*"),
    key: str | None = Query(default=None, description="Exact key, prefix* or glob (db/*)"),
    actor: str | None = Query(default=None, description="Identity id or member e-mail"),
    project: str | None = None,
    environment: str | None = None,
    limit: str | None = Query(default=None, description="1 to 1000 (default 100)"),
    cursor: str | None = Query(default=None, description="The `next` of the previous page"),
) -> dict[str, Any]:
    """Lists the organization's audit entries, newest first, a page at a time."""
    query = parse_audit_filter(
        since=since,
        until=until,
        action=action,
        key=key,
        actor=actor,
        project=project,
        environment=environment,
        limit=limit,
        cursor=cursor,
    )
    page = await run(services.audit.query, caller, query)
    return {"entries": page.entries, "next": page.next}


@router.get("/public-key")
async def public_key(services: ServicesDep, format: str = "json") -> Any:
    """The Ed25519 key that verifies checkpoints (``format=pem`` for the PEM block alone)."""
    key = services.audit.public_key
    if format == "pem":
        return PlainTextResponse(key.to_pem())
    if format != "json":
        raise InvalidQuery("format: must be json or pem", field="format")
    return {"key_id": key.key_id, "public_key": key.to_base64(), "pem": key.to_pem()}


@router.post("/verify")
async def verify(
    caller: Caller, services: ServicesDep, run: Run, body: VerifyRequest | None = None
) -> dict[str, Any]:
    """Seals, signs a checkpoint and verifies the whole stored log; ``ok`` says whether
    everything verified and ``first_problem`` names the first bad entry."""
    known = (
        Checkpoint.from_json(body.known_checkpoint)
        if body is not None and body.known_checkpoint is not None
        else None
    )
    report = await run(services.audit.verify, caller, known=known)
    return report.to_json()


@router.get("/export")
async def export(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    format: str = Query(default="jsonl", description="jsonl, cef or syslog"),
    since: str | None = Query(default=None, description="Unix seconds"),
) -> StreamingResponse:
    """Exports the log from ``since`` on. The JSONL form carries checkpoints and the prefix
    proof that ``coffer audit verify --export`` checks offline."""
    start = parse_audit_filter(since=since).since
    spool = await run(_spool, services.audit.export(caller, fmt=format, since=start))
    return StreamingResponse(
        _chunks(spool),
        media_type=_MEDIA.get(format, "text/plain"),
        headers={"Content-Disposition": f'attachment; filename="coffer-audit.{format}"'},
    )


def _spool(lines: Iterator[bytes]) -> IO[bytes]:
    """Writes the export to a temporary file first, so the database is free while the
    client downloads at its own pace."""
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the response, closed there
    for line in lines:
        spool.write(line)
    spool.seek(0)
    return spool


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    with spool:
        while chunk := spool.read(_CHUNK):
            yield chunk


@router.get("/entries/{entry_id}/proof")
async def proof(entry_id: str, caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """An inclusion proof of one entry against the latest signed checkpoint."""
    result: dict[str, Any] = await run(services.audit.proof, caller, entry_id)
    return result


@router.post("/prune")
async def prune(
    caller: Caller, services: ServicesDep, run: Run, body: PruneRequest | None = None
) -> dict[str, Any]:
    """Removes entries older than the retention period, keeping the rest verifiable."""
    result = await run(services.audit.prune, caller, days=body.days if body else None)
    return {"removed": result.removed, "before_index": result.before_index}
