"""Members' requests for time-bound access, approved or denied by someone else (issue 9,
part 3).

A person asks for ``read`` or ``write`` access to a project or one environment, for a
reason and a duration. An admin who is not the requester approves it: in the same
transaction a grant is created that expires at approval time + duration (``decide``
ignores it from then on; no job is needed), with ``request.approved`` and
``grant.created`` entries. An unexpired grant already on exactly that project or
environment (standing or time-bound) is never silently replaced (it may be the ``none``
that narrows the requester): approving then answers Conflict with nothing changed, so
nothing outlives the request but what was there before.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.access import Action
from coffer.domain.access_requests import (
    AccessRequest,
    RequestStatus,
    own_decision_refusal,
    parse_request_duration,
    parse_requested_access,
    parse_status_filter,
    validate_note,
    validate_reason,
    validate_record_id,
)
from coffer.domain.errors import Conflict, NotFound
from coffer.domain.events import Event
from coffer.domain.evidence import iso_time
from coffer.domain.models import ActorKind, CallContext
from coffer.domain.names import validate_resource_name
from coffer.domain.team import GrantInfo
from coffer.services.access import AccessGate
from coffer.services.lookup import require_environment, require_project
from coffer.storage import access_store, request_store, user_store


class AccessRequestService:
    """Asks for, lists and decides access requests."""

    def __init__(self, engine: Engine, audit: AuditWriter, gate: AccessGate) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate

    def create(
        self,
        ctx: CallContext,
        *,
        project: str,
        environment: str | None,
        access: str,
        reason: str,
        duration: str | int,
    ) -> AccessRequest:
        """Asks for ``access`` (read or write) to ``project`` (or one ``environment`` of it)
        for ``duration`` (5 minutes to 30 days) because of ``reason``; records
        ``request.created``. Only people may ask. Raises InvalidInput naming the field,
        NotFound for an unknown project or environment, AccessDenied for a machine."""
        validate_resource_name(project, field="project")
        if environment is not None:
            validate_resource_name(environment, field="environment")
        level = parse_requested_access(access)
        why = validate_reason(reason)
        seconds = parse_request_duration(duration)
        if not ctx.actor.is_person:
            self._gate.deny(
                ctx,
                Action.PROJECT_VIEW,
                "only people may request access; an admin grants a machine its access "
                "(`coffer grants add --machine`)",
                project=project,
            )
        self._gate.require(ctx, Action.PROJECT_VIEW)
        now = time.time()
        with self._engine.begin() as conn:
            found = require_project(conn, ctx.actor, project)
            if environment is not None:
                require_environment(conn, found, environment)
            request_id = request_store.insert_request(
                conn,
                org_id=ctx.actor.org_id,
                requester_id=ctx.actor.id,
                requester_kind=str(ctx.actor.kind),
                project=project,
                environment=environment,
                access=level,
                reason=why,
                duration_seconds=seconds,
                now=now,
            )
            self._audit.append(
                conn,
                ctx,
                Event.REQUEST_CREATED,
                project=project,
                environment=environment,
                metadata={
                    "request_id": request_id,
                    "requester_name": ctx.actor.name,
                    "access": level.value,
                    "duration_seconds": seconds,
                    "reason": why,
                },
            )
            return self._found(conn, ctx, request_id)

    def list_requests(self, ctx: CallContext, status: str | None = None) -> list[AccessRequest]:
        """Returns requests newest first: every one of the organization for admins, the
        caller's own for anyone else; ``status`` filters (pending, approved, denied,
        cancelled, expired, or all). Raises InvalidInput naming ``status``."""
        wanted = parse_status_filter(status, RequestStatus)
        self._gate.require(ctx, Action.PROJECT_VIEW)
        mine = None if AccessGate.allows(ctx, Action.TEAM_VIEW) else ctx.actor.id
        with self._engine.connect() as conn:
            return request_store.list_requests(
                conn,
                ctx.actor.org_id,
                now=time.time(),
                requester_id=mine,
                status=RequestStatus(wanted) if wanted else None,
            )

    def get(self, ctx: CallContext, request_id: str) -> AccessRequest:
        """Returns one request the caller may see (their own, or any for an admin); raises
        NotFound otherwise."""
        self._gate.require(ctx, Action.PROJECT_VIEW)
        with self._engine.connect() as conn:
            return self._found(conn, ctx, _request_id(request_id))

    def _found(
        self, conn: sa.Connection, ctx: CallContext, request_id: str, *, for_update: bool = False
    ) -> AccessRequest:
        found = request_store.find_request(
            conn, ctx.actor.org_id, request_id, for_update=for_update
        )
        if found is None or (
            found.requester.id != ctx.actor.id and not AccessGate.allows(ctx, Action.TEAM_VIEW)
        ):
            raise NotFound(f"no access request {request_id!r}", field="id")
        return found

    def approve(self, ctx: CallContext, request_id: str, note: str | None = None) -> AccessRequest:
        """Approves a pending request (admins other than the requester): creates the grant,
        expiring at now + the request's duration, and records ``request.approved`` and
        ``grant.created``. Raises AccessDenied for the requester's own (nothing changed),
        NotFound, Conflict when it is not pending (or expired), its requester is gone, or an
        unexpired grant (standing or time-bound) is already on that project or environment."""
        return self._decide(ctx, request_id, note, approve=True)

    def deny(self, ctx: CallContext, request_id: str, note: str | None) -> AccessRequest:
        """Denies a pending request (admins other than the requester) with a note; records
        ``request.denied``. Raises as ``approve`` does, and InvalidInput naming ``note``."""
        return self._decide(ctx, request_id, note, approve=False)

    def cancel(self, ctx: CallContext, request_id: str) -> AccessRequest:  # noqa: RET503
        """Withdraws the caller's own pending request; records ``request.cancelled``. Raises
        AccessDenied for someone else's (admins deny instead), NotFound, Conflict when it is
        not pending. (Someone else's is refused through the gate, which records
        ``access.denied``, after this transaction ends.)"""
        wanted = _request_id(request_id)
        self._gate.require(ctx, Action.PROJECT_VIEW)
        now = time.time()
        with self._engine.begin() as conn:
            found = self._found(conn, ctx, wanted, for_update=True)
            if found.requester.id == ctx.actor.id:
                _require_pending(found, now)
                request_store.record_decision(
                    conn, wanted, status=RequestStatus.CANCELLED, decided_by=ctx.actor.id, now=now
                )
                self._audit.append(
                    conn,
                    ctx,
                    Event.REQUEST_CANCELLED,
                    project=found.project,
                    environment=found.environment,
                    metadata={"request_id": wanted, "requester_name": found.requester.name},
                )
                return self._found(conn, ctx, wanted)
        self._gate.deny(
            ctx,
            Action.PROJECT_VIEW,
            "only the requester may cancel a request; an admin denies it instead",
            project=found.project,
        )

    def _decide(
        self, ctx: CallContext, request_id: str, note: str | None, *, approve: bool
    ) -> AccessRequest:
        wanted = _request_id(request_id)
        text = validate_note(note, required=not approve)
        self._gate.require(ctx, Action.TEAM_MANAGE)
        now = time.time()
        decided: AccessRequest | None = None
        with self._engine.begin() as conn:
            found = self._found(conn, ctx, wanted, for_update=True)
            if found.requester.id != ctx.actor.id:
                _require_pending(found, now)
                if approve:
                    self._grant(conn, ctx, found, text, now)
                else:
                    self._deny(conn, ctx, found, text, now)
                decided = self._found(conn, ctx, wanted)
        if decided is None:  # the requester's own: nothing changed; recorded as access.denied
            self._gate.deny(ctx, Action.TEAM_MANAGE, own_decision_refusal("access request"))
        return decided

    def _grant(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        request: AccessRequest,
        note: str | None,
        now: float,
    ) -> None:
        requester = user_store.find_user(conn, request.requester.id)
        if requester is None or requester.org_id != ctx.actor.org_id:
            raise Conflict(
                f"{request.requester.name or request.requester.id} is no longer a member",
                field="id",
            )
        project = require_project(conn, ctx.actor, request.project)
        env = (
            require_environment(conn, project, request.environment)
            if request.environment is not None
            else None
        )
        existing = _existing_grant(conn, ctx.actor.org_id, request, now)
        if existing is not None:
            ends = existing.expires_at
            held = "a standing" if ends is None else "a time-bound"
            until = "" if ends is None else f" (until {iso_time(ends)})"
            raise Conflict(
                f"{requester.email} already has {held} {existing.access.value} grant on "
                f"{request.target}{until}, which approving would replace; change that grant with "
                "`coffer grants add` (or wait until it ends) instead",
                field="id",
            )
        expires_at = now + request.duration_seconds
        grant_id = access_store.put_grant(
            conn,
            org_id=ctx.actor.org_id,
            identity_id=requester.id,
            identity_kind=str(ActorKind.USER),
            project_id=project.id,
            environment_id=env.id if env else None,
            access=request.access,
            expires_at=expires_at,
            created_by=ctx.actor.id,
            now=now,
        )
        request_store.record_decision(
            conn,
            request.id,
            status=RequestStatus.APPROVED,
            decided_by=ctx.actor.id,
            now=now,
            note=note,
            grant_id=grant_id,
            expires_at=expires_at,
        )
        self._audit.append(
            conn,
            ctx,
            Event.REQUEST_APPROVED,
            project=request.project,
            environment=request.environment,
            metadata={
                "request_id": request.id,
                "requester": requester.id,
                "requester_name": requester.email,
                "decided_by_name": ctx.actor.name,
                "access": request.access.value,
                "grant_id": grant_id,
                "expires_at": expires_at,
                "note": note,
            },
        )
        self._audit.append(
            conn,
            ctx,
            Event.GRANT_CREATED,
            project=request.project,
            environment=request.environment,
            metadata={
                "grant_id": grant_id,
                "to": requester.email,
                "to_kind": str(ActorKind.USER),
                "access": request.access.value,
                "expires_at": expires_at,
                "request_id": request.id,
            },
        )

    def _deny(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        request: AccessRequest,
        note: str | None,
        now: float,
    ) -> None:
        request_store.record_decision(
            conn,
            request.id,
            status=RequestStatus.DENIED,
            decided_by=ctx.actor.id,
            now=now,
            note=note,
        )
        self._audit.append(
            conn,
            ctx,
            Event.REQUEST_DENIED,
            project=request.project,
            environment=request.environment,
            metadata={
                "request_id": request.id,
                "requester": request.requester.id,
                "requester_name": request.requester.name,
                "decided_by_name": ctx.actor.name,
                "note": note,
            },
        )


def _request_id(text: str) -> str:
    """A request id; raises InvalidInput naming ``id``."""
    return validate_record_id(text, field="id", what="an access request")


def _require_pending(request: AccessRequest, now: float) -> None:
    status = request.status_at(now)
    if status is not RequestStatus.PENDING:
        raise Conflict(f"access request {request.id} is {status.value}, not pending", field="id")


def _existing_grant(
    conn: sa.Connection, org_id: str, request: AccessRequest, now: float
) -> GrantInfo | None:
    """The requester's unexpired grant (without expiry, or ending after ``now``) on
    exactly the request's project or environment, or None."""
    for grant in access_store.list_grants(conn, org_id, identity_id=request.requester.id):
        if (
            grant.project == request.project
            and grant.environment == request.environment
            and (grant.expires_at is None or grant.expires_at > now)
        ):
            return grant
    return None
