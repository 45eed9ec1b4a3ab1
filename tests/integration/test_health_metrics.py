"""``/readyz`` and ``/metrics`` as an operator's probe and scraper see them: which check fails
when a backend goes away (and that it comes back), what the HTTP series count, and that no
name or password ever shows."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp

from coffer.api.app import create_app
from coffer.api.http_metrics import SECRET_ROUTE
from coffer.api.sealed import SealedGate
from coffer.bootstrap import build_services, initialise_vault, sealed_root
from coffer.config import Settings
from coffer.services.container import Services
from coffer.storage.tables import audit_log
from tests.conftest import backend_database
from tests.integration.api_helpers import env_path, secret_path
from tests.integration.team_helpers import bearer, cheap_settings

REDIS_URL = os.environ.get("COFFER_TEST_REDIS_URL", "")
CHECKS = {"database", "redis", "key_provider", "audit_writer"}
DURATION = "coffer_http_request_duration_seconds"
# Names the requests below use; none may appear in /metrics.
PROJECT = "zebra-orchard"
KEY = "KIWI_TOKEN_7"
EPHEMERAL = "mango-handoff"


# --- helpers -------------------------------------------------------------------------------


@contextmanager
def served(settings: Settings, *, lifespan: bool = True) -> Iterator[tuple[TestClient, str]]:
    """A new vault under ``settings`` behind the real app, and its owner token. With
    ``lifespan`` the background jobs (the audit sealer among them) run, as in a server."""
    token = initialise_vault(settings).token
    services = build_services(settings)
    try:
        with client_on(services, settings, token, lifespan=lifespan) as client:
            yield client, token
    finally:
        services.close()


@contextmanager
def client_on(
    services: Services, settings: Settings, token: str, *, lifespan: bool
) -> Iterator[TestClient]:
    """A client on the app over ``services`` as the owner; with ``lifespan`` the app's
    background jobs run while it is open."""
    client = TestClient(
        create_app(services, max_body_bytes=settings.max_body_bytes), headers=bearer(token)
    )
    if not lifespan:
        yield client
        return
    with client:
        yield client


def poll(what: Callable[[], bool], *, within: float = 20.0) -> bool:
    """Asks ``what`` until it is true or ``within`` seconds pass; returns the last answer."""
    deadline = time.monotonic() + within
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def scrape(client: TestClient) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """``/metrics`` as text and as {(sample name, labels): value}."""
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }
    return answer.text, samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_of(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float],
    route: str,
    method: str,
    status: str,
) -> float:
    """How many requests the latency histogram counted for one route, method and status."""
    return value(samples, f"{DURATION}_count", route=route, method=method, status=status)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``. ``stop`` closes the listener and every
    connection (the database is gone, as far as coffer can tell); ``start`` listens again on
    the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        assert self._listener is not None
        self._close(self._listener)
        with self._lock:
            connections, self._open = self._open, []
        for connection in connections:
            self._close(connection)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._close(sink)


# --- /readyz -------------------------------------------------------------------------------


def test_readyz_is_ready_when_every_backend_answers(settings: Settings) -> None:
    """On SQLite and PostgreSQL, without Redis, every check passes, Redis says it is not
    configured, and the audit probe leaves no entry behind."""
    with served(settings) as (client, _token):
        engine = sa.create_engine(settings.database_url)
        try:
            with engine.connect() as conn:
                entries = conn.execute(sa.select(sa.func.count()).select_from(audit_log))
                before = entries.scalar_one()
            answer = client.get("/readyz")
            with engine.connect() as conn:
                entries = conn.execute(sa.select(sa.func.count()).select_from(audit_log))
                after = entries.scalar_one()
        finally:
            engine.dispose()
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == CHECKS
    assert all(check["ok"] is True for check in body["checks"].values()), body
    assert all(0 <= check["ms"] < 2000 for check in body["checks"].values()), body
    assert body["checks"]["redis"]["detail"] == "not configured"
    assert answer.headers["cache-control"] == "no-store"
    assert after == before


def test_readyz_pings_redis_when_it_is_configured(tmp_path: Path) -> None:
    """With COFFER_REDIS_URL set to a live Redis, its check passes with no note."""
    if not REDIS_URL:
        pytest.skip("Redis not tested: COFFER_TEST_REDIS_URL is not set")
    with backend_database("sqlite", tmp_path) as url:
        settings = cheap_settings(url, tmp_path, redis_url=REDIS_URL)
        with served(settings) as (client, _token):
            answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    redis_check = answer.json()["checks"]["redis"]
    assert redis_check["ok"] is True
    assert "detail" not in redis_check


def test_metrics_say_whether_the_node_trusts_its_caches_and_counts_in_redis(
    tmp_path: Path,
) -> None:
    """On SQLite the caches are fresh (the epoch file needs no channel) and limits count
    in memory (never degraded); with COFFER_REDIS_URL on a closed port, after one counted
    request the node says it counts alone."""
    with backend_database("sqlite", tmp_path) as url:
        with served(cheap_settings(url, tmp_path), lifespan=False) as (client, _token):
            _text, samples = scrape(client)
        assert value(samples, "coffer_cache_fresh") == 1
        assert value(samples, "coffer_rate_limit_degraded") == 0
        settings = cheap_settings(url, tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
        services = build_services(settings)
        try:
            with client_on(services, settings, _token, lifespan=False) as client:
                assert client.get("/api/v1/whoami").status_code == 200
                _text, samples = scrape(client)
        finally:
            services.close()
    assert value(samples, "coffer_rate_limit_degraded") == 1
    assert value(samples, "coffer_cache_fresh") == 1


def test_readyz_names_redis_when_nothing_listens_and_hides_its_password(
    tmp_path: Path,
) -> None:
    """COFFER_REDIS_URL on a closed port: 503 naming redis as the one failing check, with
    the refusal as the reason and never the URL's password."""
    port = free_port()
    with backend_database("sqlite", tmp_path) as url:
        settings = cheap_settings(url, tmp_path, redis_url=f"redis://:hunter2@127.0.0.1:{port}/0")
        with served(settings, lifespan=False) as (client, _token):
            answer = client.get("/readyz")
    assert answer.status_code == 503, answer.text
    body = answer.json()
    assert body["status"] == "not ready"
    failing = {name for name, check in body["checks"].items() if not check["ok"]}
    assert failing == {"redis"}
    assert "Connection refused" in body["checks"]["redis"]["error"]
    assert "hunter2" not in answer.text


