"""TOTP multi-factor authentication: enrolment, confirmation with recovery codes, removal,
and the second factor of a login. A code is accepted once: its time step is remembered."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto import totp
from coffer.crypto.aad import mfa_secret_aad
from coffer.domain.access import Action
from coffer.domain.errors import Conflict, InvalidInput, MfaRequired, NotFound, Unauthenticated
from coffer.domain.events import Event
from coffer.domain.models import CallContext
from coffer.domain.team import MfaEnrolment
from coffer.services.access import AccessGate
from coffer.services.kek_ring import KekRing
from coffer.storage import user_store
from coffer.storage.user_store import UserRow

_BAD_CODE = "the MFA code is not valid (wrong, expired or already used)"


class MfaService:
    """Enrols, checks and removes a person's TOTP second factor."""

    def __init__(self, engine: Engine, keks: KekRing, audit: AuditWriter, gate: AccessGate) -> None:
        self._engine = engine
        self._keks = keks
        self._audit = audit
        self._gate = gate

    def _seed(self, conn: sa.Connection, user: UserRow) -> str:
        assert user.mfa_seed is not None
        return self._keks.open(user.mfa_seed, mfa_secret_aad(user_id=user.id), conn).decode()

    def _me(self, conn: sa.Connection, ctx: CallContext) -> UserRow:
        user = user_store.find_user(conn, ctx.actor.id, for_update=True)
        if user is None:
            raise NotFound("your account no longer exists")
        return user

    def setup(self, ctx: CallContext) -> MfaEnrolment:
        """Starts enrolment: stores a new sealed TOTP seed and returns it (shown once) with its
        ``otpauth://`` URI. Raises Conflict when MFA is already on."""
        self._gate.require(ctx, Action.MFA_MANAGE)
        seed = totp.new_totp_seed()
        with self._engine.begin() as conn:
            user = self._me(conn, ctx)
            if user.mfa_enabled_at is not None:
                raise Conflict("MFA is already enabled; disable it first to enrol again")
            sealed = self._keks.seal(conn, seed.encode(), mfa_secret_aad(user_id=user.id))
            user_store.update_user(conn, user.id, mfa_seed=sealed, mfa_last_step=None)
        return MfaEnrolment(
            secret=seed, otpauth_uri=totp.provisioning_uri(seed, account=user.email)
        )

    def enable(self, ctx: CallContext, code: str) -> list[str]:
        """Confirms enrolment with a current code; returns one-time recovery codes (shown once).
        Raises InvalidInput when no enrolment is pending or the code is wrong."""
        self._gate.require(ctx, Action.MFA_MANAGE)
        codes = totp.new_recovery_codes()
        now = time.time()
        with self._engine.begin() as conn:
            user = self._me(conn, ctx)
            if user.mfa_enabled_at is not None:
                raise Conflict("MFA is already enabled")
            if user.mfa_seed is None:
                raise InvalidInput("start with `coffer mfa setup` first", field="code")
            step = totp.accepted_step(self._seed(conn, user), code, last_step=None, now=now)
            if step is None:
                raise InvalidInput(_BAD_CODE, field="code")
            user_store.update_user(conn, user.id, mfa_enabled_at=now, mfa_last_step=step)
            user_store.replace_recovery_codes(
                conn, user.id, [totp.hash_recovery_code(c) for c in codes]
            )
            self._audit.append(conn, ctx, Event.AUTH_MFA_ENABLED)
        return codes

    def disable(self, ctx: CallContext, code: str) -> None:
        """Turns MFA off after checking a current code or a recovery code. Raises Conflict
        when the organization requires MFA, InvalidInput for a bad code."""
        self._gate.require(ctx, Action.MFA_MANAGE)
        with self._engine.begin() as conn:
            user = self._me(conn, ctx)
            if user.mfa_enabled_at is None:
                raise Conflict("MFA is not enabled")
            if user.require_mfa:
                raise Conflict("your organization requires MFA; it cannot be turned off")
            if not self.second_factor_ok(conn, user, code, time.time()):
                raise InvalidInput(_BAD_CODE, field="code")
            user_store.update_user(
                conn, user.id, mfa_seed=None, mfa_enabled_at=None, mfa_last_step=None
            )
            user_store.replace_recovery_codes(conn, user.id, [])
            self._audit.append(conn, ctx, Event.AUTH_MFA_DISABLED)

    def second_factor_ok(self, conn: sa.Connection, user: UserRow, code: str, now: float) -> bool:
        """True when ``code`` is a current TOTP code not used before (its step is then
        remembered) or an unused recovery code (then used up). Call inside the transaction
        that holds the user's row."""
        code = code.strip()
        if "-" in code or not (code.isascii() and code.isdigit()):
            return user_store.use_recovery_code(conn, user.id, totp.hash_recovery_code(code), now)
        step = totp.accepted_step(
            self._seed(conn, user), code, last_step=user.mfa_last_step, now=now
        )
        if step is None:
            return False
        user_store.update_user(conn, user.id, mfa_last_step=step)
        return True

    @staticmethod
    def require_code(code: str | None) -> str:
        """Returns the code, or raises Unauthenticated-family MfaRequired when none was sent."""
        if not code:
            raise MfaRequired(
                "this account has MFA: send a TOTP code (--totp) or a recovery code",
                field="totp",
            )
        if len(code) > 64:
            raise Unauthenticated(_BAD_CODE)
        return code
