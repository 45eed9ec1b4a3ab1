"""Engine creation for SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with foreign keys on and ``secure_delete`` so deleted rows (destroyed
data keys, deleted secret versions) are overwritten rather than left in free pages. Every SQLite
transaction starts with ``BEGIN IMMEDIATE``: nearly every request writes an audit entry, and
taking the write lock up front avoids lock-upgrade deadlocks between processes. The engine keeps
a single connection (see ``create_engine``).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from coffer.domain.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 10_000
PG_CONNECT_TIMEOUT_S = 3


def _sqlite_path(url: sa.URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:":
        return None
    return Path(database)


WRITER_TURN = "coffer_writer_turn"


class WriterTurn:
    """One writer at a time across every process using a SQLite file.

    SQLite lets a second writer wait in its busy handler, which sleeps and polls (1, 2, 5,
    10 ... 100 ms); with several processes (server workers) writing all the time, those
    sleeps become the tail latency. A writer first takes an exclusive ``flock`` on
    ``<database>-writer.lock``, polling every 0.5 to 5 ms for at most the busy timeout.
    Taken before ``BEGIN IMMEDIATE``, given back when the connection returns to the pool
    (after its COMMIT or ROLLBACK). Within a process the one pooled connection already
    serialises writers. The busy handler stays as a safety net for other programs.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def take(self) -> None:
        """Waits for the turn (no-op when this process holds it); raises
        sqlite3.OperationalError ("database is locked", a 503 for a request) when another
        writer keeps it longer than SQLite's own busy timeout."""
        if self._fd is not None:
            return
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        pause = 0.00005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise sqlite3.OperationalError("database is locked") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.0005)
        self._fd = fd

    def give_back(self) -> None:
        """Lets the next writer go (no-op when not held); closing the file releases it."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def take_writer_turn(connection_info: dict[Any, Any]) -> None:
    """Takes the writer turn of a pooled SQLite connection (``.info`` of the connection or
    of its pool record) before a write transaction; a no-op for other databases."""
    turn = connection_info.get(WRITER_TURN)
    if turn is not None:
        turn.take()


def _install_sqlite_pragmas(engine: Engine, turn: WriterTurn | None) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        if turn is not None:
            record.info[WRITER_TURN] = turn
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        if connection.get_execution_options().get(_READ_SNAPSHOT):
            connection.exec_driver_sql("BEGIN DEFERRED")  # a reader: writers go on meanwhile
        else:
            take_writer_turn(connection.info)
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    if turn is not None:

        @event.listens_for(engine.pool, "checkin")
        def _on_checkin(_dbapi_connection: Any, _record: Any) -> None:
            turn.give_back()


_READ_SNAPSHOT = "coffer_read_snapshot"


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[sa.Connection]:
    """A connection whose reads all see one consistent state of the database while writers
    go on: a deferred transaction in SQLite's WAL mode, REPEATABLE READ on PostgreSQL."""
    options: dict[str, Any] = {_READ_SNAPSHOT: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    with engine.connect() as conn:
        snapshot = conn.execution_options(**options)
        with snapshot.begin():
            yield snapshot


def create_engine(database_url: str) -> Engine:
    """Returns an engine for ``database_url``; raises ConfigError naming COFFER_DATABASE_URL
    when the URL is malformed or a SQLite file's directory does not exist."""
    try:
        url = sa.make_url(database_url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"COFFER_DATABASE_URL is not a valid database URL: {exc}") from None
    if url.get_backend_name() == "sqlite":
        path = _sqlite_path(url)
        if path is not None and not path.parent.is_dir():
            raise ConfigError(
                f"COFFER_DATABASE_URL points to {path}, whose directory does not exist"
            )
        # One connection: SQLite has one writer, and nearly every request writes (its audit
        # entry). Threads queue on the pool instead of spinning in SQLite's busy handler.
        engine = sa.create_engine(url, pool_size=1, max_overflow=0, pool_timeout=30)
        _install_sqlite_pragmas(engine, WriterTurn(Path(f"{path}-writer.lock")) if path else None)
        return engine
    if url.get_backend_name() != "postgresql":
        raise ConfigError("COFFER_DATABASE_URL must be a sqlite or postgresql URL")
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    # No pre-ping: it costs a round trip per checkout; stale connections are recycled instead.
    # A server that accepts but never answers (hung, or packets dropped) must not hold a
    # request for ever: connecting gives up after PG_CONNECT_TIMEOUT_S (the request then
    # answers 503), unless the URL sets its own connect_timeout.
    connect_args = (
        {} if "connect_timeout" in url.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    )
    return sa.create_engine(
        url, pool_size=16, max_overflow=16, pool_recycle=1800, connect_args=connect_args
    )


def dialect_insert(conn: sa.Connection) -> Any:
    """The connection's dialect's ``insert`` (it offers ``on_conflict_do_nothing`` on both
    SQLite and PostgreSQL)."""
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def libpq_url(engine: Engine) -> str:
    """The engine's PostgreSQL URL as libpq takes it (for a connection of one's own, such as
    a LISTEN session); it holds the password, so it must never be logged."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def check_connection(engine: Engine) -> None:
    """Opens one connection; raises ConfigError naming COFFER_DATABASE_URL when it fails."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise ConfigError(
            f"cannot open the database named by COFFER_DATABASE_URL "
            f"({engine.url.render_as_string(hide_password=True)}): {reason}"
        ) from None


def scrub_deleted(engine: Engine) -> None:
    """Makes deleted rows unrecoverable from the SQLite files: ``secure_delete`` zeroes freed
    pages, but the write-ahead log still holds their earlier images until a checkpoint, so
    this checkpoints and truncates the WAL. Call after destroying keys or secrets; a no-op on
    PostgreSQL (whose VACUUM reclaims dead tuples)."""
    if engine.dialect.name != "sqlite":
        return
    connection = engine.raw_connection()  # outside any transaction, as a checkpoint needs
    try:
        cursor = connection.cursor()
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.close()
    finally:
        connection.close()


# What a request meets when the database is down, restarting or out of connections (through
# SQLAlchemy, or from the driver itself on the raw hot path).
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
    sqlite3.OperationalError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)

# PostgreSQL's "deadlock detected" and "could not serialize access": the transaction was
# rolled back whole and may simply be run again.
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


def is_transient_conflict(error: BaseException) -> bool:
    """True when ``error`` is a database conflict that rolled the transaction back and that
    running it again may not meet (a deadlock or serialization failure)."""
    if not isinstance(error, sa.exc.OperationalError):
        return False
    return getattr(error.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


def serialize_counted_reads(conn: sa.Connection, org_id: str) -> None:
    """Makes the caller's transaction the organization's only one counting reads of several
    limited secrets at a time (a PostgreSQL advisory lock held until it ends), so two such
    transactions cannot lock the same rows in opposite orders and deadlock. Transactions that
    count a single secret need no such lock. A no-op on SQLite, where ``BEGIN IMMEDIATE``
    already runs one writer at a time."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
        {"name": f"coffer/counted-reads/{org_id}"},
    )
