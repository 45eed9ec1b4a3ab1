"""What a multi-node deployment does when part of it fails: a node killed under load, Redis
stopped, PostgreSQL unreachable. Real ``coffer server`` processes on 127.0.0.1, on a fresh
PostgreSQL schema each; bounded in time (each test well under 30 s) and in traffic.

Nothing here touches the machine's own PostgreSQL or Redis servers: Redis is stopped by
running a ``redis-server`` of the test's own on a free port and killing it, and PostgreSQL is
"stopped" by a TCP proxy between the node and the server (``TcpProxy``) that closes its
listener and every open connection.

- **Kill a node during load**: the other node keeps answering, and no read is counted twice
  or lost: the ``secret.read`` entries are at least the 200 answers received and at most those
  plus the reads the killed node may have committed without its answer getting out (one per
  client thread talking to it); a read-limited secret is served at most ``max_reads`` times.
- **Stop Redis**: rate limits still apply, counted per node (documented fallback, logged);
  caches are bypassed while the invalidation channel is down, so a revocation made on one
  node is refused by the other at once; once Redis is back, counting is shared again and
  invalidations flow again.
- **Stop PostgreSQL**: requests answer 503 ``unavailable`` with a clear message at once when
  the database refuses connections, and within a few seconds when it accepts them but never
  answers (never a 500, never a hang); they change nothing, and succeed again within a few
  seconds of the database coming back, without restarting the node. (The very first request
  that meets a pooled connection cut under it is an expected failure for now: it answers 500.)
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from coffer.services.throttle import RETRY_REDIS_SECONDS
from coffer.storage.database import PG_CONNECT_TIMEOUT_S
from tests.e2e.harness import (
    PG_URL,
    Cli,
    Database,
    ServerProcess,
    base_env,
    close_database,
    failed,
    free_port,
    ok,
    open_database,
    redis_database,
    start_node,
    start_server,
    unique_name,
)

DEV = "development"
REDIS_DB = 13  # this module's own database on the test Redis server
PROPAGATION_S = 1.0
REQUEST_TIMEOUT_S = 10.0
UNAVAILABLE = {
    "error": {
        "code": "unavailable",
        "message": "the database is unreachable; nothing was changed; try again shortly",
    }
}
RATE_LIMITS_OFF = {"COFFER_RATE_LIMIT_IP": "off", "COFFER_RATE_LIMIT_IDENTITY": "off"}


# --- helpers -----------------------------------------------------------------------------------


def secret_path(project: str, key: str) -> str:
    return f"/api/v1/projects/{project}/environments/{DEV}/secrets/{key}"


def client_for(node: ServerProcess, token: str | None) -> httpx.Client:
    """A keep-alive HTTP client on ``node`` with ``token`` as bearer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=node.addr, headers=headers, timeout=REQUEST_TIMEOUT_S)


def within(seconds: float, condition: Callable[[], bool]) -> float:
    """Polls ``condition`` until it holds and returns how long that took; fails the test
    when it still does not hold after ``seconds``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            pytest.fail(f"still not the case after {time.monotonic() - start:.2f} s")
        time.sleep(0.02)
    return time.monotonic() - start


@contextlib.contextmanager
def two_nodes(
    base: Path, database: Database, env: dict[str, str]
) -> Iterator[tuple[ServerProcess, ServerProcess, Cli]]:
    """Node A initialises a vault on ``database``; node B joins it (``--no-init``, A's root
    key file). Yields both and the owner's CLI on A; stops whatever still runs at the end."""
    home = base / "home"
    home.mkdir()
    nodes: list[ServerProcess] = []
    try:
        dir_a = base / "node-a"
        a = start_server(
            dir_a,
            database.url_for(dir_a),
            base / "node-a.log",
            home,
            extra_env={**env, "COFFER_NODE_ID": "node-a"},
        )
        nodes.append(a)
        assert a.token, a.log_text()
        b = start_node(
            a,
            base / "node-b",
            base / "node-b.log",
            home,
            extra_env={**env, "COFFER_NODE_ID": "node-b"},
        )
        nodes.append(b)
        yield a, b, Cli(base_env(home, {"COFFER_ADDR": a.addr, "COFFER_TOKEN": a.token}), home)
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def pg_database() -> Iterator[Database]:
    """A fresh PostgreSQL schema (skipped, or failed under CI=true, without PostgreSQL)."""
    database = open_database("postgresql")
    try:
        yield database
    finally:
        close_database(database)


