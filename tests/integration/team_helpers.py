"""Helpers shared by the identity and access tests: settings, people, logins, a second
organization, and a password hasher that counts its work."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import make_url
from starlette.types import ASGIApp

from coffer.api.app import create_app
from coffer.audit.writer import AuditWriter
from coffer.bootstrap import (
    audit_keys_for,
    build_services,
    initialise_vault,
    load_settings_root_key,
    password_hasher,
)
from coffer.config import Settings
from coffer.crypto.passwords import PasswordHasher
from coffer.services.container import Services
from coffer.services.vault_setup import OwnerAccount, create_organization
from coffer.storage.tables import audit_log

API = "/api/v1"
PASSWORD = "correct horse battery staple"
# A client address outside every allow-list the tests write (TEST-NET-3).
CLIENT_ADDRESS = "203.0.113.10"
OWNER_EMAIL = "owner@acme.test"
SECRET = f"{API}/projects/app/environments/production/secrets/db/password"


def cheap_settings(database_url: str, directory: Path, **overrides: Any) -> Settings:
    """Settings for a vault on ``database_url`` with cheap Argon2 and ``overrides``; the key
    file lives next to the SQLite file, or under ``directory`` for PostgreSQL."""
    if database_url.startswith("sqlite"):
        database = make_url(database_url).database
        assert database is not None
        vault_dir = Path(database).parent
    else:
        vault_dir = directory / "vault"
        vault_dir.mkdir(mode=0o700, exist_ok=True)
    settings = Settings(
        directory=vault_dir,
        database_url=database_url,
        root_key_file=vault_dir / "root.key",
        argon2_memory_kib=1024,
        argon2_time_cost=1,
    )
    return settings.with_overrides(**overrides)


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header for ``token`` (none for None)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


@contextmanager
def client_for(
    services: Services,
    settings: Settings,
    *,
    address: str = CLIENT_ADDRESS,
    base_url: str = "http://testserver",
    raise_server_exceptions: bool = True,
) -> Iterator[TestClient]:
    """An HTTP client on the real app over ``services``, connecting from ``address``; with
    ``raise_server_exceptions`` False a crash is answered 500, as a real client sees it."""
    app: ASGIApp = create_app(services, max_body_bytes=settings.max_body_bytes)
    with TestClient(
        app,
        base_url=base_url,
        client=(address, 50000),
        raise_server_exceptions=raise_server_exceptions,
    ) as client:
        yield client


def login(
    client: TestClient, email: str, password: str = PASSWORD, **fields: Any
) -> dict[str, Any]:
    """Logs in over the API, asserts 200 and returns the answer (``token``, ``id``, ...)."""
    response = client.post(
        f"{API}/auth/login", json={"email": email, "password": password, **fields}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def invite(client: TestClient, token: str, email: str, role: str = "viewer") -> str:
    """Invites ``email`` as ``role`` and returns the invitation token."""
    response = client.post(
        f"{API}/members/invite", json={"email": email, "role": role}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    invitation: str = response.json()["token"]
    return invitation


def join(
    client: TestClient, token: str, email: str, role: str = "viewer", password: str = PASSWORD
) -> None:
    """Invites ``email`` as ``role`` (with the inviter's ``token``) and accepts the invitation."""
    invitation = invite(client, token, email, role)
    response = client.post(
        f"{API}/invitations/accept", json={"token": invitation, "password": password}
    )
    assert response.status_code == 201, response.text


def member_token(
    client: TestClient, token: str, email: str, role: str = "viewer", password: str = PASSWORD
) -> str:
    """Makes ``email`` a member with ``role`` and returns a CLI token of theirs."""
    join(client, token, email, role, password)
    issued: str = login(client, email, password)["token"]
    return issued


def create_second_org(services: Services, settings: Settings, name: str, email: str) -> None:
    """Creates another organization with an owner account ``email`` (password ``PASSWORD``)."""
    owner = OwnerAccount(email=email, password_hash=password_hasher(settings).hash(PASSWORD))
    with services.engine.begin() as conn:
        writer = AuditWriter(audit_keys_for(load_settings_root_key(settings)))
        create_organization(conn, name, writer, time.time(), owner)


def audit_actions(engine: sa.Engine, after_seq: int = 0) -> list[str]:
    """The actions of the audit entries after ``after_seq``, oldest first."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(audit_log.c.action)
                .where(audit_log.c.seq > after_seq)
                .order_by(audit_log.c.seq)
            ).scalars()
        )


class CountingHasher(PasswordHasher):
    """The real Argon2id hasher, counting how many verifications it runs (real or dummy)."""

    def __init__(self, inner: PasswordHasher) -> None:
        super().__init__(inner.params)
        self.verifications = 0

    def verify(self, stored: str, password: str) -> bool:
        """Counts one verification, then verifies."""
        self.verifications += 1
        return super().verify(stored, password)


@dataclass
class Team:
    """Organization ``acme`` (owner ``OWNER_EMAIL``, project ``app`` with secret ``SECRET``)
    served over HTTP, with its owner's CLI token."""

    client: TestClient
    services: Services
    settings: Settings
    owner: str

    def get(self, url: str, token: str | None, **kwargs: Any) -> Any:
        """A GET with ``token`` as bearer."""
        return self.client.get(url, headers=bearer(token), **kwargs)


TeamFactory = Callable[..., Team]


@contextmanager
def team_factory(settings: Settings) -> Iterator[TeamFactory]:
    """Initialises acme on ``settings`` and yields a function that opens it with settings
    overrides (and a ``base_url``); each call builds fresh services (fresh rate-limit
    counters) and a client, closed when the context ends."""
    initialise_vault(settings, "acme", owner_email=OWNER_EMAIL, owner_password=PASSWORD)
    with ExitStack() as stack:

        def open_team(base_url: str = "http://127.0.0.1", **overrides: Any) -> Team:
            changed = settings.with_overrides(**overrides)
            services = build_services(changed)
            stack.callback(services.close)
            client = stack.enter_context(client_for(services, changed, base_url=base_url))
            owner = login(client, OWNER_EMAIL)["token"]
            client.post(f"{API}/projects", json={"name": "app"}, headers=bearer(owner))
            client.put(SECRET, json={"value": "s3cret-value"}, headers=bearer(owner))
            return Team(client, services, changed, owner)

        yield open_team
