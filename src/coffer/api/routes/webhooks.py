"""``/api/v1/webhooks``: create (the signing secret is shown once), list, delete, test, and
the delivery log. Admins and owners."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from coffer.api.context import BlockingRunner, Caller, Run, ServicesDep
from coffer.api.serialize import iso
from coffer.domain.errors import InvalidQuery
from coffer.services.webhooks import SendOutcome, WebhookInfo
from coffer.storage.webhook_store import DeliveryRow

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])


class WebhookCreate(BaseModel):
    """Where to send which events: patterns such as ``secret.read``, ``secret.*`` or ``*``;
    optionally only those of one project."""

    url: str = Field(max_length=4096)
    events: list[str] = Field(max_length=200)
    project: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=1024)


def webhook_json(info: WebhookInfo) -> dict[str, Any]:
    """A webhook as the API shows it (never its secret)."""
    return {
        "id": info.id,
        "url": info.url,
        "events": list(info.events),
        "project": info.project,
        "description": info.description,
        "created_at": iso(info.created_at),
    }


def delivery_json(row: DeliveryRow) -> dict[str, Any]:
    """One delivery of the log."""
    return {
        "id": row.id,
        "event": row.event,
        "entry_id": row.entry_id,
        "state": row.state,
        "attempts": row.attempts,
        "status_code": row.status_code,
        "latency_ms": row.latency_ms,
        "error": row.error,
        "created_at": iso(row.created_at),
        "next_attempt_at": iso(row.next_attempt_at) if row.state == "pending" else None,
        "delivered_at": iso(row.delivered_at) if row.delivered_at is not None else None,
    }


def outcome_json(outcome: SendOutcome) -> dict[str, Any]:
    """How a test request went."""
    return {
        "delivered": outcome.delivered,
        "status_code": outcome.status_code,
        "latency_ms": outcome.latency_ms,
        "error": outcome.error,
    }


@router.post("", status_code=201)
async def create_webhook(
    body: WebhookCreate, caller: Caller, services: ServicesDep
) -> dict[str, Any]:
    """Creates a webhook; the answer holds its signing secret, shown this once."""
    # In a thread on every backend: checking the URL resolves its host name.
    created = await BlockingRunner.in_thread(
        services.webhooks.create,
        caller,
        body.url,
        body.events,
        project=body.project,
        description=body.description,
    )
    return {**webhook_json(created.info), "secret": created.secret}


@router.get("")
async def list_webhooks(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Lists the organization's webhooks."""
    hooks = await run(services.webhooks.list_webhooks, caller)
    return {"webhooks": [webhook_json(info) for info in hooks]}


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(
    webhook_id: str, caller: Caller, services: ServicesDep, run: Run
) -> Response:
    """Deletes a webhook with its delivery log; pending deliveries are dropped."""
    await run(services.webhooks.delete, caller, webhook_id)
    return Response(status_code=204)


@router.post("/{webhook_id}/test")
async def test_webhook(webhook_id: str, caller: Caller, services: ServicesDep) -> dict[str, Any]:
    """Sends a signed ``webhook.tested`` event now and reports how the request went."""
    # In a thread on every backend: the request may take up to the send timeout.
    outcome = await BlockingRunner.in_thread(services.webhooks.test, caller, webhook_id)
    return outcome_json(outcome)


@router.get("/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: str,
    caller: Caller,
    services: ServicesDep,
    run: Run,
    limit: str | None = Query(default=None, description="1 to 1000 (default 50)"),
) -> dict[str, Any]:
    """The webhook's latest deliveries, newest first."""
    count = 50
    if limit is not None:
        if not limit.isascii() or not limit.isdigit() or len(limit) > 6:
            raise InvalidQuery("limit: must be a whole number from 1 to 1000", field="limit")
        count = int(limit)
    rows = await run(services.webhooks.deliveries, caller, webhook_id, count)
    return {"deliveries": [delivery_json(row) for row in rows]}