def test_readyz_names_the_database_while_postgresql_is_unreachable_then_recovers(
    tmp_path: Path,
) -> None:
    """PostgreSQL behind a proxy that is stopped: 503 naming the database (without the URL's
    password), and ready again once the proxy listens again."""
    with backend_database("postgresql", tmp_path) as direct:
        target = sa.make_url(direct)
        proxy = TcpProxy((target.host or "127.0.0.1", target.port or 5432))
        proxy.start()
        proxied = target.set(port=proxy.port, password="hunter3")
        settings = cheap_settings(proxied.render_as_string(hide_password=False), tmp_path)
        try:
            with served(settings) as (client, _token):
                assert client.get("/readyz").status_code == 200
                proxy.stop()
                down = client.get("/readyz")
                proxy.start()
                recovered = poll(lambda: client.get("/readyz").status_code == 200)
        finally:
            proxy.stop()
    assert down.status_code == 503, down.text
    checks = down.json()["checks"]
    assert down.json()["status"] == "not ready"
    assert checks["database"]["ok"] is False
    assert checks["database"]["error"]
    assert "\n" not in checks["database"]["error"]
    assert len(checks["database"]["error"]) <= 200
    assert checks["redis"]["ok"] is True
    assert "hunter3" not in down.text
    assert recovered, "/readyz did not come back once PostgreSQL was reachable again"


