"""SIEM streams from the sealed log to real receivers on 127.0.0.1 (syslog over TCP and UDP,
HTTP batches), the backlog in ``/metrics``, and a dead sink that never slows requests."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from coffer.api.app import create_app
from coffer.audit.sinks import parse_sink_url
from coffer.bootstrap import background_jobs, build_services
from coffer.config import Settings
from coffer.domain.errors import ConfigError
from coffer.services.audit_streams import AuditStream, LogConsumers
from coffer.storage import audit_store
from coffer.storage.tables import organizations
from tests.integration.team_helpers import CLIENT_ADDRESS, SECRET, bearer
from tests.integration.test_webhooks import WAIT, Acme, OpenAcme, Receiver, acme_opener


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SyslogReceiver:
    """A syslog receiver on 127.0.0.1: TCP with RFC 6587 octet counting, or UDP datagrams;
    ``messages`` collects what arrives."""

    def __init__(self, scheme: str, port: int = 0) -> None:
        self.udp = scheme == "syslog+udp"
        self.messages: list[bytes] = []
        self.stop = threading.Event()
        if self.udp:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", port))
        else:
            self.sock = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                if self.udp:
                    self.messages.append(self.sock.recv(65536))
                    continue
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                self._frames(conn)

    def _frames(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buffer = b""
        while not self.stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer += chunk
            while b" " in buffer:
                length, rest = buffer.split(b" ", 1)
                if len(rest) < int(length):
                    break
                self.messages.append(rest[: int(length)])
                buffer = rest[int(length) :]

    def records(self) -> list[dict[str, Any]]:
        """The records the messages carry (the JSON after the structured data)."""
        return [json.loads(m[m.index(b"] {") + 2 :]) for m in self.messages]

    def close(self) -> None:
        """Stops receiving."""
        self.stop.set()
        self.thread.join(WAIT)
        self.sock.close()


@pytest.fixture
def syslog() -> Iterator[Callable[..., SyslogReceiver]]:
    """Starts syslog receivers (closed afterwards)."""
    made: list[SyslogReceiver] = []

    def start(scheme: str, port: int = 0) -> SyslogReceiver:
        made.append(SyslogReceiver(scheme, port))
        return made[-1]

    yield start
    for receiver in made:
        receiver.close()


@pytest.fixture
def open_acme(settings: Settings) -> Iterator[OpenAcme]:
    """Opens organization acme on the backend under test."""
    with acme_opener(settings) as opener:
        yield opener


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A recording HTTP receiver."""
    made = Receiver()
    yield made
    made.close()


def drain(stream: AuditStream) -> None:
    """Runs the stream's steps until it has nothing more to send."""
    while stream.step():
        pass


