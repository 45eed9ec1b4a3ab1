"""End-to-end fixtures: a real ``coffer server`` per module and backend, and the CLI.

Each test module gets one server per database backend (module-scoped, parametrised over SQLite
and PostgreSQL), so the cost of starting servers stays low; ``tests/e2e/harness.py`` has the
machinery (clean environments, starting and stopping servers, the ``Cli`` runner).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    BACKENDS,
    Cli,
    Database,
    ServerProcess,
    base_env,
    close_database,
    open_database,
    start_server,
)


@pytest.fixture(scope="module", params=BACKENDS)
def module_database(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh database on each backend, shared by the tests of one module."""
    database = open_database(request.param)
    try:
        yield database
    finally:
        close_database(database)


@pytest.fixture(params=BACKENDS)
def fresh_database(request: pytest.FixtureRequest) -> Iterator[Database]:
    """A fresh database on each backend, for one test."""
    database = open_database(request.param)
    try:
        yield database
    finally:
        close_database(database)


@pytest.fixture(scope="module")
def server(
    module_database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A real ``coffer server`` on a new vault, one per module and backend, stopped at the end."""
    base = tmp_path_factory.mktemp(f"server-{module_database.backend}")
    vault_dir = base / "vault"
    home = base / "home"
    home.mkdir()
    process = start_server(vault_dir, module_database.url_for(vault_dir), base / "server.log", home)
    assert process.token, f"no bootstrap token on first start:\n{process.log_text()}"
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The user's home directory for this test (the CLI config goes under it)."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def cli(server: ServerProcess, home: Path) -> Cli:
    """The coffer CLI pointed at ``server`` with its bootstrap token (COFFER_ADDR/COFFER_TOKEN)."""
    assert server.token is not None
    env = base_env(home, {"COFFER_ADDR": server.addr, "COFFER_TOKEN": server.token})
    return Cli(env, home)


@pytest.fixture
def local_cli(home: Path) -> Cli:
    """The coffer CLI with no server, address or token (for ``init`` and friends)."""
    return Cli(base_env(home), home)


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder shared by the module's tests, so the scanner's compiled rules are built
    once rather than in every test."""
    return tmp_path_factory.mktemp("cache")
