"""Offboarding a member in one step (issue 9, part 5): in one transaction their sessions,
CLI tokens, API keys and grants are revoked, they leave the organization (as ``coffer
members remove`` does), every secret they could read is flagged for rotation, and the
secrets the audit log shows they read are listed; an ``offboardings`` record and a
``member.offboarded`` entry keep the evidence."""

from __future__ import annotations

import time
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.access import AccessLevel, Action, Grant, Role, effective_access
from coffer.domain.access_reviews import Period, parse_period
from coffer.domain.errors import AccessDenied, Conflict, NotFound
from coffer.domain.events import Event
from coffer.domain.identity import normalize_email
from coffer.domain.models import CallContext
from coffer.domain.offboarding import MAX_LISTED, FlaggedSecret, OffboardingRecord
from coffer.services.access import AccessGate
from coffer.services.token_issuer import API_KEY, SESSION_TOKEN
from coffer.storage import access_store, offboarding_store, token_store, user_store
from coffer.storage.ids import new_id
from coffer.storage.rotation_store import flag_for_rotation
from coffer.storage.user_store import UserRow

VIA_OFFBOARDING = "offboarding"
VIA_ACCESS_REVIEW = "access_review"


class RefusedForActor(AccessDenied):
    """A refusal found inside a transaction that depends on who asks (deciding one's own
    review line, offboarding oneself). The transaction rolls back; the service then records
    it as ``access.denied`` through ``AccessGate.deny``, which needs the connection free."""


class OffboardingService:
    """Offboards members and lists the offboardings."""

    def __init__(self, engine: Engine, audit: AuditWriter, gate: AccessGate) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate

    def offboard(self, ctx: CallContext, email: str) -> OffboardingRecord:
        """Offboards member ``email`` (admins and owners) and returns the record. Raises
        InvalidInput for a malformed address, NotFound for a non-member, Conflict for the
        owner (transfer ownership first), AccessDenied for oneself; a refusal changes
        nothing."""
        address = normalize_email(email)
        self._gate.require(ctx, Action.TEAM_MANAGE)
        now = round(time.time(), 6)
        try:
            with self._engine.begin() as conn:
                user = user_store.find_user_by_email(conn, address, for_update=True)
                if user is None or user.org_id != ctx.actor.org_id:
                    raise NotFound(f"no member {address} in this organization", field="email")
                if user.id == ctx.actor.id:
                    raise RefusedForActor(
                        "nobody offboards themselves: another admin must offboard you"
                    )
                return self.offboard_in(conn, ctx, user, now, review_id=None)
        except RefusedForActor as refused:
            self._gate.deny(ctx, Action.TEAM_MANAGE, refused.message)

    def offboard_member(
        self, conn: sa.Connection, ctx: CallContext, user_id: str, now: float, *, review_id: str
    ) -> OffboardingRecord | None:
        """Offboards the organization's member ``user_id`` inside the caller's transaction
        because access review ``review_id`` revoked them; None when they no longer exist.
        Raises Conflict for the owner."""
        user = user_store.find_user(conn, user_id, for_update=True)
        if user is None or user.org_id != ctx.actor.org_id:
            return None
        return self.offboard_in(conn, ctx, user, now, review_id=review_id)

    def offboard_in(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        user: UserRow,
        now: float,
        *,
        review_id: str | None,
    ) -> OffboardingRecord:
        """Does the offboarding of ``user`` on the caller's connection and returns its
        record. Raises Conflict for the owner."""
        if user.role is Role.OWNER:
            raise Conflict(
                f"{user.email} is the owner and cannot be offboarded; transfer ownership first "
                "(`coffer members transfer`)",
                field="email",
            )
        org_id = ctx.actor.org_id
        grants = [
            Grant(g.project, g.environment, g.access, g.expires_at)
            for g in access_store.list_grants(conn, org_id, identity_id=user.id)
        ]
        readable = [
            secret
            for secret in offboarding_store.current_secrets(conn, org_id, now)
            if effective_access(user.role, grants, secret.project, secret.environment, now)
            is not AccessLevel.NONE
        ]
        read = offboarding_store.secrets_read_by(conn, org_id, user.id)
        active = Counter(
            t.kind for t in token_store.list_tokens(conn, org_id, now=now, identity_id=user.id)
        )
        token_store.revoke_tokens(conn, now=now, identity_id=user.id)
        access_store.delete_identity_grants(conn, user.id)
        user_store.delete_user(conn, user.id)
        flagged = flag_for_rotation(
            conn,
            (s.secret_id for s in readable),
            reason="offboarding",
            detail=user.email,
            by=ctx.actor.id,
            now=now,
        )
        sessions, keys = active[SESSION_TOKEN], active[API_KEY]
        record = OffboardingRecord(
            id=new_id(),
            user_id=user.id,
            email=user.email,
            role=user.role.value,
            offboarded_by=ctx.actor.id,
            offboarded_by_name=ctx.actor.name,
            offboarded_at=now,
            via=VIA_OFFBOARDING if review_id is None else VIA_ACCESS_REVIEW,
            review_id=review_id,
            sessions_revoked=sessions,
            tokens_revoked=sum(active.values()) - sessions - keys,
            api_keys_revoked=keys,
            grants_revoked=len(grants),
            secrets_flagged=flagged,
            secrets_read=len(read),
            flagged=tuple(
                FlaggedSecret(s.project, s.environment, s.key, s.version)
                for s in readable[:MAX_LISTED]
            ),
            read=tuple(read[:MAX_LISTED]),
        )
        offboarding_store.insert_offboarding(conn, org_id, record)
        self._audit.append(conn, ctx, Event.MEMBER_OFFBOARDED, metadata=record.audit_metadata())
        return record

    def list(
        self, ctx: CallContext, start: str | None = None, end: str | None = None
    ) -> tuple[Period, list[OffboardingRecord]]:
        """Returns the period asked for (``from``/``to``: dates or ISO 8601 times) and the
        offboardings in it, oldest first (admins and owners). Raises InvalidQuery naming the
        parameter that does not parse, or ``to`` when it comes before ``from``."""
        period = parse_period(start, end)
        self._gate.require(ctx, Action.TEAM_VIEW)
        with self._engine.connect() as conn:
            return period, offboarding_store.list_offboardings(conn, ctx.actor.org_id, period)
