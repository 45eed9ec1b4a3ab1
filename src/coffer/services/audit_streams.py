"""Streaming the sealed audit log to SIEMs, and the status of every consumer of the log.

``COFFER_AUDIT_STREAMS`` lists sinks: ``syslog+tcp://host:port``, ``syslog+udp://host:port``
(RFC 5424 messages) and ``http(s)://...`` (batches of records as ``{"entries": [...]}``).
Each sink is a consumer with its own cursor, named ``stream:<scheme>://<host>:<port>`` (never
with credentials). A step reads a batch after the cursor, sends it, and only then moves the
cursor, so delivery is at least once. When the sink fails the cursor stays (the log is the
spool), the reason is kept as the cursor's ``last_error``, and the stream waits
``min(base * 2**(failures - 1), cap)`` seconds before trying again. Sinks are the operator's
choice (a vault-level setting) and receive the entries of every organization; they are not
held to the SSRF guard, since a SIEM normally lives on a private network.

``LogConsumers`` gathers the consumers (webhook dispatcher and sender, anomaly detector,
streams) for the background jobs and reports each one's backlog for ``/metrics``.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from coffer.audit.sinks import (
    HttpBatchSender,
    SinkAddress,
    SinkUnavailable,
    SyslogSender,
    parse_sink_url,
)
from coffer.domain.errors import ConfigError
from coffer.services.anomalies import AnomalyDetector
from coffer.services.audit import AuditService
from coffer.services.background import Job
from coffer.services.webhook_delivery import WebhookDispatcher, WebhookSender
from coffer.storage import audit_store, webhook_store

STREAMS_VARIABLE = "COFFER_AUDIT_STREAMS"
_CURSOR_CHARS = 64


def stream_addresses(urls: Sequence[str]) -> list[SinkAddress]:
    """Returns the sinks ``urls`` name. Raises ConfigError naming COFFER_AUDIT_STREAMS for a
    malformed URL (the message never repeats it) or two sinks on one host and port."""
    addresses: list[SinkAddress] = []
    names: set[str] = set()
    for position, url in enumerate(urls, start=1):
        try:
            address = parse_sink_url(url)
        except ConfigError as exc:
            raise ConfigError(f"{STREAMS_VARIABLE} entry {position}: {exc.message}") from None
        name = stream_cursor_name(address)
        if name in names:
            raise ConfigError(
                f"{STREAMS_VARIABLE} entry {position}: another sink already uses "
                f"{address.scheme} on the same host and port"
            )
        names.add(name)
        addresses.append(address)
    return addresses


def stream_cursor_name(address: SinkAddress) -> str:
    """Returns ``stream:<scheme>://<host>:<port>`` (a long name is cut and ends in a hash)."""
    host = f"[{address.host}]" if ":" in address.host else address.host
    name = f"stream:{address.scheme}://{host}:{address.port}"
    if len(name) <= _CURSOR_CHARS:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{name[: _CURSOR_CHARS - 9]}~{digest}"


class AuditStream:
    """Feeds one sink from the sealed log (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        audit: AuditService,
        address: SinkAddress,
        *,
        batch: int = 500,
        timeout_seconds: float = 5.0,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        hostname: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._audit = audit
        self.address = address
        self.name = stream_cursor_name(address)
        self._batch = batch
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._clock = clock
        self._failures = 0
        self._retry_at = 0.0
        self._syslog: SyslogSender | None = None
        self._http: HttpBatchSender | None = None
        if address.scheme in ("http", "https"):
            self._http = HttpBatchSender(address.url, timeout_seconds=timeout_seconds)
        else:
            self._syslog = SyslogSender(
                address,
                hostname=hostname or socket.gethostname() or "coffer",
                timeout_seconds=timeout_seconds,
            )

    @property
    def failures(self) -> int:
        """Consecutive failed sends (0 once a batch went through)."""
        return self._failures

    def step(self) -> bool:
        """Sends the next batch unless backing off; returns True when a full batch went
        (more may be waiting)."""
        if self._clock() < self._retry_at:
            return False
        with self._engine.connect() as conn:
            position = audit_store.cursor_position(conn, self.name)
        records = self._audit.read_after(position or 0, self._batch)
        if not records:
            return False
        try:
            if self._syslog is not None:
                self._syslog.send([self._syslog.format(record) for record in records])
            elif self._http is not None:
                self._http.send(records)
        except SinkUnavailable as exc:
            self._failures += 1
            delay = min(self._backoff_base * 2.0 ** (self._failures - 1), self._backoff_cap)
            self._retry_at = self._clock() + delay
            with self._engine.begin() as conn:
                webhook_store.note_cursor_error(
                    conn, self.name, position or 0, exc.reason, time.time()
                )
            return False
        self._failures, self._retry_at = 0, 0.0
        with self._engine.begin() as conn:
            webhook_store.advance_cursor(
                conn, self.name, position, int(records[-1]["index"]) + 1, time.time()
            )
        return len(records) == self._batch

    def close(self) -> None:
        """Closes the sink's connection."""
        if self._syslog is not None:
            self._syslog.close()
        if self._http is not None:
            self._http.close()


@dataclass(frozen=True)
class ConsumerStatus:
    """A consumer's backlog (sealed entries it has not taken) and whether its last attempt
    failed."""

    backlog: int
    failing: bool


@dataclass(frozen=True)
class LogStatus:
    """What ``/metrics`` shows: sealed and waiting entries, each consumer, and deliveries by
    state."""

    sealed: int
    unsealed: int
    consumers: dict[str, ConsumerStatus]
    deliveries: dict[str, int]


class LogConsumers:
    """The consumers of the sealed log that run as background jobs."""

    def __init__(
        self,
        engine: Engine,
        dispatcher: WebhookDispatcher,
        sender: WebhookSender,
        anomalies: AnomalyDetector,
        streams: Sequence[AuditStream] = (),
    ) -> None:
        self._engine = engine
        self.dispatcher = dispatcher
        self.sender = sender
        self.anomalies = anomalies
        self.streams = list(streams)

    @property
    def cursor_names(self) -> list[str]:
        """The cursors of the consumers that read the log."""
        return ["webhooks", "anomalies", *(stream.name for stream in self.streams)]

    def jobs(self, interval: float) -> list[Job]:
        """One job per consumer, each polling every ``interval`` seconds."""
        jobs = [
            Job("webhook-dispatcher", interval, self.dispatcher.step),
            Job("webhook-sender", interval, self.sender.step),
            Job("anomaly-detector", interval, self.anomalies.step),
        ]
        jobs += [Job(stream.name, interval, stream.step) for stream in self.streams]
        return jobs

    def status(self) -> LogStatus:
        """Returns the log's and every consumer's current numbers (one read of the database;
        a consumer that never ran has the whole log as its backlog)."""
        with self._engine.connect() as conn:
            tree = audit_store.read_tree(conn)
            unsealed = audit_store.count_unsealed(conn)
            cursors = audit_store.cursor_positions(conn)
            deliveries = webhook_store.delivery_counts(conn)
        consumers = {}
        for name in self.cursor_names:
            position, error = cursors.get(name, (0, None))
            taken = max(position, tree.pruned_before)
            consumers[name] = ConsumerStatus(max(0, tree.size - taken), error is not None)
        return LogStatus(tree.size, unsealed, consumers, deliveries)

    def close(self) -> None:
        """Closes the streams' connections."""
        for stream in self.streams:
            stream.close()
