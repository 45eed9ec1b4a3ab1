"""``/api/v1/access-reviews``: access review campaigns (start, list, show, decide a line,
sign off, and the signed-off evidence whose SHA-256 is the digest in the audit log)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.routes.offboarding import offboarding_json
from coffer.api.serialize import iso
from coffer.domain.access_reviews import DecisionEffect, ReviewItem, ReviewStatus
from coffer.services.access_reviews import DecisionResult, ReviewDetail, ReviewSummary

router = APIRouter(prefix="/api/v1/access-reviews", tags=["access reviews"])


class ReviewStart(BaseModel):
    """A campaign's name and, optionally, when it is due (a date, meaning the end of that
    day UTC, or an ISO 8601 time)."""

    name: str = Field(max_length=1024)
    due: str | None = Field(default=None, max_length=64)


class LineDecision(BaseModel):
    """``keep`` or ``revoke`` (revoking takes effect at once), and an optional note."""

    decision: str = Field(max_length=32)
    note: str | None = Field(default=None, max_length=2048)


def _when(moment: float | None) -> str | None:
    return iso(moment) if moment is not None else None


def summary_json(summary: ReviewSummary, now: float) -> dict[str, Any]:
    """A campaign without its lines: status, who started and signed it off (ids and names),
    when it is due, its digest once signed off, and its counts."""
    review, counts, names = summary.review, summary.counts, summary.names
    return {
        "id": review.id,
        "name": review.name,
        "status": review.status.value,
        "created_by": review.created_by,
        "created_by_name": names.get(review.created_by),
        "created_at": iso(review.created_at),
        "due_at": _when(review.due_at),
        "overdue": review.status is ReviewStatus.OPEN
        and review.due_at is not None
        and now > review.due_at,
        "signed_off_by": review.signed_off_by,
        "signed_off_by_name": names.get(review.signed_off_by or ""),
        "signed_off_at": _when(review.signed_off_at),
        "digest": review.digest,
        "items_total": counts.total,
        "items_decided": counts.kept + counts.revoked,
        "kept": counts.kept,
        "revoked": counts.revoked,
    }


def item_json(item: ReviewItem, names: dict[str, str], exists: bool) -> dict[str, Any]:
    """One line: the identity as the campaign found it (role, grants, restrictions, last
    use), whether it still exists, and its decision."""
    access = item.access
    return {
        "identity_id": item.identity_id,
        "identity_kind": item.identity_kind.value,
        "identity_name": item.identity_name,
        "role": item.role,
        "grants": [
            {
                "project": g.project,
                "environment": g.environment,
                "access": g.access,
                "expires_at": _when(g.expires_at),
            }
            for g in access.grants
        ],
        "allowed_ips": list(access.allowed_ips),
        "valid_after": _when(access.valid_after),
        "valid_before": _when(access.valid_before),
        "mfa_enabled": access.mfa_enabled,
        "last_used_at": _when(item.last_used_at),
        "exists": exists,
        "decision": item.decision.value if item.decision else None,
        "decided_by": item.decided_by,
        "decided_by_name": names.get(item.decided_by or ""),
        "decided_at": _when(item.decided_at),
        "note": item.note,
    }


def detail_json(detail: ReviewDetail) -> dict[str, Any]:
    """A campaign with every line."""
    return {
        **summary_json(detail, time.time()),
        "items": [
            item_json(item, detail.names, item.identity_id in detail.existing)
            for item in detail.items
        ],
    }


def decision_json(result: DecisionResult) -> dict[str, Any]:
    """A decided line and what the decision did."""
    return {
        "review_id": result.review.id,
        "effect": result.effect.value,
        "item": item_json(result.item, result.names, exists=result.effect is DecisionEffect.KEPT),
        "offboarding": offboarding_json(result.offboarding) if result.offboarding else None,
        "tokens_revoked": result.tokens_revoked,
    }


@router.post("", status_code=201)
async def start_review(
    body: ReviewStart, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Starts a campaign listing every person and machine with its access and last use
    (admins and owners)."""
    return detail_json(await run(services.reviews.start, caller, body.name, body.due))


@router.get("")
async def list_reviews(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    start: str | None = Query(
        default=None, alias="from", description="Date or ISO 8601 time, inclusive"
    ),
    end: str | None = Query(
        default=None, alias="to", description="Date (its whole day) or ISO 8601 time, inclusive"
    ),
) -> dict[str, Any]:
    """Lists the campaigns active in the period (started by its end, not signed off before
    its start), newest first."""
    found = await run(services.reviews.list, caller, start, end)
    now = time.time()
    return {"reviews": [summary_json(summary, now) for summary in found]}


@router.get("/{review_id}")
async def show_review(
    review_id: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """A campaign with its lines and their decisions."""
    return detail_json(await run(services.reviews.show, caller, review_id))


@router.get("/{review_id}/evidence")
async def review_evidence(
    review_id: str, caller: Caller, services: ServicesDep, run: Run
) -> Response:
    """The signed-off campaign's canonical JSON, byte for byte: its SHA-256 is the
    ``digest`` of the campaign and of its ``review.signed_off`` audit entry."""
    review, document = await run(services.reviews.evidence, caller, review_id)
    return Response(
        document,
        media_type="application/json",
        headers={"X-Coffer-Digest": review.digest or ""},
    )


@router.post("/{review_id}/items/{identity}")
async def decide_line(
    review_id: str,
    identity: str,
    body: LineDecision,
    caller: Caller,
    services: ServicesDep,
    run: Run,
) -> dict[str, Any]:
    """Keeps or revokes one line (``identity``: its id, e-mail or machine name); a revoke
    offboards the person or deletes the machine at once. Nobody decides their own line."""
    result = await run(
        services.reviews.decide, caller, review_id, identity, body.decision, body.note
    )
    return decision_json(result)


@router.post("/{review_id}/sign-off")
async def sign_off(
    review_id: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Signs the campaign off once every line is decided; it cannot change afterwards."""
    return detail_json(await run(services.reviews.sign_off, caller, review_id))
