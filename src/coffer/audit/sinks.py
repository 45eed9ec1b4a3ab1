"""Senders that deliver formatted audit records to a SIEM: syslog over UDP or TCP, and HTTP.

A streaming task reads sealed records, formats them (``coffer.audit.formats``) and hands a
batch to one sender. A sender either delivers the whole batch or raises ``SinkUnavailable``;
the task then retries the batch later, so delivery is at least once. No call blocks longer
than the sender's timeout, except where a method's docstring says otherwise.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from coffer.audit.formats import Record, syslog_message
from coffer.domain.errors import ConfigError, ServerUnreachable
from coffer.storage.json_text import canonical_json

SinkScheme = Literal["syslog+udp", "syslog+tcp", "http", "https"]
SINK_SCHEMES: tuple[SinkScheme, ...] = ("syslog+udp", "syslog+tcp", "http", "https")
DEFAULT_SYSLOG_PORT = 514
_JSON = {"content-type": "application/json"}


class SinkUnavailable(ServerUnreachable):
    """A sink could not take a batch (unreachable, timed out, refused or answered non-2xx).
    ``reason`` says which; it never contains credentials or record contents."""

    code = "sink_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"audit sink unavailable: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class SinkAddress:
    """Where a sink lives. For syslog schemes ``url`` is ``scheme://host:port``; for HTTP it
    is the URL as given."""

    scheme: SinkScheme
    host: str
    port: int
    url: str


def parse_sink_url(url: str) -> SinkAddress:
    """Returns the address of ``syslog+udp://host:port``, ``syslog+tcp://host:port`` (port 514
    when left out), ``http://...`` or ``https://...``. Raises ConfigError naming the problem;
    the message never repeats the URL, which may carry credentials."""
    if any(char <= " " or char == "\x7f" for char in url):
        raise ConfigError("audit sink URL must not contain spaces or control characters")
    parts = urlsplit(url)
    scheme = next((known for known in SINK_SCHEMES if known == parts.scheme.lower()), None)
    if scheme is None:
        raise ConfigError(
            "audit sink URL must start with syslog+udp://, syslog+tcp://, http:// or https://"
        )
    if not parts.hostname:
        raise ConfigError("audit sink URL must name a host")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("audit sink URL has a port outside 1..65535") from None
    if port == 0:
        raise ConfigError("audit sink URL has a port outside 1..65535")
    if scheme in ("http", "https"):
        default = 443 if scheme == "https" else 80
        return SinkAddress(scheme, parts.hostname, port or default, url)
    if parts.username is not None or parts.password is not None:
        raise ConfigError("a syslog sink URL must not contain a user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("a syslog sink URL must be only scheme://host:port")
    port = port or DEFAULT_SYSLOG_PORT
    netloc = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    canonical = f"{scheme}://{netloc}:{port}"
    return SinkAddress(scheme, parts.hostname, port, canonical)


class SyslogSender:
    """Sends RFC 5424 messages to a syslog receiver.

    UDP sends one datagram per message (RFC 5426); a receiver that is down is only noticed
    when the system reports an ICMP error on a later send. TCP frames each message with RFC
    6587 octet counting (``<length> <message>``) on one persistent connection, which is
    re-opened after any error. ``send`` raises SinkUnavailable on failure and never takes
    longer than ``timeout_seconds`` in total, name resolution included. Not thread-safe."""

    def __init__(self, address: SinkAddress, *, hostname: str, timeout_seconds: float) -> None:
        if address.scheme not in ("syslog+udp", "syslog+tcp"):
            raise ConfigError("a syslog sender needs a syslog+udp:// or syslog+tcp:// address")
        if timeout_seconds <= 0:
            raise ConfigError("the audit sink timeout must be positive")
        self.address = address
        self.hostname = hostname
        self.timeout_seconds = timeout_seconds
        self._sock: socket.socket | None = None

    def format(self, record: Record) -> str:
        """Returns ``record`` as the syslog message this sender's host would send."""
        return syslog_message(record, hostname=self.hostname)

    def send(self, messages: list[str]) -> None:
        """Delivers every message in order, or raises SinkUnavailable (the connection is then
        closed, and the next call opens a new one)."""
        if not messages:
            return
        deadline = time.monotonic() + self.timeout_seconds
        payloads = [message.encode("utf-8") for message in messages]
        try:
            sock = self._connected(deadline)
            sock.settimeout(_remaining(deadline))
            if self.address.scheme == "syslog+udp":
                for payload in payloads:
                    sock.send(payload)
            else:
                sock.sendall(b"".join(b"%d %b" % (len(p), p) for p in payloads))
        except TimeoutError:
            self.close()
            raise SinkUnavailable(f"{self.address.url} timed out") from None
        except OSError as exc:
            self.close()
            raise SinkUnavailable(f"{self.address.url}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Closes the connection, if one is open."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SyslogSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connected(self, deadline: float) -> socket.socket:
        udp = self.address.scheme == "syslog+udp"
        # A UDP socket keeps its pending ICMP error so that the next send reports it.
        if self._sock is not None and (udp or not _peer_closed(self._sock)):
            return self._sock
        self.close()
        socktype = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        family, _, proto, _, sockaddr = _resolve(
            self.address.host, self.address.port, socktype, deadline
        )
        sock = socket.socket(family, socktype, proto)
        try:
            sock.settimeout(_remaining(deadline))
            # A connected UDP socket reports the ICMP "port unreachable" of a dead receiver.
            sock.connect(sockaddr)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        return sock


class HttpBatchSender:
    """POSTs batches of records as ``{"entries": [...]}`` JSON to an HTTP(S) endpoint.

    Redirects are not followed (a redirect is a failure), so a batch reaches only the URL that
    was configured. ``timeout_seconds`` bounds each phase of a request (connect, write, read)
    rather than the request as a whole, and name resolution is not bounded by it. Callers
    that take the URL from a user must check it with
    ``coffer.audit.outbound.check_outbound_url`` before each send."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        address = parse_sink_url(url)
        if address.scheme not in ("http", "https"):
            raise ConfigError("an HTTP sender needs an http:// or https:// URL")
        self.address = address
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            headers=headers,
        )

    def send(self, records: list[Record]) -> None:
        """Delivers ``records`` in one request, or raises SinkUnavailable naming the status
        code (non-2xx) or the transport failure."""
        if not records:
            return
        body = canonical_json({"entries": records}).encode("ascii")
        try:
            response = self._client.post(self.address.url, content=body, headers=_JSON)
        except httpx.TimeoutException:
            raise SinkUnavailable(f"{self._where()} timed out") from None
        except httpx.HTTPError as exc:
            raise SinkUnavailable(f"{self._where()}: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise SinkUnavailable(f"{self._where()} answered HTTP {response.status_code}")

    def close(self) -> None:
        """Closes the pooled connections."""
        self._client.close()

    def __enter__(self) -> HttpBatchSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _where(self) -> str:
        # The host only: the path or query of a sink URL may hold a token.
        return f"{self.address.scheme}://{self.address.host}:{self.address.port}"


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _peer_closed(sock: socket.socket) -> bool:
    """True when a connection's peer has closed it or it has an error pending. A syslog
    receiver never writes, so a readable socket means end of stream or an error."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _resolve(host: str, port: int, socktype: int, deadline: float) -> Any:
    """Returns the first getaddrinfo entry for ``host``, waiting no longer than ``deadline``
    (the lookup runs in a daemon thread that is abandoned on timeout)."""
    outcome: list[Any] = []

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socktype))
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=lookup, name="coffer-sink-resolve", daemon=True)
    worker.start()
    worker.join(_remaining(deadline))
    if not outcome:
        raise TimeoutError
    if isinstance(outcome[0], OSError) or not outcome[0]:
        raise SinkUnavailable(f"host {host} does not resolve")
    return outcome[0][0]
