"""Cache epochs: how every node learns, within a second, that its caches went stale.

Each ``CacheFamily`` has an *epoch*, an opaque 64-bit value. A cache entry remembers the
epoch of its family read *before* its data was fetched, and is used only while the epoch is
unchanged. A committed write to a watched table (``storage.change_tracking``) moves the epoch
to a new random value, on this node at once and on every other node through the shared
channel. Random values (rather than counters) mean two writers racing can never leave the
epoch at a value a stale entry already holds.

Backends:

* ``FileEpochs`` (SQLite): the epochs live in a small memory-mapped file next to the
  database, so every process on the machine (server workers, local CLI commands) sees a
  change the moment it is written.
* ``RedisEpochs`` (PostgreSQL with ``COFFER_REDIS_URL``): epochs in this process, changes
  published on a Redis channel that every node subscribes to. While the subscription is down
  the node cannot hear changes, so it is *not fresh*: caches are bypassed (every read goes to
  the database) until it has subscribed again, and then every epoch moves.
* ``PostgresEpochs`` (PostgreSQL without Redis): the same, over PostgreSQL's own
  ``LISTEN``/``NOTIFY`` on one extra connection per node.
* ``NoEpochs`` (``COFFER_CACHE_SECONDS=0``): never fresh, so nothing is cached.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import secrets
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from coffer.storage.change_tracking import FAMILIES, CacheFamily

_log = logging.getLogger("coffer.cache")
_SLOT = struct.Struct("<Q")
CHANNEL = "coffer:cache-epochs"
HEARTBEAT_SECONDS = 0.5
SILENCE_SECONDS = 1.5
PG_CHANNEL = "coffer_cache_epochs"


def _new_value() -> int:
    return secrets.randbits(64) or 1


class Epochs(Protocol):
    """The epochs of the cache families on this node."""

    @property
    def fresh(self) -> bool:
        """False while this node may miss changes made elsewhere (caches must be bypassed)."""
        ...

    def current(self, family: CacheFamily) -> int:
        """The family's epoch now."""
        ...

    def changed(self, families: frozenset[CacheFamily]) -> None:
        """Moves the families' epochs here and tells the other nodes; never raises."""
        ...

    def close(self) -> None:
        """Releases what the backend holds (threads, files, connections)."""
        ...


class NoEpochs:
    """A node that cannot hear changes: nothing is cached."""

    fresh = False

    def current(self, family: CacheFamily) -> int:
        return 0

    def changed(self, families: frozenset[CacheFamily]) -> None:
        return None

    def close(self) -> None:
        return None


class LocalEpochs:
    """Epochs for one process that is the only one using its database (tests, tools)."""

    fresh = True

    def __init__(self) -> None:
        self._values = [_new_value() for _ in FAMILIES]

    def current(self, family: CacheFamily) -> int:
        return self._values[family]

    def changed(self, families: frozenset[CacheFamily]) -> None:
        for family in families:
            self._values[family] = _new_value()

    def close(self) -> None:
        return None


class FileEpochs:
    """Epochs in a memory-mapped file shared by every process using one SQLite database."""

    fresh = True

    def __init__(self, path: Path) -> None:
        size = _SLOT.size * len(FAMILIES)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)

    def current(self, family: CacheFamily) -> int:
        value: int = _SLOT.unpack_from(self._map, family * _SLOT.size)[0]
        return value

    def changed(self, families: frozenset[CacheFamily]) -> None:
        for family in families:
            _SLOT.pack_into(self._map, family * _SLOT.size, _new_value())

    def close(self) -> None:
        self._map.close()


