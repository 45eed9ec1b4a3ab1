"""The people of an organization: invitations, roles, removal, ownership; and the
organization's own settings (require MFA, working hours, delete)."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto.tokens import hash_token, mint_token
from coffer.domain.access import Action, Role, parse_role
from coffer.domain.durations import parse_duration
from coffer.domain.errors import Conflict, InvalidInput, NotFound
from coffer.domain.events import Event
from coffer.domain.identity import normalize_email
from coffer.domain.models import CallContext, Organization
from coffer.domain.team import InvitationInfo, IssuedInvitation, MemberInfo
from coffer.domain.working_hours import parse_working_hours
from coffer.services.access import AccessGate
from coffer.services.token_issuer import INVITATION_TOKEN
from coffer.storage import access_store, token_store, user_store
from coffer.storage.database import scrub_deleted
from coffer.storage.tables import organizations
from coffer.storage.user_store import UserRow

MAX_INVITATION_TTL = 30 * 86400


def _member(conn: sa.Connection, ctx: CallContext, email: str) -> UserRow:
    """Returns the caller's organization's member ``email``; raises NotFound."""
    address = normalize_email(email)
    user = user_store.find_user_by_email(conn, address, for_update=True)
    if user is None or user.org_id != ctx.actor.org_id:
        raise NotFound(f"no member {address} in this organization", field="email")
    return user


class TeamService:
    """Manages members and the organization."""

    def __init__(
        self, engine: Engine, audit: AuditWriter, gate: AccessGate, invitation_ttl: int
    ) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate
        self._invitation_ttl = invitation_ttl

    def members(self, ctx: CallContext) -> tuple[list[MemberInfo], list[InvitationInfo]]:
        """Returns the members and the pending invitations (admins and owners)."""
        self._gate.require(ctx, Action.TEAM_VIEW)
        with self._engine.connect() as conn:
            return (
                user_store.list_members(conn, ctx.actor.org_id),
                user_store.pending_invitations(conn, ctx.actor.org_id, time.time()),
            )

    def invite(
        self, ctx: CallContext, email: str, role: str, *, expires_in: str | int | None = None
    ) -> IssuedInvitation:
        """Invites ``email`` as ``role`` (admin or viewer) and returns the one-time invitation
        token to pass on. A pending invitation for the same address is replaced. Raises
        InvalidInput for a bad address or role, Conflict when the address is a member."""
        address = normalize_email(email)
        wanted = parse_role(role)
        ttl = (
            self._invitation_ttl
            if expires_in is None
            else parse_duration(expires_in, field="expires_in", maximum=MAX_INVITATION_TTL)
        )
        self._gate.require(ctx, Action.TEAM_MANAGE)
        token = mint_token(INVITATION_TOKEN)
        now = time.time()
        with self._engine.begin() as conn:
            existing = user_store.find_user_by_email(conn, address)
            # An account in another organization is not revealed: the invitation is made as
            # for a new address (accepting it then fails for the invitee).
            if existing is not None and existing.org_id == ctx.actor.org_id:
                raise Conflict(f"{address} is already a member", field="email")
            user_store.cancel_invitations(conn, ctx.actor.org_id, address, now)
            info = user_store.insert_invitation(
                conn,
                org_id=ctx.actor.org_id,
                email=address,
                role=wanted,
                token_hash=hash_token(token),
                invited_by=ctx.actor.id,
                now=now,
                expires_at=now + ttl,
            )
            self._audit.append(
                conn, ctx, Event.MEMBER_INVITED, metadata={"email": address, "role": wanted.value}
            )
        return IssuedInvitation(info=info, token=token)

    def change_role(self, ctx: CallContext, email: str, role: str) -> MemberInfo:
        """Makes a member an admin or a viewer. Raises NotFound for a non-member,
        InvalidInput for a bad role, Conflict for the owner (transfer ownership instead)."""
        wanted = parse_role(role)
        self._gate.require(ctx, Action.TEAM_MANAGE)
        with self._engine.begin() as conn:
            user = _member(conn, ctx, email)
            if user.role is Role.OWNER:
                raise Conflict(
                    "the owner's role changes only by `coffer members transfer`", field="email"
                )
            user_store.update_user(conn, user.id, role=wanted.value)
            self._audit.append(
                conn,
                ctx,
                Event.ROLE_CHANGED,
                metadata={"email": user.email, "from": user.role.value, "to": wanted.value},
            )
            return next(
                m for m in user_store.list_members(conn, ctx.actor.org_id) if m.id == user.id
            )

    def remove(self, ctx: CallContext, email: str) -> None:
        """Removes a member: their account, tokens, API keys and grants go. Raises NotFound
        for a non-member, Conflict for the owner."""
        self._gate.require(ctx, Action.TEAM_MANAGE)
        now = time.time()
        with self._engine.begin() as conn:
            user = _member(conn, ctx, email)
            if user.role is Role.OWNER:
                raise Conflict(
                    "the owner cannot be removed; transfer ownership first", field="email"
                )
            revoked = token_store.revoke_tokens(conn, now=now, identity_id=user.id)
            access_store.delete_identity_grants(conn, user.id)
            user_store.delete_user(conn, user.id)
            self._audit.append(
                conn,
                ctx,
                Event.MEMBER_REMOVED,
                metadata={"email": user.email, "tokens_revoked": revoked},
            )

    def transfer_ownership(self, ctx: CallContext, email: str) -> None:
        """Makes member ``email`` the owner; the previous owner becomes an admin. Owner only."""
        self._gate.require(ctx, Action.ORG_OWN)
        with self._engine.begin() as conn:
            target = _member(conn, ctx, email)
            if target.role is Role.OWNER:
                raise Conflict(f"{target.email} is already the owner", field="email")
            previous = [
                m for m in user_store.list_members(conn, ctx.actor.org_id) if m.role is Role.OWNER
            ]
            for member in previous:
                user_store.update_user(conn, member.id, role=Role.ADMIN.value)
            user_store.update_user(conn, target.id, role=Role.OWNER.value)
            self._audit.append(
                conn,
                ctx,
                Event.OWNERSHIP_TRANSFERRED,
                metadata={
                    "to": target.email,
                    "from": ",".join(m.email for m in previous) or ctx.actor.name,
                },
            )

    def organization(self, ctx: CallContext) -> tuple[Organization, bool, str | None]:
        """Returns the caller's organization, whether it requires MFA, and its working
        hours (None when unset)."""
        self._gate.require(ctx, Action.PROJECT_VIEW)
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    organizations.c.id,
                    organizations.c.name,
                    organizations.c.created_at,
                    organizations.c.require_mfa,
                    organizations.c.working_hours,
                ).where(organizations.c.id == ctx.actor.org_id)
            ).one()
        return Organization(id=row[0], name=row[1], created_at=row[2]), bool(row[3]), row[4]

    def set_working_hours(self, ctx: CallContext, text: str | None) -> str | None:
        """Sets the organization's working hours (``Mon-Fri 09:00-18:00 Europe/Paris``;
        reads outside them are flagged as anomalies), or clears them for None, ``""`` or
        ``off``; returns the stored text. Admins and owners. Raises InvalidInput naming
        ``working_hours``."""
        cleared = text is None or text.strip().lower() in ("", "off")
        stored = None if cleared or text is None else str(parse_working_hours(text))
        self._gate.require(ctx, Action.TEAM_MANAGE)
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(organizations)
                .where(organizations.c.id == ctx.actor.org_id)
                .values(working_hours=stored)
            )
            self._audit.append(conn, ctx, Event.ORG_UPDATED, metadata={"working_hours": stored})
        return stored

    def require_mfa(self, ctx: CallContext, required: bool) -> None:
        """Turns the organization's MFA requirement on or off (admins and owners). Members
        without MFA can then do nothing but enrol."""
        self._gate.require(ctx, Action.TEAM_MANAGE)
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(organizations)
                .where(organizations.c.id == ctx.actor.org_id)
                .values(require_mfa=required)
            )
            self._audit.append(conn, ctx, Event.ORG_UPDATED, metadata={"require_mfa": required})

    def delete_organization(self, ctx: CallContext, confirm: str) -> None:
        """Deletes the organization with every project, secret, key, member and token (owner
        only). ``confirm`` must repeat the organization's name."""
        self._gate.require(ctx, Action.ORG_OWN)
        with self._engine.begin() as conn:
            name = conn.execute(
                sa.select(organizations.c.name).where(organizations.c.id == ctx.actor.org_id)
            ).scalar_one()
            if confirm != name:
                raise InvalidInput(
                    "confirm must repeat the organization's name exactly", field="confirm"
                )
            self._audit.append(conn, ctx, Event.ORG_DELETED, metadata={"name": name})
            conn.execute(sa.delete(organizations).where(organizations.c.id == ctx.actor.org_id))
        scrub_deleted(self._engine)
