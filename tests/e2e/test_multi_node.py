"""Two real ``coffer server`` nodes on one PostgreSQL database and one Redis, driven through
the CLI as an operator and a user type it.

Node A is started with ``coffer server`` on an empty schema (it initialises the vault and
prints the bootstrap token); node B joins it as a second node is added: its own directory,
``coffer server --no-init``, the same database and A's root key file. Both nodes cache token
identities and secret ciphertexts (``COFFER_CACHE_SECONDS`` at its default), so a change made
through one node must reach the other's caches through Redis within a second.

PostgreSQL and Redis follow the harness's rule: skipped with the reason when
``COFFER_TEST_POSTGRES_URL`` or ``COFFER_TEST_REDIS_URL`` is not set, failed under CI=true.
A change must reach the other node within ``PROPAGATION_S`` of the command that made it
returning.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import (
    Cli,
    Database,
    ServerProcess,
    base_env,
    close_database,
    failed,
    ok,
    ok_json,
    open_database,
    redis_database,
    start_node,
    start_server,
    unique_name,
)

DENIED = 4
PROPAGATION_S = 1.0  # the promised bound for a change made on one node to reach the other
DEV = "development"
# A Redis database of this module's own on the test server (counters of other tests' nodes
# stay apart; pub/sub channels are server-wide, which only costs extra invalidations).
REDIS_DB = 12
VERIFIED = re.compile(
    r"^verified: (\d+) entries, (\d+) checkpoints, tree size (\d+), latest checkpoint #(\d+) "
    r"signed \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ by key [0-9a-f]{16}\n$"
)


@dataclass
class Cluster:
    """Two nodes of one vault and the owner's CLI on each."""

    a: ServerProcess
    b: ServerProcess
    on_a: Cli
    on_b: Cli
    project: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Node A initialises a vault on a fresh PostgreSQL schema; node B joins it with
    ``--no-init``; the owner creates one project through A."""
    redis_url = redis_database(REDIS_DB)
    database: Database = open_database("postgresql")
    base = tmp_path_factory.mktemp("multi-node")
    home = base / "home"
    home.mkdir()
    nodes: list[ServerProcess] = []
    try:
        common = {"COFFER_REDIS_URL": redis_url}
        dir_a = base / "node-a"
        a = start_server(
            dir_a,
            database.url_for(dir_a),
            base / "node-a.log",
            home,
            extra_env={**common, "COFFER_NODE_ID": "node-a"},
        )
        nodes.append(a)
        assert a.token, f"no bootstrap token on first start:\n{a.log_text()}"
        b = start_node(
            a,
            base / "node-b",
            base / "node-b.log",
            home,
            extra_env={**common, "COFFER_NODE_ID": "node-b"},
        )
        nodes.append(b)
        on_a = Cli(base_env(home, {"COFFER_ADDR": a.addr, "COFFER_TOKEN": a.token}), home)
        on_b = on_a.with_env(COFFER_ADDR=b.addr)
        project = unique_name("multi")
        assert ok(on_a("projects", "create", project)).startswith(f"Created project {project}")
        yield Cluster(a, b, on_a, on_b, project)
    finally:
        for node in nodes:
            node.stop()
        close_database(database)


def secret_url(node: ServerProcess, project: str, key: str) -> str:
    return f"{node.addr}/api/v1/projects/{project}/environments/{DEV}/secrets/{key}"


def within(seconds: float, condition: Callable[[], bool]) -> float:
    """Polls ``condition`` until it holds and returns how long that took; fails the test
    when it still does not hold after ``seconds``."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        elapsed = time.monotonic() - start
        if elapsed > seconds:
            pytest.fail(f"still not the case after {elapsed:.2f} s")
        time.sleep(0.02)


def test_node_b_joins_node_a_vault_without_initialising(cluster: Cluster) -> None:
    """The second node started with --no-init serves A's vault: no vault of its own, no
    bootstrap token printed, and A's owner token works on it."""
    assert "Bootstrap owner token" not in cluster.b.log_text()
    assert not (cluster.b.directory / "root.key").exists()
    who_a, who_b = cluster.on_a("whoami", "--json"), cluster.on_b("whoami", "--json")
    assert ok_json(who_a)["id"] == ok_json(who_b)["id"]


