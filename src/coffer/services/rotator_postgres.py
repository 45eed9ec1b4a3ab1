"""The ``postgresql`` rotator: a new password for a PostgreSQL role.

1. It connects with the admin connection URL (the value of the vault secret the
   configuration names; ``postgresql://`` or ``postgresql+psycopg://``), with a connect
   timeout and, inside the transaction, statement and lock timeouts.
2. It generates a password with ``secrets`` and sets it with ``ALTER ROLE <role> PASSWORD
   <verifier>``, built with ``psycopg.sql`` (the role is always a quoted identifier, the
   verifier a literal). The verifier is the password's SCRAM (or MD5, as the server's
   ``password_encryption`` says) hash computed by libpq on the client
   (``PQencryptPasswordConn``), so the password itself never reaches the server's logs,
   even with ``log_statement = all``; nothing here logs the statement either.
3. It checks that the new password logs in: a connection as the role, to the same host and
   database, whose ``current_user`` is the role.

When the ``ALTER`` fails nothing changed. When the check fails, the old password is put back
before RotationFailed is raised, so it keeps working. After a successful rotation, if the
vault cannot store the new value, ``rollback`` puts the old password back. Every message
says why without a credential: passwords (the admin URL's, the old and the new one) are
replaced by ``********`` in whatever the server or libpq said, and a URL that does not parse
is never echoed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from coffer.domain.errors import RotationFailed
from coffer.domain.rotators import Alphabet, PendingRotation, RotatorConfig, RotatorKind
from coffer.domain.secret_value import SecretValue
from coffer.services.rotator_random import random_value

CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 5000
_URL_PREFIXES = ("postgresql://", "postgres://")
_DRIVER_PREFIXES = ("postgresql+psycopg://", "postgresql+psycopg2://")
_MASK = "********"


@dataclass(frozen=True)
class AdminConnection:
    """Where and as whom the rotator connects: libpq parameters (with the admin password:
    never shown in ``repr``) and a description without any credential."""

    params: Mapping[str, str] = field(repr=False)
    user: str
    where: str

    @classmethod
    def parse(cls, url: SecretValue, name: str) -> AdminConnection:
        """The connection described by ``url``, the value of the vault secret ``name``.
        Raises RotationFailed (naming ``name``, never echoing the value) when it is not a
        PostgreSQL URL."""
        text = url.reveal().strip()
        for prefix in _DRIVER_PREFIXES:
            if text.startswith(prefix):
                text = "postgresql://" + text[len(prefix) :]
        problem = RotationFailed(
            f"the connection secret {name} is not a PostgreSQL connection URL "
            "(postgresql://user:password@host:port/database)"
        )
        if not text.startswith(_URL_PREFIXES):
            raise problem
        try:
            parsed = conninfo_to_dict(text)
        except psycopg.Error:
            raise problem from None
        params = {k: str(v) for k, v in parsed.items() if v is not None}
        host = params.get("host") or "the local socket"
        port = params.get("port") or "5432"
        user = params.get("user") or ""
        return cls(params=params, user=user, where=f"{host}:{port}")

    @property
    def password(self) -> str | None:
        """The admin password, if the URL holds one."""
        return self.params.get("password")

    def as_role(self, role: str, password: SecretValue) -> dict[str, str]:
        """The parameters of a connection as ``role`` with ``password`` to the same host
        and database."""
        return {**self.params, "user": role, "password": password.reveal()}


def describe(error: psycopg.Error, hidden: Iterable[str | None]) -> str:
    """What the server or libpq said (its first line), with every ``hidden`` text (the
    passwords involved) replaced by ``********``."""
    primary = error.diag.message_primary if isinstance(error, psycopg.DatabaseError) else None
    text = (primary or str(error) or type(error).__name__).strip().splitlines()
    said = text[0] if text else type(error).__name__
    for secret in hidden:
        if secret:
            said = said.replace(secret, _MASK)
    return said[:240]


def _connect(params: Mapping[str, str], timeout: int) -> psycopg.Connection[Any]:
    conninfo = make_conninfo(
        "", **{**params, "connect_timeout": str(timeout), "application_name": "coffer-rotator"}
    )
    return psycopg.connect(conninfo)


class PostgresRotator:
    """Rotates the password of a PostgreSQL role (see the module docstring)."""

    def __init__(self, *, connect_timeout: int = CONNECT_TIMEOUT_S) -> None:
        self._timeout = connect_timeout

    @property
    def kind(self) -> RotatorKind:
        """``postgresql``."""
        return RotatorKind.POSTGRESQL

    def rotate(
        self, current: SecretValue, config: RotatorConfig, connection: SecretValue | None
    ) -> PendingRotation:
        """Sets a new password of ``config.length`` letters and digits for ``config.role``
        and checks that it logs in; returns the pending rotation. Raises RotationFailed
        saying why (the old password ``current`` still works then)."""
        assert config.role is not None and config.connection is not None
        name = "/".join((config.connection.project, config.connection.environment))
        name = f"{name}/{config.connection.key}"
        if connection is None:
            raise RotationFailed(f"the connection secret {name} could not be read")
        admin = AdminConnection.parse(connection, name)
        role = config.role
        if admin.user == role:
            raise RotationFailed(
                f"role {role} is the admin connection's own user: a rotator cannot change the "
                "password it connects with; use another admin role in the connection"
            )
        new = random_value(config.length, Alphabet.ALNUM)
        self.set_password(admin, role, new, hidden=(current.reveal(),))
        try:
            self._check_login(admin, role, new, current)
        except RotationFailed as failure:
            self._put_back(admin, role, current, new, failure.message)
            raise RotationFailed(f"{failure.message}; the old password was put back") from None
        return _NewPassword(self, admin, role, current, new)

    def set_password(
        self,
        admin: AdminConnection,
        role: str,
        password: SecretValue,
        *,
        hidden: Iterable[str] = (),
    ) -> None:
        """Sets ``role``'s password over the admin connection, in one transaction, sending
        only its hash (see the module docstring). Raises RotationFailed saying why."""
        masked = (admin.password, password.reveal(), *hidden)
        try:
            conn = _connect(admin.params, self._timeout)
        except psycopg.Error as error:
            raise RotationFailed(
                f"could not connect to {admin.where} as {admin.user or 'the default user'}: "
                f"{describe(error, masked)}"
            ) from None
        try:
            with conn, conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                conn.execute(f"SET LOCAL lock_timeout = {STATEMENT_TIMEOUT_MS}")
                verifier = conn.pgconn.encrypt_password(
                    password.reveal_bytes(), role.encode("utf-8"), None
                )
                conn.execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(role), sql.Literal(verifier.decode("ascii"))
                    )
                )
        except psycopg.Error as error:
            raise RotationFailed(
                f"could not change the password of role {role}: {describe(error, masked)}"
            ) from None

    def _check_login(
        self, admin: AdminConnection, role: str, new: SecretValue, current: SecretValue
    ) -> None:
        """Raises RotationFailed unless ``role`` logs in with ``new``."""
        masked = (admin.password, new.reveal(), current.reveal())
        try:
            with _connect(admin.as_role(role, new), self._timeout) as conn:
                row = conn.execute("SELECT current_user").fetchone()
        except psycopg.Error as error:
            raise RotationFailed(
                f"the new password of role {role} did not log in to {admin.where}: "
                f"{describe(error, masked)}"
            ) from None
        if row is None or row[0] != role:
            raise RotationFailed(f"the new password of role {role} logged in as another role")

    def _put_back(
        self,
        admin: AdminConnection,
        role: str,
        current: SecretValue,
        new: SecretValue,
        reason: str,
    ) -> None:
        """Sets ``role``'s password back to ``current``; raises RotationFailed saying both
        what went wrong (``reason``) and why that failed too."""
        try:
            self.set_password(admin, role, current, hidden=(new.reveal(),))
        except RotationFailed as failed:
            raise RotationFailed(
                f"{reason}; putting the old password back failed too ({failed.message}): role "
                f"{role} now has a password the vault does not hold; set one by hand and "
                "store it in the vault"
            ) from None


class _NewPassword:
    """A role whose password was changed and checked; ``rollback`` puts the old one back."""

    __slots__ = ("_admin", "_current", "_new", "_role", "_rotator")

    def __init__(
        self,
        rotator: PostgresRotator,
        admin: AdminConnection,
        role: str,
        current: SecretValue,
        new: SecretValue,
    ) -> None:
        self._rotator = rotator
        self._admin = admin
        self._role = role
        self._current = current
        self._new = new

    @property
    def value(self) -> SecretValue:
        """The new password."""
        return self._new

    def commit(self) -> None:
        """Nothing more to do: the role already has the new password."""

    def rollback(self) -> None:
        """Puts the old password back; raises RotationFailed when that fails (the role then
        keeps the new password, which the vault does not hold)."""
        try:
            self._rotator.set_password(
                self._admin, self._role, self._current, hidden=(self._new.reveal(),)
            )
        except RotationFailed as failed:
            raise RotationFailed(
                f"putting the old password of role {self._role} back failed ({failed.message}): "
                "the role now has a password the vault does not hold; set one by hand and "
                "store it in the vault"
            ) from None

    def __repr__(self) -> str:
        return f"_NewPassword(role={self._role!r})"
