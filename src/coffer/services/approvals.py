"""Separation of duties: operations a policy says need a second person (issue 9, part 3).

Someone asks for an approval of an operation (``env.export`` of ``project/environment``:
an environment whose policy has ``export_approvals`` 2; ``root.rotate``: an organization
whose settings have ``root_rotation_approvals`` 2), for a reason; an admin who is not the
requester approves or denies it. An approval is valid for 24 hours after it is granted and
is used once, by its requester, in the transaction of the operation itself
(``require_approval``; ``use_root_approvals`` for the operator's root rotation, who has no
identity of the organization). A pending approval nobody decided on expires after 7 days.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.access import Action
from coffer.domain.access_requests import (
    APPROVAL_VALID_SECONDS,
    PENDING_SECONDS,
    ApprovalStatus,
    Operation,
    OperationApproval,
    own_decision_refusal,
    parse_operation,
    parse_status_filter,
    validate_note,
    validate_reason,
    validate_record_id,
)
from coffer.domain.errors import ApprovalRequired, Conflict, NotFound
from coffer.domain.events import Event
from coffer.domain.models import CallContext
from coffer.services.access import AccessGate
from coffer.services.lookup import require_scope
from coffer.storage import approval_store
from coffer.storage.settings_store import settings_for


def validate_approval_id(text: object, *, field: str = "approval") -> str:
    """Returns an approval id; raises InvalidInput naming ``field``."""
    return validate_record_id(text, field=field, what="an approval")


def how_to_approve(operation: Operation, target: str | None) -> str:
    """The sentence that tells how to get an approval for ``operation`` on ``target``."""
    if operation is Operation.ROOT_ROTATE:
        return (
            "an admin asks with `coffer approvals request root.rotate --reason ...`, another "
            "admin approves it with `coffer approvals approve ID`, then run "
            "`coffer rotate-root --approval ID`"
        )
    return (
        f"ask with `coffer approvals request env.export {target} --reason ...`, have "
        "another admin approve it with `coffer approvals approve ID`, then pass "
        "--approval ID (the approval is valid for 24 hours, once)"
    )


def _use(
    conn: sa.Connection,
    audit: AuditWriter,
    ctx: CallContext | None,
    approval: OperationApproval,
    now: float,
    *,
    project: str | None = None,
    environment: str | None = None,
) -> None:
    approval_store.mark_used(conn, approval.id, now)
    audit.append(
        conn,
        ctx,
        Event.APPROVAL_USED,
        org_id=approval.org_id,
        metadata={
            "approval_id": approval.id,
            "operation": approval.operation.value,
            "target": approval.target,
            "requested_by": approval.requested_by.id,
            "requested_by_name": approval.requested_by.name,
            "approved_by": approval.decided_by.id if approval.decided_by else None,
            "approved_by_name": approval.decided_by.name if approval.decided_by else None,
        },
        project=project,
        environment=environment,
    )


def require_approval(
    conn: sa.Connection,
    audit: AuditWriter,
    ctx: CallContext,
    approval_id: str | None,
    *,
    operation: Operation,
    target: str,
    now: float,
) -> None:
    """Uses approval ``approval_id`` for ``operation`` on ``target`` (``project/env``) by the
    caller, inside the caller's transaction: marks it used and records ``approval.used``.
    Raises ApprovalRequired, saying why and how to get one, when there is none or it is not
    an approved, unused, unexpired approval of this operation and target that the caller
    asked for and someone else approved."""
    how = how_to_approve(operation, target)
    if approval_id is None:
        raise ApprovalRequired(
            f"{operation.value} of {target} needs a second person's approval: {how}"
        )
    approval = approval_store.find_approval(
        conn, validate_approval_id(approval_id), org_id=ctx.actor.org_id, for_update=True
    )
    if approval is None:
        raise ApprovalRequired(f"there is no approval {approval_id!r}: {how}")
    why = approval.unusable_because(ctx.actor.id, operation, target, now)
    if why:
        raise ApprovalRequired(f"{why}: {how}")
    project, _, environment = target.partition("/")
    _use(conn, audit, ctx, approval, now, project=project, environment=environment)


def use_root_approvals(
    conn: sa.Connection, audit: AuditWriter, approval_ids: Sequence[str], now: float
) -> None:
    """For a root key rotation by the operator: every approval given must be an approved,
    unused, unexpired ``root.rotate`` approval (asked for and approved by two different
    people), and every organization whose settings need a second approver must have one
    among them. Marks them used and records ``approval.used`` in each organization, inside
    the caller's transaction. Raises ApprovalRequired naming what is missing."""
    how = how_to_approve(Operation.ROOT_ROTATE, None)
    given: list[OperationApproval] = []
    for text in approval_ids:
        approval_id = validate_approval_id(text)
        approval = approval_store.find_approval(conn, approval_id, org_id=None, for_update=True)
        if approval is None:
            raise ApprovalRequired(f"there is no approval {approval_id!r}: {how}")
        why = approval.unusable_because(None, Operation.ROOT_ROTATE, None, now)
        if why:
            raise ApprovalRequired(f"{why}: {how}")
        given.append(approval)
    covered = {approval.org_id for approval in given}
    names = approval_store.organization_names(conn)
    missing = [
        name
        for org_id, name in sorted(names.items(), key=lambda item: item[1])
        if org_id not in covered and settings_for(conn, org_id).root_rotation_approvals >= 2
    ]
    if missing:
        raise ApprovalRequired(
            f"rotating the root key needs a second person's approval in organization "
            f"{', '.join(missing)} (its root_rotation_approvals is 2): {how}"
        )
    for approval in given:
        _use(conn, audit, None, approval, now)