def test_readyz_says_the_sealer_is_stuck_until_it_runs(tmp_path: Path) -> None:
    """With no sealer running (no background jobs), entries waiting longer than the seal
    deadline (10 x COFFER_AUDIT_SEAL_INTERVAL + COFFER_JOB_LEASE_SECONDS) make the audit
    writer check fail; once the background jobs start, the node is ready again."""
    with backend_database("sqlite", tmp_path) as url:
        settings = cheap_settings(url, tmp_path, audit_seal_interval=0.01, job_lease_seconds=2)
        token = initialise_vault(settings).token  # its entries wait for the sealer
        services = build_services(settings)
        try:
            with client_on(services, settings, token, lifespan=False) as idle:
                assert poll(lambda: idle.get("/readyz").status_code == 503, within=10)
                stuck = idle.get("/readyz")
            with client_on(services, settings, token, lifespan=True) as running:
                recovered = poll(lambda: running.get("/readyz").status_code == 200)
        finally:
            services.close()
    checks = stuck.json()["checks"]
    assert {name for name, check in checks.items() if not check["ok"]} == {"audit_writer"}
    assert "the audit sealer is stuck" in checks["audit_writer"]["error"]
    assert "(limit 2.1 s)" in checks["audit_writer"]["error"]
    assert recovered


def test_a_forged_audit_row_does_not_keep_the_node_unready(settings: Settings) -> None:
    """A row the sealer refuses (its MAC is wrong) stays without a place in the tree; the
    node is not ready while it is the newest entry, and ready again once a later genuine
    entry is sealed past it."""
    with served(settings) as (client, _token):
        assert poll(lambda: client.get("/readyz").status_code == 200)
        engine = sa.create_engine(settings.database_url)
        try:
            with engine.begin() as conn:
                row = dict(conn.execute(sa.select(audit_log).limit(1)).one()._mapping)
                row.pop("seq")
                row.update(
                    id="01FORGEDROW000000000000000",
                    timestamp=time.time() - 3600,
                    mac=b"\x00" * 32,
                    leaf_index=None,
                    leaf_hash=None,
                )
                conn.execute(sa.insert(audit_log).values(**row))
            forged = poll(lambda: client.get("/readyz").status_code == 503)
            assert client.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
            recovered = poll(lambda: client.get("/readyz").status_code == 200)
            with engine.connect() as conn:
                place = conn.execute(
                    sa.select(audit_log.c.leaf_index).where(
                        audit_log.c.id == "01FORGEDROW000000000000000"
                    )
                ).scalar_one()
        finally:
            engine.dispose()
    assert forged, "a forged old row as the newest entry should make the sealer look stuck"
    assert recovered
    assert place is None  # still refused: it is only no longer counted


def test_a_sealed_server_answers_readyz_sealed_until_unsealed(tmp_path: Path) -> None:
    """A Shamir-split vault: /readyz is 503 ``sealed`` until enough shares arrive, then
    200 ``ready``."""
    directory = tmp_path / "vault"
    settings = Settings(
        directory=directory,
        database_url=f"sqlite:///{directory / 'coffer.db'}",
        root_key_file=directory / "root.key",
    )
    shares = initialise_vault(settings, split=(3, 2)).shares
    found = sealed_root(settings)
    assert found is not None
    providers, record = found
    opened: list[Services] = []

    def open_app() -> ASGIApp:
        services = build_services(settings, providers)
        opened.append(services)
        return create_app(services, max_body_bytes=settings.max_body_bytes)

    try:
        client = TestClient(SealedGate(providers.shamir(), record, open_app))
        sealed = client.get("/readyz")
        for share in shares[:2]:
            assert client.post("/api/v1/sys/unseal", json={"share": share}).status_code == 200
        unsealed = client.get("/readyz")
    finally:
        for services in opened:
            services.close()
    assert (sealed.status_code, sealed.json()) == (503, {"status": "sealed"})
    assert (unsealed.status_code, unsealed.json()["status"]) == (200, "ready")


# --- /metrics ------------------------------------------------------------------------------