def test_a_secret_written_through_a_is_read_through_b(cluster: Cluster) -> None:
    """`secrets set` on A, then `secrets get` and `coffer run` on B give the value."""
    p = cluster.project
    ok(cluster.on_a("secrets", "set", "DB_PASSWORD", "written-on-a", "-p", p, "-e", DEV))
    child = "import os; print(os.environ['DB_PASSWORD'])"
    got, ran = cluster.on_b.many(
        ("secrets", "get", "DB_PASSWORD", "-p", p, "-e", DEV),
        ("run", "-p", p, "-e", DEV, "--", "python", "-c", child),
    )
    assert ok(got) == "written-on-a\n"
    assert ok(ran) == "written-on-a\n"


def test_a_machine_token_revoked_through_a_is_refused_by_b_within_a_second(
    cluster: Cluster,
) -> None:
    """B has the machine's token cached (it just served it); once `tokens revoke` on A has
    returned, B refuses the token within a second, and the CLI on B says so (exit 4)."""
    p, machine = cluster.project, unique_name("ci")
    ok(cluster.on_a("secrets", "set", "API_KEY", "machine-reads-me", "-p", p, "-e", DEV))
    ok(cluster.on_a("machines", "create", machine, "--scope", f"{p}:{DEV}:read"))
    issued = ok_json(cluster.on_a("machines", "token", machine, "--json"))
    token, token_id = issued["token"], issued["id"]
    as_machine = cluster.on_b.with_env(COFFER_TOKEN=token)
    assert ok(as_machine("secrets", "get", "API_KEY", "-p", p, "-e", DEV)) == "machine-reads-me\n"
    url = secret_url(cluster.b, p, "API_KEY")
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=5.0) as client:
        for _ in range(5):  # B serves it from its cache now
            assert client.get(url).json()["value"] == "machine-reads-me"
        revoked = ok(cluster.on_a("tokens", "revoke", token_id))
        assert revoked.startswith(f"Revoked machine token {token_id}")
        elapsed = within(PROPAGATION_S, lambda: client.get(url).status_code == 401)
    assert elapsed <= PROPAGATION_S
    refused = failed(as_machine("secrets", "get", "API_KEY", "-p", p, "-e", DEV), DENIED)
    assert refused == "error: a valid API token is required (Authorization: Bearer <token>)\n"


def test_a_new_version_written_on_b_is_read_on_a_within_a_second(cluster: Cluster) -> None:
    """A has version 1 cached; once `secrets set` on B has returned, A serves version 2 within
    a second, and `secrets get` on A prints it."""
    p = cluster.project
    ok(cluster.on_a("secrets", "set", "ROTATING", "version-one", "-p", p, "-e", DEV))
    url = secret_url(cluster.a, p, "ROTATING")
    headers = {"Authorization": f"Bearer {cluster.a.token}"}
    with httpx.Client(headers=headers, timeout=5.0) as client:
        for _ in range(5):
            answer = client.get(url).json()
            assert (answer["value"], answer["version"]) == ("version-one", 1)
        ok(cluster.on_b("secrets", "set", "ROTATING", "version-two", "-p", p, "-e", DEV))

        def a_serves_version_two() -> bool:
            answer = client.get(url).json()
            return (answer["value"], answer["version"]) == ("version-two", 2)

        elapsed = within(PROPAGATION_S, a_serves_version_two)
    assert elapsed <= PROPAGATION_S
    assert ok(cluster.on_a("secrets", "get", "ROTATING", "-p", p, "-e", DEV)) == "version-two\n"


def test_audit_verify_passes_through_either_node_after_traffic_on_both(
    cluster: Cluster, tmp_path: Path
) -> None:
    """After writes and reads through both nodes, `coffer audit verify` through A and through
    B both verify the whole log, and both count the reads made on each node."""
    p = cluster.project
    ok(cluster.on_a("secrets", "set", "AUDITED", "v1", "-p", p, "-e", DEV))
    ok(cluster.on_b("secrets", "set", "AUDITED", "v2", "-p", p, "-e", DEV))
    reads = [("secrets", "get", "AUDITED", "-p", p, "-e", DEV)] * 3
    for result in [*cluster.on_a.many(*reads), *cluster.on_b.many(*reads)]:
        assert ok(result) == "v2\n"
    listed_a, listed_b = (
        ok_json(cli("audit", "list", "--action", "secret.read", "--key", "AUDITED", "--json"))
        for cli in (cluster.on_a, cluster.on_b)
    )
    assert len(listed_a["entries"]) == len(listed_b["entries"]) == 6
    via_a, via_b = cluster.on_a("audit", "verify"), cluster.on_b("audit", "verify")
    for result in (via_a, via_b):
        assert VERIFIED.match(ok(result)), result.stdout
