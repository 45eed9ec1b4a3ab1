"""The postgresql rotator against the real PostgreSQL server of COFFER_TEST_POSTGRES_URL
(skipped without it, failed under CI=true), with the vault on SQLite and PostgreSQL.

Each test creates throwaway roles with random names and drops them at the end. The test
server trusts connections from 127.0.0.1, so any password logs in there: which password a
role has is checked the way password authentication checks it, against the SCRAM-SHA-256
verifier the server stores (``pg_authid.rolpassword``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from coffer.domain.models import CallContext
from coffer.domain.secret_value import SecretValue
from coffer.services.rotator_postgres import PostgresRotator
from coffer.services.secret_ops import SecretOps
from coffer.storage.compliance_tables import secret_rotators
from coffer.storage.tables import audit_log
from tests.integration.api_helpers import all_rows_text
from tests.integration.rotation_helpers import ROTATION, put, secret_row, secret_url
from tests.integration.team_helpers import API, Team, bearer

PG_URL = os.environ.get("COFFER_TEST_POSTGRES_URL", "")
ADMIN_SECRET = "ops/production/PG_ADMIN_URL"
TARGET = "app/production/DB_PASSWORD"


def admin_url(password: str | None = None, port: int | None = None, user: str | None = None) -> str:
    """The test server's URL as libpq takes it (``postgresql://``), with ``password`` (which
    the trusting server ignores), another ``port`` and another ``user`` when given."""
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL rotator tests: set COFFER_TEST_POSTGRES_URL")
        pytest.skip("PostgreSQL rotator not tested: COFFER_TEST_POSTGRES_URL is not set")
    parts = urlsplit(PG_URL.replace("postgresql+psycopg://", "postgresql://", 1))
    user = user or parts.username or "postgres"
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}{':' + password if password else ''}@{host}:{port or parts.port or 5432}"
    return urlunsplit(("postgresql", netloc, parts.path, "", ""))


@pytest.fixture
def server() -> Iterator[psycopg.Connection[Any]]:
    """An autocommit superuser connection to the test server."""
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def roles(server: psycopg.Connection[Any]) -> Iterator[list[str]]:
    """Names of roles the test creates (``make_role``); each is dropped at the end."""
    made: list[str] = []
    yield made
    for name in made:
        server.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def make_role(
    server: psycopg.Connection[Any], roles: list[str], name: str, password: str, *options: str
) -> str:
    """Creates role ``name`` (quoted as given) with ``password`` and ``options`` (LOGIN by
    default), to be dropped by the ``roles`` fixture."""
    roles.append(name)
    extra = sql.SQL(" ").join(sql.SQL(option) for option in (options or ("LOGIN",)))
    server.execute(
        sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
            sql.Identifier(name), extra, sql.Literal(password)
        )
    )
    return name


def password_is(server: psycopg.Connection[Any], role: str, password: str) -> bool:
    """True when ``password`` is the role's password: SCRAM-SHA-256 password authentication's
    check (RFC 5802: SHA-256(HMAC(PBKDF2(password), "Client Key")) equals the StoredKey)."""
    row = server.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    assert row is not None and row[0] is not None, f"role {role} has no password"
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", row[0])
    assert match is not None, "the server stores SCRAM-SHA-256 verifiers"
    iterations, salt, stored_key = int(match[1]), base64.b64decode(match[2]), match[3]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return hmac.compare_digest(
        base64.b64encode(hashlib.sha256(client_key).digest()).decode(), stored_key
    )


def logs_in(role: str, password: str) -> str:
    """Connects as ``role`` with ``password`` and returns ``current_user``."""
    parts = urlsplit(admin_url())
    url = urlunsplit(
        ("postgresql", f"{role}:{password}@{parts.hostname}:{parts.port}", parts.path, "", "")
    )
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


def setup_rotator(team: Team, role: str, password: str, admin: str) -> None:
    """Stores the role's password as TARGET and the admin URL as ADMIN_SECRET, and gives
    TARGET a postgresql rotator for ``role``."""
    team.client.post(f"{API}/projects", json={"name": "ops"}, headers=bearer(team.owner))
    put(team.client, team.owner, "ops", "production", "PG_ADMIN_URL", admin)
    put(team.client, team.owner, "app", "production", "DB_PASSWORD", password)
    spec = {"kind": "postgresql", "role": role, "connection": ADMIN_SECRET}
    response = team.client.put(
        f"{ROTATION}/rotators/{TARGET}", json=spec, headers=bearer(team.owner)
    )
    assert response.status_code == 200, response.text
    assert response.json()["config"] == {"role": role, "connection": ADMIN_SECRET, "length": 32}


def rotate(team: Team) -> Any:
    """Runs TARGET's rotator as the owner."""
    return team.client.post(f"{ROTATION}/rotate/{TARGET}", headers=bearer(team.owner))


