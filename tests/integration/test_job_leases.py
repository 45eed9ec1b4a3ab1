"""Background jobs on several nodes sharing one database (SQLite and PostgreSQL): each job is
done by exactly one node at a time, holding a lease in ``job_leases``; a node that dies leaves
its jobs to another once its leases run out, and one that stops hands them over at once.

The "nodes" here are ``BackgroundJobs`` objects in one process, each with its own engine and
holder name, running jobs whose steps record what they did and when.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.bootstrap import job_holder
from coffer.config import Settings
from coffer.services.background import BackgroundJobs, Job, JobLeases
from coffer.storage import audit_store, lease_store
from coffer.storage.database import create_engine
from coffer.storage.tables import job_leases
from tests.conftest import Vault

WAIT_S = 15.0
RACERS = 8

NodeFactory = Callable[[str, list[Job], float], BackgroundJobs]


def wait_for(condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    """Polls ``condition`` until it holds; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.01)


class SharedWork:
    """Numbered items that the steps of one job take one at a time, on whichever node runs
    the step. A step reads the next item, works on it, and only then removes it, so two steps
    running at once would both do the same item and skip another."""

    def __init__(self, items: int) -> None:
        self.pending = list(range(items))
        self.done: list[int] = []
        self.spans: list[tuple[str, float, float]] = []  # (node, started, ended)
        self._lock = threading.Lock()

    def step_for(self, node: str) -> Callable[[], bool]:
        def step() -> bool:
            started = time.monotonic()
            if not self.pending:
                return False
            item = self.pending[0]
            time.sleep(0.005)  # the work; a concurrent step would read the same item meanwhile
            self.done.append(item)
            self.pending = self.pending[1:]
            with self._lock:
                self.spans.append((node, started, time.monotonic()))
            return bool(self.pending)

        return step


class Ticks:
    """Records the wall-clock time of every step of a job, by node."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def step_for(self, node: str) -> Callable[[], bool]:
        def step() -> bool:
            with self._lock:
                self.times.setdefault(node, []).append(time.time())
            return False

        return step

    def count(self, node: str) -> int:
        with self._lock:
            return len(self.times.get(node, []))

    def first(self, node: str) -> float:
        with self._lock:
            return self.times[node][0]


@pytest.fixture
def nodes(vault: Vault) -> Iterator[NodeFactory]:
    """Builds "nodes": ``BackgroundJobs`` with their own engine on the vault's database and
    the given holder name, jobs and lease length. All are stopped and closed afterwards."""
    made: list[tuple[BackgroundJobs, Engine]] = []

    def node(holder: str, jobs: list[Job], lease_seconds: float) -> BackgroundJobs:
        engine = create_engine(vault.settings.database_url)
        leases = JobLeases(engine, holder, lease_seconds, vault.services.gate)
        background = BackgroundJobs(jobs, leases=leases)
        made.append((background, engine))
        return background

    yield node
    for background, engine in made:
        background.stop()
        engine.dispose()


def lease_of(engine: Engine, name: str) -> lease_store.LeaseRow:
    """The lease row of job ``name``."""
    with engine.connect() as conn:
        rows = {row.name: row for row in lease_store.holders(conn)}
    return rows[name]


def test_two_nodes_do_each_item_once_and_never_at_the_same_time(nodes: NodeFactory) -> None:
    """Two nodes started together on one job: every item is done exactly once, in order,
    no two steps overlap, and one node does them all (neither stopped)."""
    work = SharedWork(60)
    first = nodes("node-a", [Job("counter", 0.01, work.step_for("node-a"))], 5.0)
    second = nodes("node-b", [Job("counter", 0.01, work.step_for("node-b"))], 5.0)
    first.start()
    second.start()
    wait_for(lambda: not work.pending)
    assert work.done == list(range(60))
    spans = sorted(work.spans, key=lambda span: span[1])
    overlaps = [(a, b) for a, b in itertools.pairwise(spans) if b[1] < a[2]]
    assert overlaps == []
    assert len({node for node, _, _ in spans}) == 1
    assert first.held | second.held == {"counter"}
    assert first.held & second.held == set()


def test_a_dead_nodes_job_passes_to_another_once_its_lease_runs_out(
    vault: Vault, nodes: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that dies (stops without releasing, as under SIGKILL) keeps its job until its
    lease runs out; then, and not before, the other node takes it. Meanwhile the other node
    asks once per check interval (0.05 s here), no more."""
    asked: dict[str, int] = {}
    acquire = lease_store.acquire

    def counted(conn: sa.Connection, name: str, holder: str, now: float, seconds: float) -> bool:
        asked[holder] = asked.get(holder, 0) + 1
        return acquire(conn, name, holder, now, seconds)

    monkeypatch.setattr(lease_store, "acquire", counted)
    lease = 1.5
    ticks = Ticks()
    first = nodes("node-a", [Job("ticker", 0.05, ticks.step_for("node-a"))], lease)
    second = nodes("node-b", [Job("ticker", 0.05, ticks.step_for("node-b"))], lease)
    first.start()
    wait_for(lambda: ticks.count("node-a") >= 3)
    second.start()
    waiting_since = time.monotonic()
    before = ticks.count("node-a")
    wait_for(lambda: ticks.count("node-a") >= before + 6)
    assert ticks.count("node-b") == 0
    # Once per 0.05 s check: never more often (a busy loop asks hundreds of times), and not
    # a single late ask either (a waiting node that stopped asking would take over late).
    intervals = (time.monotonic() - waiting_since) / 0.05
    assert max(2, intervals / 4) <= asked["node-b"] <= intervals + 2

    first.stop(release=False)
    died = time.time()
    steps_of_a = ticks.count("node-a")
    lease_row = lease_of(vault.services.engine, "ticker")
    assert lease_row.holder == "node-a"
    wait_for(lambda: ticks.count("node-b") >= 1, timeout=lease + WAIT_S)

    assert ticks.first("node-b") >= lease_row.expires_at
    assert ticks.first("node-b") - died >= lease - 0.5
    assert ticks.count("node-a") == steps_of_a
    assert lease_of(vault.services.engine, "ticker").holder == "node-b"
    assert second.held == {"ticker"}