def metrics(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` without credentials, as {(sample name, labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def backlog(values: dict[Any, float], consumer: str) -> tuple[float, float]:
    """(backlog, errors) of one consumer in parsed metrics."""
    labels = (("consumer", consumer),)
    return (
        values[("coffer_audit_consumer_backlog", labels)],
        values[("coffer_audit_consumer_errors", labels)],
    )


def tree_size(acme: Acme) -> int:
    """The number of sealed entries."""
    return acme.services.audit.head()


@pytest.mark.parametrize("scheme", ["syslog+tcp", "syslog+udp"])
def test_syslog_stream_sends_every_entry_once_in_order(
    open_acme: OpenAcme, syslog: Callable[..., SyslogReceiver], scheme: str
) -> None:
    """Every sealed entry reaches the syslog receiver once, in index order, as an RFC 5424
    message carrying its record; the cursor is at the head and /metrics shows no backlog."""
    sink = syslog(scheme)
    acme = open_acme(audit_streams=(sink.url,))
    [stream] = acme.services.consumers.streams
    assert stream.name == f"stream:{scheme}://127.0.0.1:{sink.port}"
    acme.read()
    acme.services.audit.sealer.seal()
    drain(stream)
    size = tree_size(acme)
    deadline = time.monotonic() + WAIT
    while len(sink.messages) < size and time.monotonic() < deadline:
        time.sleep(0.01)
    records = sink.records()
    assert [r["index"] for r in records] == list(range(size))
    assert any(r["action"] == "secret.read" and r["key"] == "db/password" for r in records)
    assert all(m.startswith(b"<") and b" coffer - " in m for m in sink.messages)
    assert backlog(metrics(acme.client), stream.name) == (0, 0)


def test_http_stream_posts_batches_of_records(open_acme: OpenAcme, receiver: Receiver) -> None:
    """An HTTP sink gets the entries as ``{"entries": [...]}`` batches of at most the batch
    size, every entry once and in order."""
    acme = open_acme()
    acme.read()
    acme.services.audit.sealer.seal()
    stream = AuditStream(
        acme.services.engine, acme.services.audit, parse_sink_url(f"{receiver.url}/in"), batch=3
    )
    drain(stream)
    stream.close()
    size = tree_size(acme)
    batches = [json.loads(r.body)["entries"] for r in receiver.wait_for((size + 2) // 3)]
    assert all(1 <= len(batch) <= 3 for batch in batches)
    assert [e["index"] for batch in batches for e in batch] == list(range(size))
    assert {r.path for r in receiver.requests} == {"/in"}


def test_a_dead_sink_keeps_its_place_and_catches_up(
    open_acme: OpenAcme, syslog: Callable[..., SyslogReceiver]
) -> None:
    """While the sink is down the cursor stays, the error and backlog show in /metrics and the
    stream backs off; once the receiver is up, everything arrives and the backlog is 0."""
    port = free_port()
    acme = open_acme()
    now = [1000.0]
    stream = AuditStream(
        acme.services.engine,
        acme.services.audit,
        parse_sink_url(f"syslog+tcp://127.0.0.1:{port}"),
        timeout_seconds=1.0,
        backoff_base=10.0,
        clock=lambda: now[0],
    )
    acme.services.consumers.streams.append(stream)
    acme.services.audit.sealer.seal()
    assert stream.step() is False and stream.failures == 1
    size = tree_size(acme)
    with acme.services.engine.connect() as conn:
        position, error = audit_store.cursor_positions(conn)[stream.name]
    assert position == 0 and error is not None and str(port) in error
    assert backlog(metrics(acme.client), stream.name) == (size, 1)
    sink = syslog("syslog+tcp", port)
    assert stream.step() is False and stream.failures == 1  # still backing off
    now[0] += 10.0
    drain(stream)
    assert stream.failures == 0
    deadline = time.monotonic() + WAIT
    while len(sink.messages) < size and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [r["index"] for r in sink.records()] == list(range(size))
    assert backlog(metrics(acme.client), stream.name) == (0, 0)


def test_a_hanging_sink_never_slows_requests_and_drains_when_it_answers(
    open_acme: OpenAcme, receiver: Receiver
) -> None:
    """With the server's jobs running and the HTTP sink holding every request, reads still
    answer fast; /metrics shows the stream's backlog and error, which clear once the sink
    answers again."""
    acme = open_acme(audit_seal_interval=0.05)
    services = acme.services
    stream = AuditStream(
        services.engine,
        services.audit,
        parse_sink_url(f"{receiver.url}/ingest"),
        timeout_seconds=2.0,
        backoff_base=0.1,
        backoff_cap=0.3,
    )
    old = services.consumers
    consumers = LogConsumers(services.engine, old.dispatcher, old.sender, old.anomalies, [stream])
    running = dataclasses.replace(
        services,
        consumers=consumers,
        background=background_jobs(acme.settings, services.audit, services.audit.sealer, consumers),
    )
    receiver.hang = True
    app = create_app(running, max_body_bytes=acme.settings.max_body_bytes)
    with TestClient(app, base_url="http://127.0.0.1", client=(CLIENT_ADDRESS, 50000)) as client:
        receiver.wait_for(1)  # the sink now holds the stream's first batch
        slowest = 0.0
        for _ in range(10):
            started = time.monotonic()
            response = client.get(SECRET, headers=bearer(acme.owner))
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 200
        assert slowest < 1.0, f"a read took {slowest:.2f} s while the sink hung"
        deadline = time.monotonic() + WAIT
        while backlog(metrics(client), stream.name)[1] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        pending, errors = backlog(metrics(client), stream.name)
        assert errors == 1 and pending >= 10
        receiver.hang = False
        receiver.release.set()
        deadline = time.monotonic() + WAIT
        while backlog(metrics(client), stream.name) != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backlog(metrics(client), stream.name) == (0, 0)
    delivered = {
        entry["id"]
        for request in receiver.requests
        if request.path == "/ingest"
        for entry in json.loads(request.body)["entries"]
    }
    assert len(delivered) == tree_size(acme)


def test_metrics_show_numbers_only(open_acme: OpenAcme, receiver: Receiver) -> None:
    """/metrics answers without credentials with the tree size, the unsealed count, each
    consumer and deliveries by state, naming no organization, key or sink credential."""
    url = f"http://user:cred-in-url@127.0.0.1:{receiver.port}/in?token=cred-in-query"
    acme = open_acme(audit_streams=(url,))
    acme.read()
    acme.services.audit.sealer.seal()
    acme.read()
    values = metrics(TestClient(acme.client.app))
    size = tree_size(acme)
    assert values[("coffer_audit_entries_sealed", ())] == size
    assert values[("coffer_audit_unsealed_entries", ())] >= 1
    stream_name = f"stream:http://127.0.0.1:{receiver.port}"
    for consumer in ("webhooks", "anomalies", stream_name):
        assert backlog(values, consumer) == (size, 0)
    for state in ("pending", "delivered", "failed"):
        assert values[("coffer_webhook_deliveries", (("state", state),))] == 0
    text = TestClient(acme.client.app).get("/metrics").text
    with acme.services.engine.connect() as conn:
        org_id = conn.execute(sa.select(organizations.c.id)).scalar_one()
    for private in (org_id, "db/password", "acme", "cred-in-url", "cred-in-query", "user"):
        assert private not in text


def test_bad_stream_urls_stop_start_up_without_echoing_credentials(open_acme: OpenAcme) -> None:
    """A malformed, credential-bearing syslog or duplicate sink fails start-up with a
    ConfigError naming COFFER_AUDIT_STREAMS and never repeating the URL's password."""
    settings = open_acme().settings
    for streams in (
        ("ftp://127.0.0.1/x",),
        ("syslog+tcp://admin:hunter2@127.0.0.1:514",),
        ("syslog+udp://127.0.0.1:514", "syslog+udp://127.0.0.1:514"),
        ("syslog+tcp://127.0.0.1:99999",),
    ):
        with pytest.raises(ConfigError) as caught:
            build_services(settings.with_overrides(audit_streams=streams))
        assert "COFFER_AUDIT_STREAMS" in caught.value.message
        assert "hunter2" not in caught.value.message