def audit(team: Team) -> list[dict[str, Any]]:
    """Every audit entry, oldest first."""
    with team.services.engine.connect() as conn:
        return [
            dict(r._mapping) for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.seq))
        ]


def vault_version(team: Team) -> int:
    """TARGET's current version."""
    return secret_row(team.services.engine, "app", "production", "DB_PASSWORD")[1]


def test_a_role_password_is_rotated_and_only_its_hash_is_sent(
    team: Team,
    server: psycopg.Connection[Any],
    roles: list[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rotating a mixed-case role (quoted as an identifier) gives it a new password: the old
    one no longer verifies, the new one does and logs in, the vault has it as version 2;
    the statements sent carry its SCRAM verifier, never the password; neither the new
    password nor the admin URL's password is in any log, answer or stored row."""
    caplog.set_level(logging.DEBUG)
    sent: list[str] = []
    execute = psycopg.Connection.execute

    def recording(self: psycopg.Connection[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(query.as_string(self) if isinstance(query, sql.Composable) else str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", recording)
    old = secrets.token_urlsafe(24)
    admin_password = f"AdminPw-{secrets.token_hex(8)}"
    role = make_role(server, roles, f"Coffer_Rot_{secrets.token_hex(4)}$x", old)
    setup_rotator(team, role, old, admin_url(admin_password))
    response = rotate(team)
    assert response.status_code == 200, response.text
    assert (response.json()["kind"], response.json()["version"]) == ("postgresql", 2)
    read = team.client.get(
        secret_url("app", "production", "DB_PASSWORD"), headers=bearer(team.owner)
    )
    new = read.json()["value"]
    assert read.json()["comment"] == "rotated by the postgresql rotator"
    assert len(new) == 32 and new.isalnum() and new != old
    assert password_is(server, role, new) and not password_is(server, role, old)
    assert logs_in(role, new) == role
    alter = [statement for statement in sent if statement.startswith("ALTER ROLE")]
    assert len(alter) == 1 and f'"{role}"' in alter[0] and "'SCRAM-SHA-256$" in alter[0]
    entries = audit(team)
    completed = [e for e in entries if e["action"] == "rotation.completed"]
    assert [e["metadata"] for e in completed] == [
        {"kind": "postgresql", "version": 2, "previous_version": 1}
    ]
    reads = [e for e in entries if e["action"] == "secret.read" and e["key"] == "PG_ADMIN_URL"]
    assert [e["metadata"]["via"] for e in reads] == ["rotator"]
    everywhere = "\n".join(
        [caplog.text, response.text, *sent, str(entries), all_rows_text(team.services.engine)]
    )
    assert new not in everywhere and admin_password not in everywhere


def test_failures_say_why_and_leave_the_old_password_working(
    team: Team, server: psycopg.Connection[Any], roles: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A missing role, an unreachable admin URL, a role that may not log in (the new password
    is set, fails its check and is put back) and a role that is the admin's own user each
    answer 502 rotation_failed saying why without a credential; the vault keeps version 1,
    the old password still verifies, and each failure's rotation.failed entry is kept."""
    caplog.set_level(logging.DEBUG)
    suffix = secrets.token_hex(4)
    old = secrets.token_urlsafe(24)
    admin_password = f"AdminPw-{secrets.token_hex(8)}"
    role = make_role(server, roles, f"coffer_rot_{suffix}", old)
    setup_rotator(team, role, old, admin_url(admin_password))
    cases: list[tuple[dict[str, Any], str | None, str]] = [
        ({"role": f"coffer_rot_missing_{suffix}"}, None, "does not exist"),
        ({}, admin_url(admin_password, port=1), "could not connect to 127.0.0.1:1"),
    ]
    nologin = make_role(server, roles, f"coffer_rot_nologin_{suffix}", old, "NOLOGIN")
    cases.append(({"role": nologin}, None, "did not log in"))
    admin_role = make_role(server, roles, f"coffer_rot_admin_{suffix}", old, "LOGIN", "CREATEROLE")
    own = admin_url(admin_password, user=admin_role)
    cases.append(({"role": admin_role}, own, "the admin connection's own user"))
    messages = []
    for change, url, expected in cases:
        put(
            team.client,
            team.owner,
            "ops",
            "production",
            "PG_ADMIN_URL",
            url or admin_url(admin_password),
        )
        spec = {"kind": "postgresql", "role": role, "connection": ADMIN_SECRET, **change}
        configured = team.client.put(
            f"{ROTATION}/rotators/{TARGET}", json=spec, headers=bearer(team.owner)
        )
        assert configured.status_code == 200, configured.text
        response = rotate(team)
        assert response.status_code == 502, response.text
        error = response.json()["error"]
        assert error["code"] == "rotation_failed" and expected in error["message"], error
        messages.append(error["message"])
        assert vault_version(team) == 1
        shown = team.client.get(f"{ROTATION}/rotators/{TARGET}", headers=bearer(team.owner)).json()
        assert (shown["last_status"], shown["last_error"]) == ("failed", error["message"])
    assert f"role {nologin}" in messages[2] and "the old password was put back" in messages[2]
    for name in (role, nologin, admin_role):
        assert password_is(server, name, old), name
    failed = [e for e in audit(team) if e["action"] == "rotation.failed"]
    assert [e["metadata"]["error"] for e in failed] == messages
    assert {e["result"] for e in failed} == {"failure"}
    assert admin_password not in caplog.text + str(messages) + str(failed)


def test_a_failed_vault_write_puts_the_old_password_back(
    team: Team, server: psycopg.Connection[Any], roles: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the vault cannot store the new password after the role got it, the role's old
    password is set again: it verifies, the vault still holds version 1, and the caller gets
    502 saying the old value was put back, with rotation.failed committed."""
    old = secrets.token_urlsafe(24)
    role = make_role(server, roles, f"coffer_rot_{secrets.token_hex(4)}", old)
    setup_rotator(team, role, old, admin_url())

    def broken_write(*_args: Any, **_kwargs: Any) -> Any:
        raise sa.exc.OperationalError("INSERT INTO secret_versions", {}, Exception("disk full"))

    monkeypatch.setattr(SecretOps, "write", broken_write)
    response = rotate(team)
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert "could not store the new value (OperationalError)" in message
    assert "the old value was put back" in message and "INSERT" not in message
    assert password_is(server, role, old)
    assert vault_version(team) == 1
    [failed] = [e for e in audit(team) if e["action"] == "rotation.failed"]
    assert failed["metadata"]["error"] == message
    with team.services.engine.connect() as conn:
        assert conn.execute(sa.select(secret_rotators.c.last_status)).scalar_one() == "failed"


def test_a_password_stored_meanwhile_is_not_undone_at_the_source(
    team: Team, server: psycopg.Connection[Any], roles: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When someone stores a new version of the secret while its role's password is being
    changed, the run does not set the old password back (it may be what was just stored
    elsewhere): it answers 502 saying the source's password changed and the vault was not
    updated, without any credential, and keeps that in last_error."""
    old = secrets.token_urlsafe(24)
    role = make_role(server, roles, f"coffer_rot_{secrets.token_hex(4)}", old)
    setup_rotator(team, role, old, admin_url())
    original = PostgresRotator.rotate
    meanwhile = secrets.token_urlsafe(24)

    def rotate_while_written(self: PostgresRotator, *args: Any) -> Any:
        pending = original(self, *args)
        ctx = CallContext(actor=team.services.auth.authenticate(team.owner))
        team.services.secrets.set(ctx, "app", "production", "DB_PASSWORD", SecretValue(meanwhile))
        return pending

    monkeypatch.setattr(PostgresRotator, "rotate", rotate_while_written)
    response = rotate(team)
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert message.startswith(f"{TARGET} changed while it was being rotated")
    assert "the password at the source was changed but the vault was not updated" in message
    assert not password_is(server, role, old) and not password_is(server, role, meanwhile)
    assert meanwhile not in message and old not in message
    assert vault_version(team) == 2
    shown = team.client.get(f"{ROTATION}/rotators/{TARGET}", headers=bearer(team.owner)).json()
    assert (shown["last_status"], shown["last_error"]) == ("failed", message)
