"""Background jobs across two real ``coffer server`` processes on one database.

Two nodes (``COFFER_NODE_ID`` node-a and node-b, 2-second job leases) share one database: the
second joins from its own directory with the first one's root key, as in
``test_exactly_once``. ``coffer jobs`` must show every job held by one of them and staying
there; after the holder of the audit sealer is killed with SIGKILL (it releases nothing), the
other node must take its jobs within a few seconds and seal the audit entries written after
the kill, and the log must still verify.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.e2e.harness import (
    Cli,
    Database,
    ServerProcess,
    base_env,
    ok,
    ok_json,
    start_server,
    unique_name,
)

LEASE_S = 2
# The jobs of a server with the default settings (no retention, no SIEM streams).
JOBS = {
    "anomaly-detector",
    "audit-sealer",
    "rotation-reminders",
    "secret-pruner",
    "webhook-dispatcher",
    "webhook-sender",
}
TAKEOVER_S = LEASE_S + 8.0  # the lease runs out, then the survivor's next check (<= 2/3 s)
WAIT_S = 30.0


@dataclass
class Node:
    """A running server with its node name and a CLI pointed at it."""

    name: str
    server: ServerProcess
    cli: Cli


@dataclass
class Cluster:
    """Two nodes on one database (``url``)."""

    nodes: list[Node]
    url: str

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)


@pytest.fixture
def cluster(fresh_database: Database, tmp_path: Path) -> Iterator[Cluster]:
    """node-a initialises the vault; node-b joins it from its own directory."""
    home = tmp_path / "home"
    home.mkdir()
    first_dir = tmp_path / "node-a"
    url = fresh_database.url_for(first_dir)
    lease = {"COFFER_JOB_LEASE_SECONDS": str(LEASE_S)}
    servers: list[ServerProcess] = []
    try:
        first = start_server(
            first_dir,
            url,
            tmp_path / "node-a.log",
            home,
            extra_env={**lease, "COFFER_NODE_ID": "node-a"},
        )
        servers.append(first)
        assert first.token, first.log_text()
        root_key = (first_dir / "root.key").read_text(encoding="ascii").strip()
        second = start_server(
            tmp_path / "node-b",
            url,
            tmp_path / "node-b.log",
            home,
            extra_env={**lease, "COFFER_NODE_ID": "node-b", "COFFER_ROOT_KEY": root_key},
        )
        servers.append(second)
        assert second.token is None, "node-b initialised a vault of its own"
        nodes = [
            Node(
                name,
                server,
                Cli(
                    base_env(home, {"COFFER_ADDR": server.addr, "COFFER_TOKEN": first.token}), home
                ),
            )
            for name, server in (("node-a", first), ("node-b", second))
        ]
        yield Cluster(nodes, url)
    finally:
        for server in servers:
            server.stop()


def holders(cli: Cli) -> dict[str, tuple[str, bool]]:
    """``coffer jobs --json`` as {job: (holder, held)}."""
    listed: list[dict[str, Any]] = ok_json(cli("jobs", "--json"))["jobs"]
    return {job["job"]: (job["holder"], job["held"]) for job in listed}


def poll_holders(cli: Cli, wanted: Any, timeout: float = WAIT_S) -> dict[str, tuple[str, bool]]:
    """Polls ``coffer jobs`` until ``wanted(holders)`` is true; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        seen = holders(cli)
        if wanted(seen):
            return seen
        if time.monotonic() > deadline:
            pytest.fail(f"coffer jobs never showed what was wanted; last: {seen}")
        time.sleep(0.1)


def audit_state(url: str) -> tuple[int, int]:
    """(sealed entries, entries waiting to be sealed), read from the database."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            sealed = conn.execute(sa.text("SELECT size FROM audit_tree")).scalar_one()
            waiting = conn.execute(
                sa.text("SELECT count(*) FROM audit_log WHERE leaf_index IS NULL")
            ).scalar_one()
    finally:
        engine.dispose()
    return int(sealed), int(waiting)


def test_each_job_has_one_holder_and_moves_when_it_is_killed(cluster: Cluster) -> None:
    """Every job is held by one node and stays with it while both live; when the sealer's
    holder is killed the other node takes every job within a few seconds, seals what is
    written after the kill, and the log still verifies."""
    watcher = cluster.node("node-b").cli
    names = {"node-a", "node-b"}
    first = poll_holders(
        watcher, lambda seen: set(seen) == JOBS and all(held for _, held in seen.values())
    )
    assert {holder for holder, _ in first.values()} <= names

    # Over more than two leases (each renewed many times) no job changes hands.
    started = time.monotonic()
    while time.monotonic() - started < 2.5 * LEASE_S:
        assert holders(watcher) == first
    table = ok(watcher("jobs"))
    for job, (holder, _) in first.items():
        assert job in table
        assert holder in table

    victim = cluster.node(first["audit-sealer"][0])
    survivor = cluster.node(next(iter(names - {victim.name})))
    victim.server.process.send_signal(signal.SIGKILL)
    victim.server.process.wait(timeout=10)
    killed = time.monotonic()
    sealed_at_kill, _ = audit_state(cluster.url)
    project = unique_name("failover")
    ok(survivor.cli("projects", "create", project))
    ok(
        survivor.cli(
            "secrets", "set", "db/password", "after-the-kill", "-p", project, "-e", "development"
        )
    )

    taken = poll_holders(
        survivor.cli,
        lambda seen: set(seen) == JOBS and set(seen.values()) == {(survivor.name, True)},
        timeout=WAIT_S,
    )
    took = time.monotonic() - killed
    assert set(taken.values()) == {(survivor.name, True)}
    assert took < TAKEOVER_S, f"{survivor.name} took the jobs {took:.1f} s after the kill"

    deadline = time.monotonic() + WAIT_S
    while True:
        sealed, waiting = audit_state(cluster.url)
        if waiting == 0 and sealed > sealed_at_kill:
            break
        assert time.monotonic() < deadline, f"nothing sealed after the kill: {sealed}, {waiting}"
        time.sleep(0.1)
    report = ok_json(survivor.cli("audit", "verify", "--json"))
    assert (report["ok"], report["first_problem"]) == (True, None)