def audit_counts(node: ServerProcess, action: str) -> Counter[str]:
    """How many entries of ``action`` each key has, over every page of the log."""
    counts: Counter[str] = Counter()
    params = {"action": action, "limit": "1000"}
    with client_for(node, node.token) as client:
        while True:
            page = client.get("/api/v1/audit", params=params)
            assert page.status_code == 200, page.text
            counts.update(entry["key"] for entry in page.json()["entries"])
            if page.json()["next"] is None:
                return counts
            params["cursor"] = page.json()["next"]


def create_machine(owner: httpx.Client, project: str) -> tuple[str, str]:
    """A machine that may read ``project``'s development secrets; returns its token and the
    token's id."""
    name = unique_name("svc")
    made = owner.post("/api/v1/machines", json={"name": name, "scopes": [f"{project}:{DEV}:read"]})
    assert made.status_code == 201, made.text
    issued = owner.post(f"/api/v1/machines/{name}/tokens", json={})
    assert issued.status_code == 201, issued.text
    return issued.json()["token"], issued.json()["id"]


# --- kill a node during load -------------------------------------------------------------------

LOAD_S = 3.0
KILL_AFTER_S = 1.2
PLAIN_THREADS_PER_NODE = 3
LIMITED_READS = 40
LIMITED_PACE_S = 0.04


@dataclass(frozen=True)
class Attempt:
    """One request of the load: where it went, when, and what came back."""

    node: str  # "a" or "b"
    key: str
    started: float
    ended: float
    status: int | None  # None: a transport error
    error: str | None  # the transport error's class name
    read_count: int | None = None

    @property
    def never_sent(self) -> bool:
        """The connection was refused: the node cannot have seen this request."""
        return self.error in ("ConnectError", "ConnectTimeout")

    @property
    def answer_lost(self) -> bool:
        """A transport error after the request may have reached the node (sent, no answer)."""
        return self.error is not None and not self.never_sent


def _read_loop(
    client: httpx.Client,
    node: str,
    key: str,
    path: str,
    until: float,
    out: list[Attempt],
    *,
    pace: float = 0.0,
    stop_on_404: bool = False,
) -> None:
    """Reads ``path`` until ``until`` (or a 404 with ``stop_on_404``), recording each try."""
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            response = client.get(path)
        except httpx.TransportError as exc:
            out.append(Attempt(node, key, started, time.monotonic(), None, type(exc).__name__))
            time.sleep(0.02)  # a dead node refuses at once: no busy loop
            continue
        body = response.json()
        count = body.get("limits", {}).get("read_count") if response.status_code == 200 else None
        out.append(Attempt(node, key, started, time.monotonic(), response.status_code, None, count))
        if stop_on_404 and response.status_code == 404:
            return
        if pace:
            time.sleep(pace)


