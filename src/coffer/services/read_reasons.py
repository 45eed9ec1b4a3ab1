"""Reads that must state a reason, and refusals recorded for the auditor.

An organization's policy for an environment name (``production``) may require every read
of a secret value there to state why (``require_read_reason``). Such a read without a
reason is refused with ReasonRequired; with one, the caller's reason (``CallContext.reason``,
from the ``reason`` query parameter) goes into the read's audit entry (``AuditWriter``).
Metadata-only calls (listing keys, ``HEAD``, history) need none.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.access import Action
from coffer.domain.errors import AccessDenied, ReasonRequired
from coffer.domain.events import Event, Result
from coffer.domain.models import CallContext
from coffer.storage.policy_store import policy_for


def reason_required(environment: str) -> ReasonRequired:
    """The refusal of a read without a reason in an environment whose policy wants one."""
    return ReasonRequired(
        f"reads of secrets in {environment} environments must state a reason: pass "
        '--reason "why you need it" (or set COFFER_REASON; API: the reason query parameter)',
        field="reason",
    )


def requires_reason(conn: sa.Connection, org_id: str, environment: str) -> bool:
    """True when the organization's policy for environments called ``environment``
    requires reads there to state a reason."""
    policy = policy_for(conn, org_id, environment)
    return policy is not None and policy.require_read_reason


def require_read_reason(conn: sa.Connection, ctx: CallContext, environment: str) -> None:
    """Returns when the caller stated a reason or the environment's policy needs none;
    raises ReasonRequired otherwise."""
    if ctx.reason is None and requires_reason(conn, ctx.actor.org_id, environment):
        raise reason_required(environment)


def record_refusal(
    engine: Engine,
    audit: AuditWriter,
    ctx: CallContext,
    refusal: AccessDenied,
    action: Action,
    *,
    project: str | None,
    environment: str | None,
) -> None:
    """Records ``access.denied`` for a refusal raised inside a transaction that rolled back
    (a missing reason or approval), in a transaction of its own. Must not be called while
    the caller holds a connection."""
    with engine.begin() as conn:
        audit.append(
            conn,
            ctx,
            Event.ACCESS_DENIED,
            project=project,
            environment=environment,
            result=Result.FAILURE,
            metadata={"action": action.value, "reason": refusal.message, "code": refusal.code},
        )