def test_latency_is_labelled_by_route_template_and_no_name_shows(settings: Settings) -> None:
    """After writes and reads of a named secret, the histogram counts them under the route
    template; an unmatched path counts as ``other``; the project's, key's and ephemeral
    secret's names appear nowhere in /metrics."""
    with served(settings) as (client, _token):
        assert client.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
        path = secret_path(PROJECT, "production", KEY)
        for written in ("one", "two"):
            assert client.put(path, json={"value": written}).status_code == 200
        for version in (1, 2, 1):
            assert client.get(path, params={"version": version}).status_code == 200
        assert client.get(f"/{PROJECT}/{KEY}").status_code == 404
        body = {"key": EPHEMERAL, "value": "v", "max_reads": 2}
        assert client.post("/api/v1/ephemeral", json=body).status_code == 201
        text, samples = scrape(client)
    assert requests_of(samples, SECRET_ROUTE, "PUT", "2xx") == 2
    assert requests_of(samples, SECRET_ROUTE, "GET", "2xx") == 3
    assert requests_of(samples, "/api/v1/projects", "POST", "2xx") == 1
    assert requests_of(samples, "other", "GET", "4xx") == 1
    bucket = value(
        samples, f"{DURATION}_bucket", route=SECRET_ROUTE, method="PUT", status="2xx", le="+Inf"
    )
    assert bucket == 2
    for name in (PROJECT, KEY, EPHEMERAL):
        assert name not in text


def test_reads_and_writes_move_by_exactly_the_requests_made(settings: Settings) -> None:
    """Writes: PUT, rollback, DELETE, import and an ephemeral secret's creation; reads: GET
    of a secret (on the hot path and on FastAPI's), of an export and of an ephemeral
    secret. HEAD, listings, history, limit changes and failed requests count as neither."""
    with served(settings) as (client, _token):
        assert client.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
        _text, before = scrape(client)
        path = secret_path(PROJECT, "production", KEY)
        environment = env_path(PROJECT, "production")
        made = [
            client.put(path, json={"value": "one"}),
            client.put(path, json={"value": "two"}),
            client.post(f"{environment}/rollback/{KEY}", json={"version": 1}),
            client.post(f"{environment}/import", json={"secrets": {"OTHER": "x"}}),
            client.post("/api/v1/ephemeral", json={"key": EPHEMERAL, "value": "v"}),
            client.get(path),  # the hot read path answers this one itself
            client.get(path, params={"version": 2}),
            client.get(path, params={"version": 1}),
            client.get(f"{environment}/export", params={"format": "json"}),
            client.get(f"/api/v1/ephemeral/{EPHEMERAL}"),
            client.delete(secret_path(PROJECT, "production", "OTHER")),
        ]
        assert [answer.status_code for answer in made] == [200, 200, 200, 200, 201] + [200] * 6
        uncounted = [
            client.head(path),
            client.get(f"{environment}/secrets"),
            client.get(f"{environment}/history/{KEY}"),
            client.patch(path, json={"max_reads": 5}),
            client.get(secret_path(PROJECT, "production", "MISSING"), params={"version": 1}),
            client.put(secret_path(PROJECT, "nowhere", KEY), json={"value": "x"}),
        ]
        assert [answer.status_code for answer in uncounted] == [200, 200, 200, 200, 404, 404]
        _text, after = scrape(client)
    reads = value(after, "coffer_secret_reads_total") - value(before, "coffer_secret_reads_total")
    writes = value(after, "coffer_secret_writes_total") - value(
        before, "coffer_secret_writes_total"
    )
    assert (reads, writes) == (5, 6)


