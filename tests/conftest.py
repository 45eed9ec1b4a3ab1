"""Shared fixtures: database backends, an initialised vault, and an HTTP client on it.

Storage, service, API and e2e tests run on every backend that is available: SQLite always,
PostgreSQL when COFFER_TEST_POSTGRES_URL names a server (each test gets its own schema).
Without it the PostgreSQL cases are skipped with the reason; under CI=true they fail instead,
so CI never passes with a backend silently missing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.api.app import create_app
from coffer.bootstrap import build_services, initialise_vault
from coffer.config import Settings
from coffer.domain.models import Actor, ActorKind, CallContext
from coffer.services.container import Services
from tests.integration.team_helpers import Team, TeamFactory, team_factory

PG_URL = os.environ.get("COFFER_TEST_POSTGRES_URL", "")
BACKENDS = ("sqlite", "postgresql")


def _postgres_schema_url(schema: str) -> str:
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"


@contextmanager
def backend_database(backend: str, directory: Path) -> Iterator[str]:
    """A fresh, empty database on ``backend``: a SQLite file under ``directory/vault``, or a
    new schema on the PostgreSQL server (dropped afterwards). Skips (fails under CI) when
    PostgreSQL is not configured."""
    if backend == "sqlite":
        (directory / "vault").mkdir(mode=0o700)
        yield f"sqlite:///{directory / 'vault' / 'coffer.db'}"
        return
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PostgreSQL tests: set COFFER_TEST_POSTGRES_URL")
        pytest.skip("PostgreSQL backend not tested: COFFER_TEST_POSTGRES_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield _postgres_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new schema on the PostgreSQL server."""
    with backend_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like ``database_url``, but shared by the tests of one module (for costly set-ups);
    its directory is the URL's ``vault`` folder's parent."""
    with backend_database(request.param, tmp_path_factory.mktemp("module")) as url:
        yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for a vault in ``tmp_path/vault`` on the backend under test."""
    vault_dir = tmp_path / "vault"
    return Settings(
        directory=vault_dir,
        database_url=database_url,
        root_key_file=vault_dir / "root.key",
        # Cheap Argon2 for speed; test_passwords pins the production defaults.
        argon2_memory_kib=1024,
        argon2_time_cost=1,
    )


@dataclass
class Vault:
    """An initialised vault with its services and bootstrap owner token."""

    settings: Settings
    services: Services
    token: str
    ctx: CallContext


@pytest.fixture
def vault(settings: Settings) -> Iterator[Vault]:
    """An initialised vault, open, with a call context for its bootstrap owner."""
    result = initialise_vault(settings)
    services = build_services(settings)
    actor = services.auth.authenticate(result.token)
    ctx = CallContext(actor=actor, source_ip="127.0.0.1", user_agent="pytest")
    try:
        yield Vault(settings=settings, services=services, token=result.token, ctx=ctx)
    finally:
        services.close()


@pytest.fixture
def api(vault: Vault) -> Iterator[TestClient]:
    """An HTTP client on the real ASGI app, authenticated as the bootstrap owner."""
    app = create_app(vault.services, max_body_bytes=vault.settings.max_body_bytes)
    with TestClient(app, headers={"Authorization": f"Bearer {vault.token}"}) as client:
        yield client


@pytest.fixture
def project(api: TestClient) -> str:
    """A project called ``web`` with the default environments."""
    response = api.post("/api/v1/projects", json={"name": "web"})
    assert response.status_code == 201, response.text
    return "web"


@pytest.fixture
def open_team(settings: Settings) -> Iterator[TeamFactory]:
    """Opens organization ``acme`` (initialised once per test, with an owner account) with
    settings overrides; see ``tests.integration.team_helpers.team_factory``."""
    with team_factory(settings) as factory:
        yield factory


@pytest.fixture
def team(open_team: TeamFactory) -> Team:
    """acme with the test settings (cheap Argon2), its owner logged in over HTTP."""
    return open_team()


def other_actor(org_id: str) -> Actor:
    """An actor of another identity in the same organization (for author checks)."""
    return Actor(id="01TESTACTOR000000000000000", kind=ActorKind.BOOTSTRAP, org_id=org_id, name="t")
