"""Two nodes on one database: what one node changes, the other stops serving from its caches
within a second (SQLite: the shared epoch file; PostgreSQL: Redis pub/sub).

Each node is a full ``build_services`` with its own caches and its own app; they share
nothing but the database and, on PostgreSQL, Redis.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.bootstrap import build_services, initialise_vault
from coffer.config import Settings
from coffer.services.cache_epochs import FileEpochs, PostgresEpochs, RedisEpochs
from coffer.storage.change_tracking import CacheFamily, track_changes
from coffer.storage.database import create_engine
from coffer.storage.tables import api_tokens, audit_log, grants
from tests.conftest import backend_database
from tests.integration.api_helpers import put_secret, secret_path
from tests.integration.team_helpers import bearer, cheap_settings, client_for

API = "/api/v1"
REDIS_URL = os.environ.get("COFFER_TEST_REDIS_URL", "")
WITHIN_S = 1.0
STAGING, DEVELOPMENT = "web:staging:read", "web:development:read"


def _redis_for(database_url: str) -> str | None:
    if database_url.startswith("sqlite"):
        return None
    if not REDIS_URL:
        if os.environ.get("CI"):
            pytest.fail("CI must run the Redis tests: set COFFER_TEST_REDIS_URL")
        pytest.skip("Redis not tested: COFFER_TEST_REDIS_URL is not set")
    return REDIS_URL


class Nodes:
    """Two nodes (A and B) on one vault, each with an HTTP client."""

    def __init__(self, settings: Settings, stack: ExitStack) -> None:
        self.owner = initialise_vault(settings).token
        self.services = [build_services(settings) for _ in range(2)]
        for services in self.services:
            stack.callback(services.close)
            assert services.epochs.fresh, "the node must cache (else nothing here is tested)"
        self.a, self.b = (
            stack.enter_context(client_for(services, settings)) for services in self.services
        )


@pytest.fixture(params=("sqlite", "postgresql+redis", "postgresql+notify"))
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Nodes]:
    """Two nodes on SQLite (epoch file), on PostgreSQL with Redis (pub/sub) and on
    PostgreSQL alone (LISTEN/NOTIFY)."""
    backend, _, channel = request.param.partition("+")
    with backend_database(backend, tmp_path) as url, ExitStack() as stack:
        redis_url = _redis_for(url) if channel == "redis" else None
        yield Nodes(cheap_settings(url, tmp_path, redis_url=redis_url), stack)


def _machine(nodes: Nodes, name: str, scope: str) -> tuple[str, str]:
    """Creates a machine on node A; returns (its token, the token's id)."""
    made = nodes.a.post(
        f"{API}/machines", json={"name": name, "scopes": [scope]}, headers=bearer(nodes.owner)
    )
    assert made.status_code == 201, made.text
    issued = nodes.a.post(f"{API}/machines/{name}/tokens", json={}, headers=bearer(nodes.owner))
    assert issued.status_code == 201, issued.text
    return issued.json()["token"], issued.json()["id"]


def _within(deadline_s: float, check: Callable[[], bool]) -> float:
    """Polls ``check`` until it holds; returns the seconds it took, fails after the deadline."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > deadline_s:
            pytest.fail(f"not within {deadline_s} s")
        time.sleep(0.01)
    return time.monotonic() - start


def _read(client: TestClient, token: str, key: str = "K") -> Any:
    return client.get(secret_path("web", "development", key), headers=bearer(token))


def _setup(nodes: Nodes) -> tuple[str, str]:
    created = nodes.a.post(f"{API}/projects", json={"name": "web"}, headers=bearer(nodes.owner))
    assert created.status_code == 201, created.text
    nodes.a.headers.update(bearer(nodes.owner))
    put_secret(nodes.a, "web", "development", "K", "one")
    token, token_id = _machine(nodes, "ci", "web:development:read")
    for _ in range(3):  # fills node B's caches
        assert _read(nodes.b, token).json()["value"] == "one"
    return token, token_id


def test_a_token_revoked_on_one_node_is_refused_on_the_other(nodes: Nodes) -> None:
    """Node B has the machine token cached from earlier reads; once node A revokes it, B
    answers 401 within a second, and never serves it again."""
    token, token_id = _setup(nodes)
    revoked = nodes.a.delete(f"{API}/tokens/{token_id}")
    assert revoked.status_code == 200, revoked.text
    _within(WITHIN_S, lambda: _read(nodes.b, token).status_code == 401)
    assert [_read(nodes.b, token).status_code for _ in range(5)] == [401] * 5


def test_a_grant_removed_on_one_node_stops_applying_on_the_other(nodes: Nodes) -> None:
    """A grant that node B has cached stops applying on B within a second of its removal
    on A: B answers 403."""
    _setup(nodes)
    made = nodes.a.post(
        f"{API}/machines", json={"name": "deployer", "scopes": ["web:staging:read"]}
    )
    assert made.status_code == 201, made.text
    token = nodes.a.post(f"{API}/machines/deployer/tokens", json={}).json()["token"]
    grant = nodes.a.post(
        f"{API}/grants", json={"machine": "deployer", "scope": "web:development:read"}
    )
    assert grant.status_code == 201, grant.text
    assert _read(nodes.b, token).status_code == 200
    assert _read(nodes.b, token).status_code == 200
    assert nodes.a.delete(f"{API}/grants/{grant.json()['id']}").status_code == 204
    _within(WITHIN_S, lambda: _read(nodes.b, token).status_code == 403)


def test_a_new_version_written_on_one_node_is_read_on_the_other(nodes: Nodes) -> None:
    """Node B serves the new value within a second of node A writing it, and each of B's
    reads is audited with the version it returned."""
    token, _ = _setup(nodes)
    put_secret(nodes.a, "web", "development", "K", "two")
    _within(WITHIN_S, lambda: _read(nodes.b, token).json()["value"] == "two")
    assert _read(nodes.b, token).json()["version"] == 2


def test_a_key_rotation_on_one_node_drops_the_old_keys_on_the_other(nodes: Nodes) -> None:
    """After node A rotates the project key and destroys the old one, node B keeps reading
    the value (under the new key) and no longer holds the old data key in memory."""
    token, _ = _setup(nodes)
    keyring = nodes.services[1].projects._keyring
    assert any(version == 1 for _, version, _ in keyring._unwrapped)
    started = nodes.a.post(f"{API}/projects/web/key-rotation")
    assert started.status_code == 200, started.text
    done, cursor = False, None
    while not done:
        step = nodes.a.post(f"{API}/projects/web/key-rotation/steps", json={"cursor": cursor})
        assert step.status_code == 200, step.text
        done, cursor = step.json()["done"], step.json()["cursor"]
    _within(WITHIN_S, lambda: _read(nodes.b, token).json().get("value") == "one")
    assert all(version != 1 for _, version, _ in keyring._unwrapped)


def test_every_read_served_from_the_cache_is_audited(nodes: Nodes) -> None:
    """Reads answered from node B's caches each leave exactly one ``secret.read`` entry."""
    token, _ = _setup(nodes)
    engine = nodes.services[0].engine
    query = sa.select(sa.func.count()).where(
        audit_log.c.action == "secret.read", audit_log.c.key == "K"
    )
    with engine.connect() as conn:
        before = conn.execute(query).scalar_one()
    for _ in range(25):
        assert _read(nodes.b, token).status_code == 200
    with engine.connect() as conn:
        assert conn.execute(query).scalar_one() == before + 25


# --- the mechanism, piece by piece ------------------------------------------------------


def test_committed_writes_to_watched_tables_are_reported_after_commit(tmp_path: Path) -> None:
    """A committed write reports its table's families once; a rolled-back one, a write to an
    unwatched table and a query report nothing; a write in SQL text reports every family."""
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    seen: list[frozenset[CacheFamily]] = []
    track_changes(engine, seen.append)
    meta = sa.MetaData()
    for table in (api_tokens, grants, audit_log):
        table.to_metadata(meta)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE grants (id TEXT)")
        conn.exec_driver_sql("CREATE TABLE audit_log (id TEXT)")
    assert seen == []
    with engine.begin() as conn:
        conn.execute(sa.delete(grants))
    assert seen == [frozenset({CacheFamily.ACCESS})]
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(sa.delete(grants))
        raise RuntimeError("rolled back")
    with engine.begin() as conn:
        conn.execute(sa.delete(audit_log))
        conn.execute(sa.text("SELECT * FROM grants"))
    assert seen == [frozenset({CacheFamily.ACCESS})]
    with engine.begin() as conn:
        conn.execute(sa.text("  insert INTO audit_log VALUES ('x')"))  # SQL text: every family
    assert seen == [frozenset({CacheFamily.ACCESS}), frozenset(CacheFamily)]
    engine.dispose()


def test_file_epochs_are_shared_by_every_process_on_the_file(tmp_path: Path) -> None:
    """A change written through one mapping of the epoch file is seen through another at
    once, for that family only."""
    one, two = FileEpochs(tmp_path / "e"), FileEpochs(tmp_path / "e")
    before = [two.current(f) for f in CacheFamily]
    one.changed(frozenset({CacheFamily.SECRETS}))
    after = [two.current(f) for f in CacheFamily]
    assert after[CacheFamily.SECRETS] != before[CacheFamily.SECRETS]
    assert after[CacheFamily.ACCESS] == before[CacheFamily.ACCESS]
    assert (tmp_path / "e").stat().st_mode & 0o777 == 0o600
    one.close()
    two.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(directory)),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("redis-server did not start")


