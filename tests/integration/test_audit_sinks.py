"""Audit sinks against real receivers on 127.0.0.1: syslog over UDP and TCP, and HTTP."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from coffer.audit.formats import syslog_message
from coffer.audit.sinks import (
    HttpBatchSender,
    SinkUnavailable,
    SyslogSender,
    parse_sink_url,
)
from coffer.domain.errors import ConfigError

TIMEOUT = 2.0


def make_record(index: int, key: str = "DB_URL") -> dict[str, Any]:
    return {
        "index": index,
        "id": f"01JD3ZQ3T00000000000000{index:03d}",
        "time": 1764000000.5 + index,
        "action": "secret.read",
        "actor": {"id": "01JD3ZQ3T0000000000000000U", "kind": "machine"},
        "org": "01JD3ZQ3T0000000000000000O",
        "project": "web",
        "environment": "production",
        "key": key,
        "source_ip": "127.0.0.1",
        "user_agent": "coffer-test/1",
        "result": "success",
        "metadata": {"version": index},
    }


RECORDS = [make_record(0), make_record(1, key='evil\n<13>1 forged ] " \x1b[0m'), make_record(2)]


def record_of(message: bytes) -> Any:
    """The record a syslog message carries: its MSG, the JSON after the structured data."""
    text = message.decode("ascii")
    return json.loads(text[text.index("] {") + 2 :])


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FrameReceiver:
    """A TCP syslog receiver that reads RFC 6587 octet-counted frames, one connection at a
    time; it can drop each connection after ``close_after`` frames."""

    def __init__(self, close_after: int | None = None) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = int(self.server.getsockname()[1])
        self.frames: queue.Queue[tuple[int, bytes]] = queue.Queue()
        self.dropped = threading.Event()
        self.close_after = close_after
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        connection_number = 0
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            connection_number += 1
            with conn:
                self.read_frames(conn, connection_number)

    def read_frames(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(0.1)
        buffer, count = b"", 0
        while not self.stop.is_set():
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer += chunk
            while b" " in buffer:
                length_text, rest = buffer.split(b" ", 1)
                length = int(length_text)
                if len(rest) < length:
                    break
                self.frames.put((number, rest[:length]))
                buffer, count = rest[length:], count + 1
                if count == self.close_after:
                    self.dropped.set()
                    return

    def take(self, count: int) -> list[tuple[int, bytes]]:
        return [self.frames.get(timeout=TIMEOUT) for _ in range(count)]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(TIMEOUT)
        self.server.close()


@pytest.fixture
def udp_receiver() -> Iterator[socket.socket]:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(TIMEOUT)
    yield receiver
    receiver.close()


class HttpReceiver:
    """A tiny HTTP server that records each POST and answers with ``status``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 204
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.requests.append((self.path, headers, body))
                self.send_response(receiver.status)
                if receiver.status in (301, 302, 307, 308):
                    self.send_header("location", f"http://127.0.0.1:{receiver.port}/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Keeps the test output quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


def syslog_sender(scheme: str, port: int, timeout: float = TIMEOUT) -> SyslogSender:
    address = parse_sink_url(f"{scheme}://127.0.0.1:{port}")
    return SyslogSender(address, hostname="vault-1", timeout_seconds=timeout)


def test_udp_sends_one_datagram_per_record(udp_receiver: socket.socket) -> None:
    """Each record arrives as one datagram holding its RFC 5424 message."""
    with syslog_sender("syslog+udp", udp_receiver.getsockname()[1]) as sender:
        sender.send([sender.format(record) for record in RECORDS])
    datagrams = [udp_receiver.recv(65536) for _ in RECORDS]
    assert datagrams == [syslog_message(r, hostname="vault-1").encode() for r in RECORDS]
    assert [record_of(datagram) for datagram in datagrams] == RECORDS


def test_udp_reports_a_dead_receiver() -> None:
    """A UDP receiver that is not listening is reported (on the send after the ICMP error)."""
    with syslog_sender("syslog+udp", free_port()) as sender:
        message = sender.format(RECORDS[0])
        with pytest.raises(SinkUnavailable):
            for _ in range(50):
                sender.send([message])
                time.sleep(0.01)


def test_tcp_frames_parse_back_to_the_records() -> None:
    """Octet-counted frames over TCP carry one message each, hostile key included."""
    receiver = FrameReceiver()
    try:
        with syslog_sender("syslog+tcp", receiver.port) as sender:
            sender.send([sender.format(record) for record in RECORDS])
            frames = receiver.take(len(RECORDS))
    finally:
        receiver.close()
    assert [record_of(frame) for _, frame in frames] == RECORDS
    assert {number for number, _ in frames} == {1}


def test_tcp_reconnects_after_the_receiver_drops_the_connection() -> None:
    """When the receiver closes the connection, the next batch goes over a new one."""
    receiver = FrameReceiver(close_after=1)
    try:
        with syslog_sender("syslog+tcp", receiver.port) as sender:
            sender.send([sender.format(RECORDS[0])])
            assert receiver.dropped.wait(TIMEOUT)
            time.sleep(0.05)  # let the FIN reach the sender's socket
            sender.send([sender.format(RECORDS[1])])
            frames = receiver.take(2)
    finally:
        receiver.close()
    assert [(number, record_of(frame)) for number, frame in frames] == [
        (1, RECORDS[0]),
        (2, RECORDS[1]),
    ]


def test_tcp_closed_port_is_unavailable_quickly() -> None:
    """Nothing listening gives SinkUnavailable well within the timeout."""
    port = free_port()
    started = time.monotonic()
    with syslog_sender("syslog+tcp", port) as sender, pytest.raises(SinkUnavailable) as caught:
        sender.send([sender.format(RECORDS[0])])
    assert time.monotonic() - started < TIMEOUT
    assert f"syslog+tcp://127.0.0.1:{port}" in caught.value.reason


def test_tcp_receiver_that_never_reads_times_out() -> None:
    """A receiver that accepts but never reads makes send fail after about the timeout."""
    with socket.create_server(("127.0.0.1", 0)) as stalled:
        port = int(stalled.getsockname()[1])
        batch = ["x" * (1 << 20)] * 64
        started = time.monotonic()
        with (
            syslog_sender("syslog+tcp", port, timeout=0.5) as sender,
            pytest.raises(SinkUnavailable, match="timed out"),
        ):
            sender.send(batch)
        assert time.monotonic() - started < 0.5 + 1.0


def test_http_posts_the_records_as_entries(http_receiver: HttpReceiver) -> None:
    """A batch arrives as one JSON POST {"entries": [...]} with the configured headers."""
    url = f"http://127.0.0.1:{http_receiver.port}/ingest?source=coffer"
    with HttpBatchSender(url, timeout_seconds=TIMEOUT, headers={"X-Token": "t0k"}) as sender:
        sender.send(RECORDS)
    [(path, headers, body)] = http_receiver.requests
    assert path == "/ingest?source=coffer"
    assert headers["content-type"] == "application/json" and headers["x-token"] == "t0k"
    assert json.loads(body) == {"entries": RECORDS}


@pytest.mark.parametrize("status", [500, 503, 401, 302])
def test_http_non_2xx_is_unavailable(http_receiver: HttpReceiver, status: int) -> None:
    """Any answer outside 2xx, redirects included, is a failure naming the status, and a
    redirect is not followed."""
    http_receiver.status = status
    url = f"http://127.0.0.1:{http_receiver.port}/ingest"
    with (
        HttpBatchSender(url, timeout_seconds=TIMEOUT) as sender,
        pytest.raises(SinkUnavailable, match=f"answered HTTP {status}"),
    ):
        sender.send(RECORDS[:1])
    assert [path for path, _, _ in http_receiver.requests] == ["/ingest"]


def test_http_closed_port_is_unavailable() -> None:
    """Nothing listening gives SinkUnavailable within the timeout, without the URL's path."""
    started = time.monotonic()
    url = f"http://127.0.0.1:{free_port()}/secret-path?token=abc"
    with (
        HttpBatchSender(url, timeout_seconds=TIMEOUT) as sender,
        pytest.raises(SinkUnavailable) as caught,
    ):
        sender.send(RECORDS[:1])
    assert time.monotonic() - started < TIMEOUT
    assert "token" not in caught.value.message and "secret-path" not in caught.value.message


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port"),
    [
        ("syslog+udp://127.0.0.1:5514", "syslog+udp", "127.0.0.1", 5514),
        ("syslog+tcp://siem.example:6514", "syslog+tcp", "siem.example", 6514),
        ("SYSLOG+TCP://[::1]", "syslog+tcp", "::1", 514),
        ("https://siem.example/ingest", "https", "siem.example", 443),
        ("http://siem.example:8080/", "http", "siem.example", 8080),
    ],
)
def test_parse_sink_url(url: str, scheme: str, host: str, port: int) -> None:
    """Each supported scheme parses to its host and port (514, 80 or 443 by default)."""
    address = parse_sink_url(url)
    assert (address.scheme, address.host, address.port) == (scheme, host, port)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("syslog://siem:514", "must start with syslog+udp://"),
        ("tcp://siem:514", "must start with syslog+udp://"),
        ("syslog+udp://:514", "must name a host"),
        ("syslog+tcp://siem:99999", "port outside 1..65535"),
        ("syslog+tcp://siem:0", "port outside 1..65535"),
        ("syslog+tcp://admin:hunter2@siem:514", "must not contain a user name or password"),
        ("syslog+tcp://siem:514/path", "must be only scheme://host:port"),
        ("https://user:hunter2@siem\n.example/", "must not contain spaces or control"),
    ],
)
def test_parse_sink_url_rejects(url: str, problem: str) -> None:
    """A bad sink URL is a configuration error naming the problem and never the password."""
    with pytest.raises(ConfigError) as caught:
        parse_sink_url(url)
    assert problem in caught.value.message and "hunter2" not in caught.value.message