def test_a_node_that_stops_hands_its_jobs_over_at_once(vault: Vault, nodes: NodeFactory) -> None:
    """``stop`` releases the leases, so the other node takes the job long before a 30 s
    lease would have run out."""
    ticks = Ticks()
    first = nodes("node-a", [Job("ticker", 0.05, ticks.step_for("node-a"))], 30.0)
    second = nodes("node-b", [Job("ticker", 0.05, ticks.step_for("node-b"))], 30.0)
    first.start()
    wait_for(lambda: ticks.count("node-a") >= 2)
    second.start()
    first.stop()
    stopped = time.time()
    wait_for(lambda: ticks.count("node-b") >= 1)
    assert ticks.first("node-b") - stopped < 5.0
    assert lease_of(vault.services.engine, "ticker").holder == "node-b"


def race(engines: list[Engine], name: str) -> dict[str, bool]:
    """Each engine's node asks for lease ``name`` at the same moment; returns who got it."""
    barrier = threading.Barrier(len(engines))
    won: dict[str, bool] = {}

    def contend(index: int) -> None:
        barrier.wait()
        with engines[index].begin() as conn:
            now = lease_store.database_now(conn)
            won[f"node-{index}"] = lease_store.acquire(conn, name, f"node-{index}", now, 30)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    return won


def test_racing_nodes_take_a_lease_exactly_once(vault: Vault) -> None:
    """Many nodes asking for the same free lease, or the same run-out one, at the same
    moment: exactly one gets it, and the table names that one."""
    engines = [create_engine(vault.settings.database_url) for _ in range(RACERS)]
    try:
        with engines[0].begin() as conn:
            # A lease that ran out long ago, as a dead node leaves it.
            assert lease_store.acquire(conn, "race-run-out", "dead-node", time.time() - 100, 1)
        for name in ("race-free-1", "race-free-2", "race-free-3", "race-run-out"):
            won = race(engines, name)
            winners = [node for node, got in won.items() if got]
            assert len(won) == RACERS
            assert len(winners) == 1, name
            assert lease_of(engines[0], name).holder == winners[0]
    finally:
        for engine in engines:
            engine.dispose()