class ApprovalService:
    """Asks for, lists and decides operation approvals."""

    def __init__(self, engine: Engine, audit: AuditWriter, gate: AccessGate) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate

    def request(
        self, ctx: CallContext, operation: str, target: str | None, reason: str
    ) -> OperationApproval:
        """Asks for an approval of ``operation`` (``env.export`` of ``project/environment``,
        which the caller must be able to read; ``root.rotate``, admins) for ``reason``;
        records ``approval.requested``. Raises InvalidInput naming the field, NotFound for an
        unknown project or environment, AccessDenied."""
        op, place = parse_operation(operation, target)
        why = validate_reason(reason)
        project, environment = place.split("/") if place is not None else (None, None)
        if project is not None and environment is not None:
            self._gate.require(ctx, Action.SECRET_READ, project=project, environment=environment)
        else:
            self._gate.require(ctx, Action.KEY_ROTATE)
        now = time.time()
        with self._engine.begin() as conn:
            if project is not None and environment is not None:
                require_scope(conn, ctx.actor, project, environment)
            approval_id = approval_store.insert_approval(
                conn,
                org_id=ctx.actor.org_id,
                operation=op,
                target=place,
                reason=why,
                requested_by=ctx.actor.id,
                now=now,
                expires_at=now + PENDING_SECONDS,
            )
            self._audit.append(
                conn,
                ctx,
                Event.APPROVAL_REQUESTED,
                project=project,
                environment=environment,
                metadata={
                    "approval_id": approval_id,
                    "operation": op.value,
                    "target": place,
                    "reason": why,
                    "requested_by_name": ctx.actor.name,
                },
            )
            return self._found(conn, ctx, approval_id)

    def list_approvals(
        self, ctx: CallContext, status: str | None = None
    ) -> list[OperationApproval]:
        """Returns approvals newest first: every one of the organization for admins, the
        caller's own for anyone else; ``status`` filters (pending, approved, denied, used,
        expired, or all). Raises InvalidInput naming ``status``."""
        wanted = parse_status_filter(status, ApprovalStatus)
        self._gate.require(ctx, Action.PROJECT_VIEW)
        mine = None if AccessGate.allows(ctx, Action.TEAM_VIEW) else ctx.actor.id
        with self._engine.connect() as conn:
            return approval_store.list_approvals(
                conn,
                ctx.actor.org_id,
                now=time.time(),
                requested_by=mine,
                status=ApprovalStatus(wanted) if wanted else None,
            )

    def get(self, ctx: CallContext, approval_id: str) -> OperationApproval:
        """Returns one approval the caller may see (its requester, or an admin); raises
        NotFound otherwise."""
        self._gate.require(ctx, Action.PROJECT_VIEW)
        with self._engine.connect() as conn:
            return self._found(conn, ctx, validate_approval_id(approval_id, field="id"))

    def _found(
        self, conn: sa.Connection, ctx: CallContext, approval_id: str, *, for_update: bool = False
    ) -> OperationApproval:
        approval = approval_store.find_approval(
            conn, approval_id, org_id=ctx.actor.org_id, for_update=for_update
        )
        if approval is None or (
            approval.requested_by.id != ctx.actor.id
            and not AccessGate.allows(ctx, Action.TEAM_VIEW)
        ):
            raise NotFound(f"no approval {approval_id!r}", field="id")
        return approval

    def approve(
        self, ctx: CallContext, approval_id: str, note: str | None = None
    ) -> OperationApproval:
        """Approves a pending approval (admins other than its requester): it is valid for 24
        hours, once. Records ``approval.granted``. Raises AccessDenied (the requester's own,
        with nothing changed), NotFound, Conflict when it is not pending."""
        return self._decide(ctx, approval_id, note, approve=True)

    def deny(self, ctx: CallContext, approval_id: str, note: str | None) -> OperationApproval:
        """Denies a pending approval (admins other than its requester) with a note, kept in
        the ``approval.denied`` entry. Raises as ``approve`` does, and InvalidInput naming
        ``note``."""
        return self._decide(ctx, approval_id, note, approve=False)

    def _decide(
        self, ctx: CallContext, approval_id: str, note: str | None, *, approve: bool
    ) -> OperationApproval:
        wanted = validate_approval_id(approval_id, field="id")
        text = validate_note(note, required=not approve)
        self._gate.require(ctx, Action.TEAM_MANAGE)
        now = time.time()
        decided: OperationApproval | None = None
        with self._engine.begin() as conn:
            approval = self._found(conn, ctx, wanted, for_update=True)
            if approval.requested_by.id != ctx.actor.id:
                self._record(conn, ctx, approval, text, approve=approve, now=now)
                decided = self._found(conn, ctx, wanted)
        if decided is None:  # the requester's own: nothing changed; recorded as access.denied
            self._gate.deny(ctx, Action.TEAM_MANAGE, own_decision_refusal("approval"))
        return decided

    def _record(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        approval: OperationApproval,
        note: str | None,
        *,
        approve: bool,
        now: float,
    ) -> None:
        status = approval.status_at(now)
        if status is not ApprovalStatus.PENDING:
            raise Conflict(f"approval {approval.id} is {status.value}, not pending", field="id")
        approval_store.record_decision(
            conn,
            approval.id,
            status=ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED,
            decided_by=ctx.actor.id,
            now=now,
            expires_at=now + APPROVAL_VALID_SECONDS if approve else None,
        )
        project, _, environment = (approval.target or "").partition("/")
        self._audit.append(
            conn,
            ctx,
            Event.APPROVAL_GRANTED if approve else Event.APPROVAL_DENIED,
            project=project or None,
            environment=environment or None,
            metadata={
                "approval_id": approval.id,
                "operation": approval.operation.value,
                "target": approval.target,
                "requested_by": approval.requested_by.id,
                "requested_by_name": approval.requested_by.name,
                "decided_by_name": ctx.actor.name,
                "note": note,
                "valid_until": now + APPROVAL_VALID_SECONDS if approve else None,
            },
        )