def test_redis_epochs_reach_other_nodes_and_fail_safe_without_redis(tmp_path: Path) -> None:
    """A change on one node moves the other's epoch within a second; when Redis hangs
    (silent connections) or goes away both stop being fresh (caches bypassed), and when it
    is back they are fresh again with every epoch moved (whatever changed meanwhile is not
    served stale)."""
    _redis_for("postgresql")
    port = _free_port()
    server = _start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    one, two = RedisEpochs(url, reconnect_seconds=0.1), RedisEpochs(url, reconnect_seconds=0.1)
    try:
        assert one.wait_fresh(5) and two.wait_fresh(5)
        access, secrets = two.current(CacheFamily.ACCESS), two.current(CacheFamily.SECRETS)
        one.changed(frozenset({CacheFamily.ACCESS}))
        _within(WITHIN_S, lambda: two.current(CacheFamily.ACCESS) != access)
        assert two.current(CacheFamily.SECRETS) == secrets
        server.send_signal(signal.SIGSTOP)  # hung: connections stay open, nothing moves
        _within(3.0, lambda: not one.fresh and not two.fresh)
        server.send_signal(signal.SIGCONT)
        _within(5.0, lambda: one.fresh and two.fresh)
        server.kill()
        server.wait()
        _within(5.0, lambda: not one.fresh and not two.fresh)
        stale = two.current(CacheFamily.SECRETS)
        server = _start_redis(port, tmp_path)
        _within(5.0, lambda: one.fresh and two.fresh)
        assert two.current(CacheFamily.SECRETS) != stale
    finally:
        one.close()
        two.close()
        server.kill()
        server.wait()


def test_postgres_epochs_reach_other_sessions_through_notify(tmp_path: Path) -> None:
    """A change published with NOTIFY on one node moves the other's epoch within a second,
    for that family only; each node is fresh once it listens."""
    with backend_database("postgresql", tmp_path) as url:
        engine = create_engine(url)
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        engine.dispose()
        one, two = PostgresEpochs(conninfo), PostgresEpochs(conninfo)
        try:
            assert one.wait_fresh(5) and two.wait_fresh(5)
            access, keys = two.current(CacheFamily.ACCESS), two.current(CacheFamily.KEYS)
            one.changed(frozenset({CacheFamily.ACCESS}))
            _within(WITHIN_S, lambda: two.current(CacheFamily.ACCESS) != access)
            assert two.current(CacheFamily.KEYS) == keys
        finally:
            one.close()
            two.close()
