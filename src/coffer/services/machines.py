"""Machine identities (service accounts) and grants: who beyond their role may reach which
project or environment, how, and until when."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.access import AccessLevel, Action, Role, parse_access, parse_networks
from coffer.domain.durations import parse_duration
from coffer.domain.errors import Conflict, InvalidInput, NotFound
from coffer.domain.events import Event
from coffer.domain.identity import normalize_email
from coffer.domain.models import ActorKind, CallContext
from coffer.domain.names import validate_resource_name
from coffer.domain.team import GrantInfo, IssuedToken, MachineInfo
from coffer.services.access import AccessGate
from coffer.services.lookup import require_environment, require_project
from coffer.services.token_issuer import MACHINE_TOKEN, issue_token
from coffer.services.tokens import MAX_KEY_TTL, validate_token_name
from coffer.storage import access_store, token_store, user_store

MAX_GRANT_TTL = 3650 * 86400


@dataclass(frozen=True)
class Scope:
    """What a grant or a machine scope asks for: a project, maybe one environment, a level."""

    project: str
    environment: str | None
    access: AccessLevel

    @classmethod
    def parse(cls, text: str, *, field: str = "scopes") -> Scope:
        """Parses ``project[:environment]:access`` (``app:production:read``, ``app:write``)."""
        parts = text.split(":") if isinstance(text, str) else []
        if len(parts) not in (2, 3):
            raise InvalidInput(
                f"{field}: {text!r} must be project:access or project:environment:access",
                field=field,
            )
        project = validate_resource_name(parts[0], field=field)
        environment = validate_resource_name(parts[1], field=field) if len(parts) == 3 else None
        return cls(project, environment, parse_access(parts[-1], field=field))


def _until(expires_in: str | int | None, expires_at: float | None, now: float) -> float | None:
    if expires_in is not None and expires_at is not None:
        raise InvalidInput("give expires_in or expires_at, not both", field="expires_in")
    if expires_in is not None:
        return now + parse_duration(expires_in, field="expires_in", maximum=MAX_GRANT_TTL)
    if expires_at is not None and expires_at <= now:
        raise InvalidInput("expires_at must be in the future", field="expires_at")
    return expires_at


class AccessService:
    """Creates machines and their tokens, and grants access to people and machines."""

    def __init__(self, engine: Engine, audit: AuditWriter, gate: AccessGate) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate

    def _put_grant(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        *,
        identity_id: str,
        identity_kind: str,
        identity_name: str,
        scope: Scope,
        expires_at: float | None,
        now: float,
    ) -> str:
        project = require_project(conn, ctx.actor, scope.project)
        env = (
            require_environment(conn, project, scope.environment)
            if scope.environment is not None
            else None
        )
        grant_id = access_store.put_grant(
            conn,
            org_id=ctx.actor.org_id,
            identity_id=identity_id,
            identity_kind=identity_kind,
            project_id=project.id,
            environment_id=env.id if env else None,
            access=scope.access,
            expires_at=expires_at,
            created_by=ctx.actor.id,
            now=now,
        )
        self._audit.append(
            conn,
            ctx,
            Event.GRANT_CREATED,
            project=scope.project,
            environment=scope.environment,
            metadata={
                "grant_id": grant_id,
                "to": identity_name,
                "to_kind": identity_kind,
                "access": scope.access.value,
                "expires_at": expires_at,
            },
        )
        return grant_id

    def create_machine(
        self,
        ctx: CallContext,
        name: str,
        *,
        scopes: Sequence[str],
        description: str | None = None,
        allowed_ips: Sequence[str] = (),
        valid_after: float | None = None,
        valid_before: float | None = None,
    ) -> MachineInfo:
        """Creates a machine identity reaching exactly ``scopes`` (``project[:env]:access``),
        optionally only from ``allowed_ips`` and only between ``valid_after`` and
        ``valid_before`` (Unix seconds). Raises InvalidInput, NotFound for an unknown project
        or environment, Conflict for a taken name."""
        validate_resource_name(name, field="name")
        parsed = [Scope.parse(s) for s in scopes]
        if not parsed:
            raise InvalidInput("scopes must name at least one project", field="scopes")
        networks = parse_networks(allowed_ips)
        if description is not None and len(description) > 256:
            raise InvalidInput("description must be at most 256 characters", field="description")
        if valid_after is not None and valid_before is not None and valid_before <= valid_after:
            raise InvalidInput("valid_before must be later than valid_after", field="valid_before")
        self._gate.require(ctx, Action.TEAM_MANAGE)
        now = time.time()
        with self._engine.begin() as conn:
            if access_store.find_machine(conn, ctx.actor.org_id, name) is not None:
                raise Conflict(f"machine {name!r} already exists", field="name")
            machine = access_store.insert_machine(
                conn,
                org_id=ctx.actor.org_id,
                name=name,
                description=description,
                allowed_ips=networks,
                valid_after=valid_after,
                valid_before=valid_before,
                created_by=ctx.actor.id,
                now=now,
            )
            self._audit.append(
                conn,
                ctx,
                Event.MACHINE_CREATED,
                metadata={
                    "name": name,
                    "scopes": ",".join(scopes),
                    "allowed_ips": ",".join(networks),
                },
            )
            for scope in parsed:
                self._put_grant(
                    conn,
                    ctx,
                    identity_id=machine.id,
                    identity_kind=str(ActorKind.MACHINE),
                    identity_name=name,
                    scope=scope,
                    expires_at=None,
                    now=now,
                )
        return machine

    def list_machines(self, ctx: CallContext) -> list[tuple[MachineInfo, list[GrantInfo]]]:
        """Returns every machine with its grants (admins and owners)."""
        self._gate.require(ctx, Action.TEAM_VIEW)
        with self._engine.connect() as conn:
            return [
                (m, access_store.list_grants(conn, ctx.actor.org_id, identity_id=m.id))
                for m in access_store.list_machines(conn, ctx.actor.org_id)
            ]

    def _machine(self, conn: sa.Connection, ctx: CallContext, name: str) -> MachineInfo:
        validate_resource_name(name, field="name")
        machine = access_store.find_machine(conn, ctx.actor.org_id, name)
        if machine is None:
            raise NotFound(f"machine {name!r} not found", field="name")
        return machine

    def delete_machine(self, ctx: CallContext, name: str) -> int:
        """Deletes a machine, its grants, and revokes its tokens; returns how many."""
        self._gate.require(ctx, Action.TEAM_MANAGE)
        with self._engine.begin() as conn:
            machine = self._machine(conn, ctx, name)
            revoked = token_store.revoke_tokens(conn, now=time.time(), identity_id=machine.id)
            access_store.delete_machine(conn, machine.id)
            self._audit.append(
                conn,
                ctx,
                Event.MACHINE_DELETED,
                metadata={"name": name, "tokens_revoked": revoked},
            )
        return revoked

    def machine_token(
        self,
        ctx: CallContext,
        name: str,
        *,
        token_name: str | None = None,
        expires_in: str | int | None = None,
    ) -> IssuedToken:
        """Issues a token for machine ``name`` (shown once), expiring after ``expires_in``."""
        ttl = (
            None
            if expires_in is None
            else parse_duration(expires_in, field="expires_in", minimum=60, maximum=MAX_KEY_TTL)
        )
        label = validate_token_name(token_name) if token_name is not None else f"{name} token"
        self._gate.require(ctx, Action.TEAM_MANAGE)
        now = time.time()
        with self._engine.begin() as conn:
            machine = self._machine(conn, ctx, name)
            issued = issue_token(
                conn,
                org_id=ctx.actor.org_id,
                kind=MACHINE_TOKEN,
                name=label,
                identity_id=machine.id,
                identity_kind=str(ActorKind.MACHINE),
                now=now,
                expires_at=None if ttl is None else now + ttl,
            )
            self._audit.append(
                conn,
                ctx,
                Event.TOKEN_CREATED,
                metadata={"kind": MACHINE_TOKEN, "machine": name, "token_id": issued.info.id},
            )
        return issued

    def grant(
        self,
        ctx: CallContext,
        *,
        member: str | None = None,
        machine: str | None = None,
        scope: str,
        expires_in: str | int | None = None,
        expires_at: float | None = None,
    ) -> GrantInfo:
        """Gives a member or a machine ``scope`` (``project[:env]:none|read|write``),
        replacing its grant on the same project/environment; optionally until a time.
        Raises InvalidInput (owners need no grants), NotFound for an unknown identity,
        project or environment."""
        if (member is None) == (machine is None):
            raise InvalidInput("name exactly one of member or machine", field="member")
        parsed = Scope.parse(scope, field="scope")
        now = time.time()
        until = _until(expires_in, expires_at, now)
        self._gate.require(ctx, Action.TEAM_MANAGE)
        with self._engine.begin() as conn:
            if member is not None:
                user = user_store.find_user_by_email(conn, normalize_email(member, field="member"))
                if user is None or user.org_id != ctx.actor.org_id:
                    raise NotFound(f"no member {member} in this organization", field="member")
                if user.role is Role.OWNER:
                    raise InvalidInput("the owner always has full access", field="member")
                identity = (user.id, str(ActorKind.USER), user.email)
            else:
                assert machine is not None
                found = self._machine(conn, ctx, machine)
                identity = (found.id, str(ActorKind.MACHINE), found.name)
            grant_id = self._put_grant(
                conn,
                ctx,
                identity_id=identity[0],
                identity_kind=identity[1],
                identity_name=identity[2],
                scope=parsed,
                expires_at=until,
                now=now,
            )
            return access_store.list_grants(conn, ctx.actor.org_id, grant_id=grant_id)[0]

    def list_grants(self, ctx: CallContext) -> list[GrantInfo]:
        """Returns every grant of the organization, expired ones included (admins)."""
        self._gate.require(ctx, Action.TEAM_VIEW)
        with self._engine.connect() as conn:
            return access_store.list_grants(conn, ctx.actor.org_id)

    def revoke_grant(self, ctx: CallContext, grant_id: str) -> GrantInfo:
        """Deletes a grant; raises NotFound for an unknown id."""
        self._gate.require(ctx, Action.TEAM_MANAGE)
        with self._engine.begin() as conn:
            found = access_store.list_grants(conn, ctx.actor.org_id, grant_id=grant_id)
            if not found:
                raise NotFound(f"no grant {grant_id!r}", field="id")
            access_store.delete_grant(conn, grant_id)
            grant = found[0]
            self._audit.append(
                conn,
                ctx,
                Event.GRANT_REVOKED,
                project=grant.project,
                environment=grant.environment,
                metadata={"grant_id": grant_id, "to": grant.identity_name},
            )
        return grant