def test_killing_a_node_under_load_leaves_the_other_serving_and_counts_every_read_once(
    tmp_path: Path, pg_database: Database
) -> None:
    """8 client threads read through both nodes; node A gets SIGKILL mid-way. Reads sent to A
    fail with connection errors from then on, every read sent to B is answered 200, the
    ``secret.read`` entries lie between the 200s received and those plus the reads A may have
    committed without answering, and a secret limited to N reads is served at most N times
    (its N reads all counted, exactly one burn)."""
    env = {"COFFER_REDIS_URL": redis_database(REDIS_DB), **RATE_LIMITS_OFF}
    with two_nodes(tmp_path, pg_database, env) as (a, b, owner):
        project = unique_name("load")
        ok(owner("projects", "create", project))
        created = owner.many(
            ("secrets", "set", "PLAIN", "read-me-often", "-p", project, "-e", DEV),
            ("secrets", "set", "LIMITED", "read-me-n-times", "-p", project, "-e", DEV,
             "--reads", str(LIMITED_READS)),
        )  # fmt: skip
        for result in created:
            ok(result)
        attempts: list[Attempt] = []
        lock = threading.Lock()
        start = time.monotonic()
        until = start + LOAD_S

        def worker(node: str, key: str) -> None:
            mine: list[Attempt] = []
            with client_for(a if node == "a" else b, a.token) as client:
                if key == "PLAIN":
                    _read_loop(client, node, key, secret_path(project, key), until, mine)
                else:
                    limited_until = until + 5.0 if node == "b" else until
                    _read_loop(
                        client, node, key, secret_path(project, key), limited_until, mine,
                        pace=LIMITED_PACE_S, stop_on_404=True,
                    )  # fmt: skip
            with lock:
                attempts.extend(mine)

        jobs = [(node, "PLAIN") for node in "ab" for _ in range(PLAIN_THREADS_PER_NODE)]
        jobs += [("a", "LIMITED"), ("b", "LIMITED")]
        threads = [threading.Thread(target=worker, args=job) for job in jobs]
        for thread in threads:
            thread.start()
        time.sleep(KILL_AFTER_S)  # the load runs meanwhile
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(timeout=10)
        killed = time.monotonic()
        for thread in threads:
            thread.join(timeout=LOAD_S + 30)

        on_a = [t for t in attempts if t.node == "a"]
        on_b = [t for t in attempts if t.node == "b"]
        plain = [t for t in attempts if t.key == "PLAIN"]
        limited = [t for t in attempts if t.key == "LIMITED"]
        # A served before its death and never after; B answered everything, before and after.
        assert any(t.status == 200 and t.ended < killed for t in on_a)
        assert all(t.never_sent for t in on_a if t.started > killed)
        assert [t for t in on_a if t.status not in (200, None)] == []
        assert [t for t in on_b if t.error is not None] == []
        assert {t.status for t in on_b if t.key == "PLAIN"} == {200}
        assert any(t.status == 200 and t.started > killed for t in on_b if t.key == "PLAIN")

        reads = audit_counts(b, "secret.read")
        burns = audit_counts(b, "secret.burned")
        plain_ok = sum(t.status == 200 for t in plain)
        plain_lost = sum(t.answer_lost for t in plain)
        assert plain_lost <= PLAIN_THREADS_PER_NODE  # one request in flight per thread on A
        assert plain_ok <= reads["PLAIN"] <= plain_ok + plain_lost, (plain_ok, plain_lost)

        limited_ok = [t for t in limited if t.status == 200]
        limited_lost = sum(t.answer_lost for t in limited)
        counts = [t.read_count for t in limited_ok]
        assert [t for t in limited if t.node == "b"][-1].status == 404  # burned in the end
        assert len(limited_ok) <= LIMITED_READS
        assert len(set(counts)) == len(counts)  # no read count given twice
        assert set(counts) <= set(range(1, LIMITED_READS + 1))
        assert len(limited_ok) >= LIMITED_READS - limited_lost
        assert reads["LIMITED"] == LIMITED_READS
        assert burns["LIMITED"] == 1
        assert {t.status for t in limited if t.node == "b"} <= {200, 404}


# --- stop Redis --------------------------------------------------------------------------------