def test_a_live_lease_is_renewed_by_its_holder_and_refused_to_others(vault: Vault) -> None:
    """The holder renews its own live lease (keeping when it took it); another holder is
    refused until the lease runs out; only the holder can release it."""
    with vault.services.engine.begin() as conn:
        assert lease_store.acquire(conn, "job", "node-a", 1000.0, 30)
        assert lease_store.acquire(conn, "job", "node-a", 1010.0, 30)
        assert not lease_store.acquire(conn, "job", "node-b", 1039.0, 30)
        assert lease_store.holders(conn) == [lease_store.LeaseRow("job", "node-a", 1000.0, 1040.0)]
        assert not lease_store.release(conn, "job", "node-b")
        assert lease_store.acquire(conn, "job", "node-b", 1040.5, 30)
        assert lease_store.holders(conn) == [lease_store.LeaseRow("job", "node-b", 1040.5, 1070.5)]
        assert lease_store.release(conn, "job", "node-b")
        assert lease_store.holders(conn) == []


def test_a_lease_the_database_cannot_check_is_retried_and_never_ends_the_job(
    vault: Vault, nodes: NodeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """While the lease table cannot be read (a database error on every acquire) the job does
    not run and each failure is logged by type, without the database's message; once the
    database answers again the same thread takes the lease and runs the job."""
    caplog.set_level(logging.WARNING, logger="coffer.background")
    with vault.services.engine.begin() as conn:
        job_leases.drop(conn)
    ticks = Ticks()
    node = nodes("node-a", [Job("ticker", 0.05, ticks.step_for("node-a"))], 1.5)
    node.start()

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records if "could not be checked" in r.getMessage()]

    wait_for(lambda: len(failures()) >= 3)
    assert ticks.count("node-a") == 0
    assert set(failures()) <= {
        "background job ticker: its lease could not be checked: OperationalError",
        "background job ticker: its lease could not be checked: ProgrammingError",
    }
    assert "job_leases" not in caplog.text
    with vault.services.engine.begin() as conn:
        job_leases.create(conn)
    wait_for(lambda: ticks.count("node-a") >= 1)
    assert node.held == {"ticker"}


def test_nodes_starting_at_once_start_each_log_consumer_once(vault: Vault) -> None:
    """The work every node does before its jobs start (placing new log consumers at the end
    of the log) may run on several nodes at the same moment: none fails, and each consumer
    starts once, at the head."""
    names = [f"consumer-{index}" for index in range(20)]
    head = vault.services.audit.head()
    barrier = threading.Barrier(6)
    errors: list[str] = []

    def start_node() -> None:
        barrier.wait()
        try:
            vault.services.audit.follow_from_head(names)
        except sa.exc.SQLAlchemyError as exc:
            errors.append(type(exc).__name__)

    threads = [threading.Thread(target=start_node) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert errors == []
    with vault.services.engine.connect() as conn:
        positions = audit_store.cursor_positions(conn)
    assert {name: positions[name][0] for name in names} == dict.fromkeys(names, head)


def test_the_server_names_each_job_and_its_holder(vault: Vault) -> None:
    """``GET /api/v1/sys/jobs`` on a running server lists every job it runs, each held by
    this process until a time in the future."""
    from fastapi.testclient import TestClient

    from coffer.api.app import create_app

    app = create_app(vault.services, max_body_bytes=vault.settings.max_body_bytes)
    with TestClient(app, headers={"Authorization": f"Bearer {vault.token}"}) as client:

        def listed() -> list[dict[str, object]]:
            response = client.get("/api/v1/sys/jobs")
            assert response.status_code == 200, response.text
            jobs: list[dict[str, object]] = response.json()["jobs"]
            return jobs

        wait_for(lambda: {job["job"] for job in listed()} == set(vault.services.background.names))
        jobs = listed()
    holder = job_holder(vault.settings)
    assert [job["job"] for job in jobs] == sorted(vault.services.background.names)
    assert {(job["holder"], job["held"]) for job in jobs} == {(holder, True)}
    assert all(str(job["expires_at"]).endswith("Z") for job in jobs)


def test_the_holder_is_the_node_id_or_host_and_pid(settings: Settings) -> None:
    """A node is named by COFFER_NODE_ID; without one by host:pid; with several worker
    processes each worker adds its pid, so no two processes share a name."""
    import os
    import socket

    pid = os.getpid()
    assert job_holder(settings) == f"{socket.gethostname()}:{pid}"
    named = settings.with_overrides(node_id="node-a")
    assert job_holder(named) == "node-a"
    assert job_holder(named.with_overrides(workers=2)) == f"node-a:{pid}"
