"""Logging in and out, changing a password, and accepting an invitation.

Unknown e-mail and wrong password look the same (status, message, and time: an unknown
user costs one dummy hash). Failures are throttled per address and per account, so neither
guessing one password everywhere nor every password on one account gets far. No database
connection is held while a password is hashed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto.tokens import hash_token, token_kind
from coffer.domain.access import Action
from coffer.domain.durations import parse_duration
from coffer.domain.errors import Conflict, Unauthenticated
from coffer.domain.events import Event, Result
from coffer.domain.identity import MAX_PASSWORD_LENGTH, normalize_email, validate_password
from coffer.domain.models import Actor, ActorKind, CallContext
from coffer.domain.team import IssuedToken, LoginResult
from coffer.services.access import AccessGate
from coffer.services.mfa import MfaService
from coffer.services.password_pool import PasswordPool
from coffer.services.throttle import Throttle
from coffer.services.token_issuer import CLI_TOKEN, INVITATION_TOKEN, SESSION_TOKEN, issue_token
from coffer.storage import token_store, user_store
from coffer.storage.user_store import UserRow

_BAD_LOGIN = "invalid e-mail or password"
_BAD_MFA = "invalid MFA code"
_LOCKED = "too many failed logins for this account; wait before trying again"
_BAD_INVITATION = "the invitation is not valid (unknown, expired or already used)"
MAX_TOKEN_TTL = 365 * 86400


@dataclass(frozen=True)
class SessionPolicy:
    """Lifetimes of what a login hands out (seconds)."""

    cli_token_ttl: int
    session_idle: int
    session_max: int


def user_actor(user: UserRow, token_id: str | None = None) -> Actor:
    """The actor a user is, for audit entries written around a login."""
    return Actor(
        id=user.id,
        kind=ActorKind.USER,
        org_id=user.org_id,
        name=user.email,
        role=user.role,
        token_id=token_id,
    )


def _claimed(user: UserRow | None, address: str) -> Actor:
    """Who a failed login claimed to be (an unknown address has no id or organization)."""
    if user is not None:
        return user_actor(user)
    return Actor(id="", kind=ActorKind.USER, org_id="", name=address)


class LoginService:
    """Authenticates people with e-mail and password (and TOTP), and issues tokens."""

    def __init__(
        self,
        engine: Engine,
        passwords: PasswordPool,
        mfa: MfaService,
        throttle: Throttle,
        audit: AuditWriter,
        gate: AccessGate,
        policy: SessionPolicy,
    ) -> None:
        self._engine = engine
        self._passwords = passwords
        self._mfa = mfa
        self._throttle = throttle
        self._audit = audit
        self._gate = gate
        self._policy = policy

    def login(
        self,
        email: str,
        password: str,
        *,
        totp_code: str | None = None,
        session: bool = False,
        token_name: str | None = None,
        ttl: str | int | None = None,
        source_ip: str | None = None,
        user_agent: str | None = None,
    ) -> LoginResult:
        """Returns a new CLI token (or browser session with ``session``) for the person.
        Raises InvalidInput for a malformed e-mail address, Unauthenticated for a wrong
        e-mail/password or MFA code (MfaRequired when a code is due), RateLimited when the
        address or the account is throttled. Records ``auth.login`` or ``auth.login_failed``."""
        address = normalize_email(email)
        ttl_seconds = (
            None
            if ttl is None
            else parse_duration(ttl, field="expires_in", minimum=60, maximum=MAX_TOKEN_TTL)
        )
        self._throttle.hit("login_per_ip", source_ip or "unknown")
        self._throttle.check("login_failures_per_account", address, message=_LOCKED)
        with self._engine.connect() as conn:
            user = user_store.find_user_by_email(conn, address)
        ctx = CallContext(actor=_claimed(user, address), source_ip=source_ip, user_agent=user_agent)
        acceptable = isinstance(password, str) and len(password) <= MAX_PASSWORD_LENGTH
        stored = user.password_hash if user is not None else None
        if not self._passwords.verify(stored, password if acceptable else "") or not acceptable:
            self._failed(ctx, address, "bad credentials", _BAD_LOGIN)
        assert user is not None
        if user.mfa_enabled_at is not None:
            self._mfa.require_code(totp_code)
        now = time.time()
        issued: IssuedToken | None = None
        with self._engine.begin() as conn:
            if self._second_factor_ok(conn, user, totp_code, now):
                issued = self._issue(conn, user, session, token_name, ttl_seconds, now)
                ctx = CallContext(
                    actor=user_actor(user, issued.info.id),
                    source_ip=source_ip,
                    user_agent=user_agent,
                )
                self._audit.append(
                    conn,
                    ctx,
                    Event.TOKEN_CREATED,
                    metadata={"kind": issued.info.kind, "token_id": issued.info.id},
                )
                self._audit.append(
                    conn,
                    ctx,
                    Event.AUTH_LOGIN,
                    metadata={
                        "token_kind": issued.info.kind,
                        "mfa": user.mfa_enabled_at is not None,
                    },
                )
        if issued is None:
            self._failed(ctx, address, "bad MFA code", _BAD_MFA)
        return LoginResult(issued=issued, email=user.email, role=user.role, org_id=user.org_id)

    def _second_factor_ok(
        self, conn: sa.Connection, user: UserRow, code: str | None, now: float
    ) -> bool:
        """True when the user has no MFA, or ``code`` passes (checked under the row lock)."""
        if user.mfa_enabled_at is None:
            return True
        locked = user_store.find_user(conn, user.id, for_update=True)
        return (
            locked is not None
            and code is not None
            and self._mfa.second_factor_ok(conn, locked, code, now)
        )

    def _issue(
        self,
        conn: sa.Connection,
        user: UserRow,
        session: bool,
        token_name: str | None,
        ttl: int | None,
        now: float,
    ) -> IssuedToken:
        if session:
            return issue_token(
                conn,
                org_id=user.org_id,
                kind=SESSION_TOKEN,
                name=token_name or "browser session",
                identity_id=user.id,
                identity_kind=str(ActorKind.USER),
                now=now,
                expires_at=now + self._policy.session_max,
                idle_timeout=self._policy.session_idle,
            )
        return issue_token(
            conn,
            org_id=user.org_id,
            kind=CLI_TOKEN,
            name=token_name or "coffer login",
            identity_id=user.id,
            identity_kind=str(ActorKind.USER),
            now=now,
            expires_at=now + (self._policy.cli_token_ttl if ttl is None else ttl),
        )

    def _failed(self, ctx: CallContext, address: str, reason: str, message: str) -> NoReturn:
        """Records the failure, counts it against the account, raises Unauthenticated."""
        with self._engine.begin() as conn:
            self._audit.append(
                conn,
                ctx,
                Event.AUTH_LOGIN_FAILED,
                result=Result.FAILURE,
                metadata={"email": address, "reason": reason},
            )
        self._throttle.hit("login_failures_per_account", address, message=_LOCKED)
        raise Unauthenticated(message)

    def whoami(self, ctx: CallContext) -> Actor:
        """Returns the caller as the policy sees it (role, grants, restrictions)."""
        self._gate.require(ctx, Action.SESSION_VIEW)
        return ctx.actor

    def logout(self, ctx: CallContext) -> None:
        """Revokes the token or session the caller used; records ``auth.logout``. Machines
        may not (an admin revokes their tokens)."""
        self._gate.require(ctx, Action.SESSION_END)
        if ctx.actor.token_id is None:
            raise Unauthenticated("no token to log out of")
        with self._engine.begin() as conn:
            token_store.revoke_tokens(conn, now=time.time(), token_id=ctx.actor.token_id)
            self._audit.append(
                conn, ctx, Event.AUTH_LOGOUT, metadata={"token_kind": ctx.actor.token_kind}
            )

    def change_password(self, ctx: CallContext, current: str, new: str) -> int:
        """Replaces the caller's password after checking the current one, and revokes every
        other session and CLI token of theirs; returns how many were revoked. API keys stay
        (revoke them with ``coffer keys revoke``). Raises InvalidInput for a weak new
        password, Unauthenticated for a wrong current one."""
        self._gate.require(ctx, Action.MFA_MANAGE)  # a person's own login only
        validate_password(new, field="new_password")
        with self._engine.connect() as conn:
            user = user_store.find_user(conn, ctx.actor.id)
        if user is None or not isinstance(current, str) or len(current) > MAX_PASSWORD_LENGTH:
            raise Unauthenticated("the current password is not correct")
        if not self._passwords.verify(user.password_hash, current):
            self._throttle.hit("login_failures_per_account", user.email, message=_LOCKED)
            raise Unauthenticated("the current password is not correct")
        new_hash = self._passwords.hash(new)
        now = time.time()
        with self._engine.begin() as conn:
            user_store.update_user(conn, user.id, password_hash=new_hash, password_changed_at=now)
            revoked = token_store.revoke_tokens(
                conn,
                now=now,
                identity_id=user.id,
                except_token_id=ctx.actor.token_id,
                kinds=(CLI_TOKEN, SESSION_TOKEN),
            )
            self._audit.append(
                conn, ctx, Event.AUTH_PASSWORD_CHANGED, metadata={"sessions_revoked": revoked}
            )
        return revoked

    def accept_invitation(
        self,
        invitation_token: str,
        password: str,
        *,
        source_ip: str | None = None,
        user_agent: str | None = None,
    ) -> UserRow:
        """Creates the invited person's account with ``password`` and returns it. Raises
        InvalidInput for a weak password, Unauthenticated for an unknown, expired or used
        invitation, Conflict when the address already has an account."""
        validate_password(password)
        if token_kind(invitation_token) != INVITATION_TOKEN:
            raise Unauthenticated(_BAD_INVITATION)
        self._throttle.hit("login_per_ip", source_ip or "unknown")
        password_hash = self._passwords.hash(password)
        now = time.time()
        with self._engine.begin() as conn:
            claimed = user_store.claim_invitation(conn, hash_token(invitation_token), now)
            if claimed is None:
                raise Unauthenticated(_BAD_INVITATION)
            org_id, invitation = claimed
            if user_store.find_user_by_email(conn, invitation.email) is not None:
                raise Conflict(f"{invitation.email} already has an account", field="email")
            user_store.insert_user(
                conn,
                org_id=org_id,
                email=invitation.email,
                password_hash=password_hash,
                role=invitation.role,
                now=now,
            )
            user = user_store.find_user_by_email(conn, invitation.email)
            assert user is not None
            ctx = CallContext(actor=user_actor(user), source_ip=source_ip, user_agent=user_agent)
            self._audit.append(conn, ctx, Event.MEMBER_JOINED, metadata={"role": user.role.value})
        return user