class OwnRedis:
    """A ``redis-server`` of the test's own on a free 127.0.0.1 port (no persistence)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Starts it and waits until it accepts connections."""
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            time.sleep(0.05)
        self.kill()
        pytest.fail("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL, as a crash; waits for the process to end."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def statuses(client: httpx.Client, path: str, count: int) -> list[int]:
    """The statuses of ``count`` reads of ``path`` through ``client``."""
    return [client.get(path).status_code for _ in range(count)]


def alternating(one: httpx.Client, other: httpx.Client, path: str, count: int) -> list[int]:
    """The statuses of ``count`` reads of ``path``, every other one through each client."""
    return [(other if n % 2 else one).get(path).status_code for n in range(count)]


IDENTITY_LIMIT = 20


def test_without_redis_limits_hold_per_node_and_revocations_still_reach_every_node(
    tmp_path: Path, pg_database: Database
) -> None:
    """With the nodes' Redis killed: the per-identity limit still refuses with 429, counted
    on each node alone (a warning says so); reads go on; a token revoked on A is refused by B
    at once (B no longer trusts its cache). With Redis back: one shared count across both
    nodes again, and a revocation on A reaches B's cache within a second."""
    redis = OwnRedis(tmp_path)
    redis.start()
    env = {
        "COFFER_REDIS_URL": redis.url,
        "COFFER_RATE_LIMIT_IP": "off",
        "COFFER_RATE_LIMIT_IDENTITY": f"{IDENTITY_LIMIT}/minute",
    }
    try:
        with two_nodes(tmp_path, pg_database, env) as (a, b, _owner):
            project = unique_name("redis")
            path = secret_path(project, "SHARED")
            with client_for(a, a.token) as owner:
                assert owner.post("/api/v1/projects", json={"name": project}).status_code == 201
                assert owner.put(path, json={"value": "still-served"}).status_code == 200
                counted, revoked_later, recovered, cached_after = (
                    create_machine(owner, project) for _ in range(4)
                )
            to_a, to_b = client_for(a, counted[0]), client_for(b, counted[0])
            victim_a, victim_b = client_for(a, revoked_later[0]), client_for(b, revoked_later[0])
            with to_a, to_b, victim_a, victim_b:
                # Redis up: one count for both nodes; the 21st read is refused on either.
                assert alternating(to_a, to_b, path, IDENTITY_LIMIT) == [200] * IDENTITY_LIMIT
                refused_a, refused_b = to_a.get(path), to_b.get(path)
                assert (refused_a.status_code, refused_b.status_code) == (429, 429)
                assert refused_a.json()["error"]["code"] == "rate_limited"
                # B caches the victim's token while the channel is up.
                assert statuses(victim_b, path, 3) == [200, 200, 200]

                redis.kill()
                # Each node now counts alone: 20 more on A, then 429; the same on B.
                assert statuses(to_a, path, IDENTITY_LIMIT + 1) == [200] * IDENTITY_LIMIT + [429]
                assert statuses(to_b, path, IDENTITY_LIMIT + 1) == [200] * IDENTITY_LIMIT + [429]
                assert to_b.get(path).headers["Retry-After"].isdigit()
                for node in (a, b):
                    assert (
                        "rate-limit counters in Redis unreachable (ConnectionError): counting on "
                        "this node alone for 5 s" in node.log_text()
                    ), node.log_text()
                # A revocation through A is refused by B on its very next request.
                with client_for(a, a.token) as owner:
                    gone = owner.delete(f"/api/v1/tokens/{revoked_later[1]}")
                    assert gone.status_code == 200, gone.text
                assert victim_b.get(path).status_code == 401
                assert victim_a.get(path).status_code == 401

            outage_over = time.monotonic()
            redis.start()  # same port, empty: the nodes find it again by themselves
            # A node retries Redis RETRY_REDIS_SECONDS after its last failed count, which was
            # no later than its last request above; nothing outside shows the moment, so wait.
            time.sleep(max(0.0, outage_over + RETRY_REDIS_SECONDS + 0.2 - time.monotonic()))
            with client_for(a, recovered[0]) as fresh_a, client_for(b, recovered[0]) as fresh_b:
                assert alternating(fresh_a, fresh_b, path, IDENTITY_LIMIT) == [200] * IDENTITY_LIMIT
                assert (fresh_a.get(path).status_code, fresh_b.get(path).status_code) == (429, 429)
            # Invalidation flows again: B serves the token, A revokes it, B refuses it within
            # a second (whether B's cache is back in use or still bypassed).
            with client_for(b, cached_after[0]) as later_b, client_for(a, a.token) as owner:
                assert statuses(later_b, path, 3) == [200, 200, 200]
                assert owner.delete(f"/api/v1/tokens/{cached_after[1]}").status_code == 200
                elapsed = within(PROPAGATION_S, lambda: later_b.get(path).status_code == 401)
            assert elapsed <= PROPAGATION_S
            for node in (a, b):
                assert (
                    "cache invalidation channel lost (ConnectionError): caches bypassed until "
                    "it is back" in node.log_text()
                ), node.log_text()
    finally:
        redis.kill()


# --- stop PostgreSQL ---------------------------------------------------------------------------


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in this process: accepts, connects upstream, pumps bytes both
    ways. ``stop`` closes the listener and every open connection (clients then meet a refused
    port, as with a stopped server); ``start`` listens again on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.stalled = False
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def stall(self) -> None:
        """Closes every open connection and from now on accepts new ones but never answers
        (a server that hangs, or a network that drops packets after the handshake)."""
        self.stalled = True
        self._close_connections()

    def start(self) -> None:
        self.stalled = False
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self._close_connections()

    def _close_connections(self) -> None:
        with self._lock:
            open_sockets, self._sockets = self._sockets, set()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            if self.stalled:
                with self._lock:
                    self._sockets.add(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5.0)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    server.close()
                    return
                self._sockets.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def through_proxy(url: str, port: int) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    return sa.make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


REFUSED_ANSWER_S = 2.0  # longest a request may take to be refused while the database is down
# ... and while it accepts connections but never answers: each connection attempt gives up
# after PG_CONNECT_TIMEOUT_S, and a cached read may try three times (the hot path, then the
# full stack's token check and read).
HUNG_ANSWER_S = 3 * PG_CONNECT_TIMEOUT_S + 2.0
RECOVERY_S = 5.0
UNAVAILABLE_CLI = f"error: {UNAVAILABLE['error']['message']}\n"


@dataclass
class ProxiedNode:
    """A node whose every database connection goes through ``proxy``; ``path`` is a secret
    (value ``before-the-outage``, version 1) that the node has in its cache."""

    node: ServerProcess
    proxy: TcpProxy
    cli: Cli
    project: str
    path: str


@pytest.fixture
def proxied(tmp_path: Path, pg_database: Database) -> Iterator[ProxiedNode]:
    """A node on PostgreSQL through a ``TcpProxy`` (and Redis, so that it caches), with one
    secret written and read three times."""
    upstream = sa.make_url(PG_URL)
    proxy = TcpProxy((upstream.host or "127.0.0.1", upstream.port or 5432))
    proxy.start()
    home = tmp_path / "home"
    home.mkdir()
    node_dir = tmp_path / "node"
    env = {"COFFER_REDIS_URL": redis_database(REDIS_DB), **RATE_LIMITS_OFF}
    node = None
    try:
        node = start_server(
            node_dir,
            through_proxy(pg_database.url_for(node_dir), proxy.port),
            tmp_path / "node.log",
            home,
            extra_env=env,
        )
        assert node.token, node.log_text()
        cli = Cli(base_env(home, {"COFFER_ADDR": node.addr, "COFFER_TOKEN": node.token}), home)
        project = unique_name("pgdown")
        ok(cli("projects", "create", project))
        ok(cli("secrets", "set", "DB_URL", "before-the-outage", "-p", project, "-e", DEV))
        path = secret_path(project, "DB_URL")
        with client_for(node, node.token) as client:
            for _ in range(3):
                assert client.get(path).json()["value"] == "before-the-outage"
        yield ProxiedNode(node, proxy, cli, project, path)
    finally:
        if node is not None:
            node.stop()
        proxy.stop()


def outage_requests(project: str, path: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """A cached read, an uncached read, a write, a listing and an export."""
    return [
        ("GET", path, None),
        ("GET", secret_path(project, "NEVER_CACHED"), None),
        ("PUT", path, {"value": "during-the-outage"}),
        ("GET", "/api/v1/projects", None),
        ("GET", f"/api/v1/projects/{project}/environments/{DEV}/export", None),
    ]


def timed(
    node: ServerProcess, method: str, url: str, body: dict[str, Any] | None
) -> tuple[httpx.Response, float]:
    """Sends one request on a new connection; returns the answer and the seconds it took."""
    started = time.monotonic()
    answer = httpx.request(
        method,
        f"{node.addr}{url}",
        json=body,
        headers={"Authorization": f"Bearer {node.token}"},
        timeout=60.0,
    )
    return answer, time.monotonic() - started


def node_reports_database_down(node: ServerProcess) -> None:
    """/readyz answers 503 with the database check failed (as a load balancer's probe would
    see it), while /healthz still answers 200: the process is alive."""
    ready = httpx.get(f"{node.addr}/readyz", timeout=10.0)
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"]["database"]["ok"] is False
    assert httpx.get(f"{node.addr}/healthz", timeout=5.0).status_code == 200


def recovers_unchanged(proxied: ProxiedNode) -> None:
    """With the proxy listening again: the node serves the secret within RECOVERY_S, with its
    value from before the outage (the write during it changed nothing), takes a new version,
    and its audit log verifies."""
    proxied.proxy.start()
    node, cli, project = proxied.node, proxied.cli, proxied.project
    within(RECOVERY_S, lambda: timed(node, "GET", proxied.path, None)[0].status_code == 200)
    answer, _ = timed(node, "GET", proxied.path, None)
    assert (answer.json()["value"], answer.json()["version"]) == ("before-the-outage", 1)
    ok(cli("secrets", "set", "DB_URL", "after-the-outage", "-p", project, "-e", DEV))
    got, history = cli.many(
        ("secrets", "get", "DB_URL", "-p", project, "-e", DEV),
        ("secrets", "history", "DB_URL", "-p", project, "-e", DEV, "--json"),
    )
    assert ok(got) == "after-the-outage\n"
    assert [v["version"] for v in json.loads(ok(history))["versions"]] == [2, 1]
    ok(cli("audit", "verify"))


def test_the_first_request_after_postgresql_drops_the_connections_answers_503(
    proxied: ProxiedNode,
) -> None:
    """The node's pooled connections are cut while it is idle; its next request (a cached
    read) answers 503 ``unavailable``, like every later one."""
    proxied.proxy.stop()
    answer, took = timed(proxied.node, "GET", proxied.path, None)
    assert answer.status_code == 503, answer.text
    assert answer.json() == UNAVAILABLE
    assert took < REFUSED_ANSWER_S


def test_with_postgresql_stopped_requests_get_503_at_once_and_recover_when_it_returns(
    proxied: ProxiedNode,
) -> None:
    """With the proxy stopped (connections cut, port refused) and the node's readiness probe
    failing: reads (cached or not), writes, listings and exports answer 503 ``unavailable``
    with its message and Retry-After within REFUSED_ANSWER_S, the CLI prints the message;
    once the proxy listens again the node serves again within RECOVERY_S, unchanged."""
    node, project = proxied.node, proxied.project
    proxied.proxy.stop()
    node_reports_database_down(node)
    for method, url, body in outage_requests(project, proxied.path):
        answer, took = timed(node, method, url, body)
        assert (answer.status_code, answer.json()) == (503, UNAVAILABLE), (method, url)
        assert answer.headers["Retry-After"] == "1"
        assert took < REFUSED_ANSWER_S, (method, url, took)
    got, put = proxied.cli.many(
        ("secrets", "get", "DB_URL", "-p", project, "-e", DEV),
        ("secrets", "set", "DB_URL", "during-the-outage", "-p", project, "-e", DEV),
    )
    assert failed(got, 6) == UNAVAILABLE_CLI
    assert failed(put, 6) == UNAVAILABLE_CLI
    recovers_unchanged(proxied)


def test_with_postgresql_hung_requests_get_503_within_seconds_and_recover(
    proxied: ProxiedNode,
) -> None:
    """With the proxy accepting connections but never answering (a hung server, or packets
    dropped): every request answers 503 ``unavailable`` within HUNG_ANSWER_S, never hangs;
    once the database answers again the node serves again within RECOVERY_S, unchanged."""
    node, project = proxied.node, proxied.project
    proxied.proxy.stall()
    node_reports_database_down(node)
    requests = outage_requests(project, proxied.path)
    with ThreadPoolExecutor(max_workers=len(requests) + 1) as pool:
        answers = [pool.submit(timed, node, *request) for request in requests]
        got = pool.submit(proxied.cli, "secrets", "get", "DB_URL", "-p", project, "-e", DEV)
        for (method, url, _body), future in zip(requests, answers, strict=True):
            answer, took = future.result()
            assert (answer.status_code, answer.json()) == (503, UNAVAILABLE), (method, url)
            assert took < HUNG_ANSWER_S, (method, url, took)
        assert failed(got.result(), 6) == UNAVAILABLE_CLI
    proxied.proxy.stop()
    recovers_unchanged(proxied)