class _ChannelEpochs(ABC):
    """Epochs in this process, kept in step with other nodes over a broadcast channel.

    Subclasses say how to ``_publish`` a message and how to ``_subscribe`` (a generator
    that yields once subscribed, then every message received, and raises when the
    channel is lost). A listener thread keeps the subscription; while it is down the node
    is not fresh.
    """

    def __init__(self, reconnect_seconds: float) -> None:
        self._values = [_new_value() for _ in FAMILIES]
        self._fresh = threading.Event()
        self._stop = threading.Event()
        self._reconnect = reconnect_seconds
        self._last_heard = 0.0
        self._threads = (
            threading.Thread(target=self._listen, name="coffer-epochs", daemon=True),
            threading.Thread(target=self._beat, name="coffer-epochs-beat", daemon=True),
        )

    def _start(self) -> None:
        for thread in self._threads:
            thread.start()

    @property
    def fresh(self) -> bool:
        """Subscribed, and the channel carried a message (at least this node's own
        heartbeat) within ``SILENCE_SECONDS``: a channel that went quiet (a half-open
        connection, a hung server) is not trusted."""
        return self._fresh.is_set() and time.monotonic() - self._last_heard < SILENCE_SECONDS

    def current(self, family: CacheFamily) -> int:
        return self._values[family]

    def changed(self, families: frozenset[CacheFamily]) -> None:
        self._move(families)
        message = ",".join(str(int(family)) for family in sorted(families))
        try:
            self._publish(message)
        except Exception as exc:  # noqa: BLE001 - the channel is down: this node's heartbeat
            # stops too, and nodes that cannot hear anyone bypass their caches
            _log.warning("could not publish a cache change: %s", type(exc).__name__)

    def wait_fresh(self, timeout: float) -> bool:
        """Waits until subscribed; True when it is (used at start and by tests)."""
        return self._fresh.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._fresh.clear()

    @abstractmethod
    def _publish(self, message: str) -> None:
        """Sends ``message`` to every node on the channel; raises when it cannot."""

    @abstractmethod
    def _subscribe(self) -> Iterator[object]:
        """Subscribes, yields once subscribed, then yields each message received (None
        when a wait ended with none); raises when the channel is lost."""

    def _move(self, families: frozenset[CacheFamily] | tuple[CacheFamily, ...]) -> None:
        for family in families:
            self._values[family] = _new_value()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._subscribe()
                next(messages)  # subscribed
                # Whatever changed while we could not hear it: treat everything as stale.
                self._move(FAMILIES)
                self._last_heard = time.monotonic()
                self._fresh.set()
                for message in messages:
                    if self._stop.is_set():
                        break
                    if message is not None:
                        self._last_heard = time.monotonic()
                        self._apply(message)
            except Exception as exc:  # noqa: BLE001 - the outermost edge of the listener
                if self._fresh.is_set():
                    _log.warning(
                        "cache invalidation channel lost (%s): caches bypassed until it is back",
                        type(exc).__name__,
                    )
                self._fresh.clear()
                self._stop.wait(self._reconnect)
            finally:
                self._fresh.clear()

    def _beat(self) -> None:
        """Publishes an empty message every ``HEARTBEAT_SECONDS`` (see ``fresh``)."""
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(Exception):  # a dead channel shows as silence
                self._publish("")

    def _apply(self, data: object) -> None:
        text = data.decode("ascii", "replace") if isinstance(data, bytes) else str(data)
        families = [
            CacheFamily(int(part))
            for part in text.split(",")
            if part.isdigit() and int(part) < len(FAMILIES)
        ]
        self._move(tuple(families))


class RedisEpochs(_ChannelEpochs):
    """Epochs kept in step over Redis pub/sub."""

    def __init__(self, redis_url: str, *, reconnect_seconds: float = 0.5) -> None:
        import redis

        super().__init__(reconnect_seconds)
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._client: Any = redis.Redis.from_url(
            redis_url,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            health_check_interval=1,
            retry=Retry(NoBackoff(), 0),
        )
        self._start()

    def close(self) -> None:
        super().close()
        self._client.close()

    def _publish(self, message: str) -> None:
        self._client.publish(CHANNEL, message)

    def _subscribe(self) -> Iterator[object]:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANNEL)
            yield None
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=1.0)
                yield message.get("data") if message is not None else None
        finally:
            with contextlib.suppress(Exception):  # closing a broken connection
                pubsub.close()


class PostgresEpochs(_ChannelEpochs):
    """Epochs kept in step over PostgreSQL ``LISTEN``/``NOTIFY`` (a channel per database:
    the notification reaches every session connected to it)."""

    def __init__(self, conninfo: str, *, reconnect_seconds: float = 0.5) -> None:
        super().__init__(reconnect_seconds)
        self._conninfo = conninfo
        self._publisher: Any = None
        self._publish_lock = threading.Lock()
        self._start()

    def close(self) -> None:
        super().close()
        with self._publish_lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            connect_timeout=3,
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=1,
            keepalives_count=3,
        )

    def _publish(self, message: str) -> None:
        with self._publish_lock:
            sent = False
            try:
                if self._publisher is None or self._publisher.closed:
                    self._publisher = self._connect()
                self._publisher.execute("SELECT pg_notify(%s, %s)", (PG_CHANNEL, message))
                sent = True
            finally:
                if not sent and self._publisher is not None:
                    self._publisher.close()  # a broken connection: the next call reconnects
                    self._publisher = None

    def _subscribe(self) -> Iterator[object]:
        listener = self._connect()
        try:
            listener.execute(f"LISTEN {PG_CHANNEL}")
            yield None
            while not self._stop.is_set():
                received = False
                for notify in listener.notifies(timeout=1.0):
                    received = True
                    yield notify.payload
                if not received:
                    listener.execute("SELECT 1")  # notices a lost connection
                    yield None
        finally:
            with contextlib.suppress(Exception):  # closing a broken connection
                listener.close()


def epochs_for(
    *,
    cache_seconds: int,
    sqlite_file: Path | None,
    postgres_conninfo: str | None,
    redis_url: str | None,
) -> Epochs:
    """The epochs backend for a node: a shared file beside a SQLite database; for
    PostgreSQL, Redis pub/sub with ``COFFER_REDIS_URL``, else LISTEN/NOTIFY; none (no
    caching) with ``cache_seconds`` 0."""
    if cache_seconds <= 0:
        return NoEpochs()
    if postgres_conninfo is None:
        return FileEpochs(Path(f"{sqlite_file}-epochs")) if sqlite_file else LocalEpochs()
    channel: _ChannelEpochs = (
        RedisEpochs(redis_url) if redis_url else PostgresEpochs(postgres_conninfo)
    )
    channel.wait_fresh(2.0)
    return channel