def test_429_answers_move_the_rejection_counter_by_scope(tmp_path: Path) -> None:
    """A caller over COFFER_RATE_LIMIT_IDENTITY counts under ``api``, a login over
    COFFER_LOGIN_RATE_LIMIT under ``login``; /readyz and /metrics are never limited, even
    past COFFER_RATE_LIMIT_IP."""
    with backend_database("sqlite", tmp_path) as url:
        settings = cheap_settings(
            url,
            tmp_path,
            rate_limit_identity="3/minute",
            login_rate_limit="1/minute",
            rate_limit_ip="6/minute",
        )
        with served(settings) as (client, _token):
            whoami = [client.get("/api/v1/whoami").status_code for _ in range(4)]
            login = {"email": "nobody@example.test", "password": "not the password"}
            logins = [client.post("/api/v1/auth/login", json=login).status_code for _ in range(2)]
            probes = [client.get("/readyz").status_code for _ in range(8)]
            _text, samples = scrape(client)
            scrapes = [client.get("/metrics").status_code for _ in range(8)]
    assert whoami == [200, 200, 200, 429]
    assert logins == [401, 429]
    assert probes == [200] * 8
    assert scrapes == [200] * 8
    assert value(samples, "coffer_rate_limit_rejections_total", scope="api") == 1
    assert value(samples, "coffer_rate_limit_rejections_total", scope="login") == 1
    assert requests_of(samples, "/api/v1/whoami", "GET", "4xx") == 1


def test_rotation_gauges_follow_a_project_key_rotation(settings: Settings) -> None:
    """During a data-key rotation one project is rotating with its versions remaining; after
    the last step both gauges are 0. The root-key generation is 1."""
    with served(settings) as (client, _token):
        assert client.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
        for index in range(3):
            path = secret_path(PROJECT, "staging", f"K{index}")
            assert client.put(path, json={"value": "v"}).status_code == 200
        assert client.put(path, json={"value": "w"}).status_code == 200  # a second version
        _text, idle = scrape(client)
        rotation = f"/api/v1/projects/{PROJECT}/key-rotation"
        assert client.post(rotation).json()["remaining_versions"] == 4
        _text, started = scrape(client)
        step = client.post(f"{rotation}/steps", json={"batch": 2}).json()
        _text, midway = scrape(client)
        while not step["done"]:
            step = client.post(f"{rotation}/steps", json={"cursor": step["cursor"]}).json()
        _text, finished = scrape(client)

    def gauges(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> tuple[float, ...]:
        return (
            value(samples, "coffer_key_rotations_in_progress"),
            value(samples, "coffer_key_rotation_versions_remaining"),
            value(samples, "coffer_root_key_generation"),
        )

    assert gauges(idle) == (0, 0, 1)
    assert gauges(started) == (1, 4, 1)
    assert gauges(midway) == (1, 2, 1)
    assert gauges(finished) == (0, 0, 1)


_WORKER = """
import asyncio, sys
from coffer.api.http_metrics import HttpMetrics, HttpMetricsMiddleware, SECRET_ROUTE, set_route

async def app(scope, receive, send):
    set_route(scope, SECRET_ROUTE)  # as the hot read path does, before FastAPI routes
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})

async def receive():
    return {"type": "http.request", "body": b""}

async def send(message):
    pass

PATH = "/api/v1/projects/p/environments/e/secrets/k"

async def main(count):
    middleware = HttpMetricsMiddleware(app, HttpMetrics())
    for _ in range(count):
        await middleware({"type": "http", "method": "GET", "path": PATH}, receive, send)

asyncio.run(main(int(sys.argv[1])))
"""

_SCRAPER = """
from coffer.api.http_metrics import HttpMetrics, exposition
print(exposition(HttpMetrics()).decode())
"""


def test_multiprocess_mode_adds_up_every_worker(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set, two worker processes' requests are added up by the
    exposition that any process serves, and a route set by a layer before FastAPI (the hot
    read path's ``set_route``) labels and counts its reads."""
    environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in ("3", "4"):
        subprocess.run(
            [sys.executable, "-c", _WORKER, count], env=environment, check=True, timeout=60
        )
    text = subprocess.run(
        [sys.executable, "-c", _SCRAPER],
        env=environment,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert requests_of(samples, SECRET_ROUTE, "GET", "2xx") == 7
    assert value(samples, "coffer_secret_reads_total") == 7
