"""Statements compiled once for the database driver, for the hottest path.

SQLAlchemy builds and compiles the SQL (so there is one schema and one dialect story); the
hot path then runs it on the driver's cursor, skipping per-call execution machinery that
costs more than the query itself on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.storage.database import take_writer_turn


class CompiledStatement:
    """One statement compiled for a dialect, with its parameters in driver order."""

    def __init__(self, statement: sa.ClauseElement, engine: Engine) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        order = getattr(compiled, "positiontup", None)
        self._order: list[str] | None = list(order) if order is not None else None

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...] | Mapping[str, Any]:
        """Returns ``values`` shaped for the driver (a tuple for positional styles)."""
        if self._order is None:
            return values
        return tuple(values[name] for name in self._order)


class RawTransaction:
    """A driver cursor inside one transaction on a pooled connection."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def fetch_one(
        self, statement: CompiledStatement, values: Mapping[str, Any]
    ) -> tuple[Any, ...] | None:
        """Runs a query and returns its first row, or None."""
        self._cursor.execute(statement.sql, statement.params(values))
        row: tuple[Any, ...] | None = self._cursor.fetchone()
        return row

    def fetch_all(
        self, statement: CompiledStatement, values: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Runs a query and returns all its rows."""
        self._cursor.execute(statement.sql, statement.params(values))
        rows: list[tuple[Any, ...]] = self._cursor.fetchall()
        return rows

    def execute(self, statement: CompiledStatement, values: Mapping[str, Any]) -> None:
        """Runs a statement that returns no rows."""
        self._cursor.execute(statement.sql, statement.params(values))

    def execute_many(self, statement: CompiledStatement, rows: Sequence[Mapping[str, Any]]) -> None:
        """Runs a statement that returns no rows once per row, in one driver call."""
        self._cursor.executemany(statement.sql, [statement.params(row) for row in rows])


@contextmanager
def raw_transaction(engine: Engine) -> Iterator[RawTransaction]:
    """Yields a RawTransaction that commits when the block ends normally and rolls back
    otherwise (an exception, or a failed COMMIT).
    SQLite connections run in autocommit mode (see ``database``), so the transaction is
    opened with ``BEGIN IMMEDIATE`` explicitly; psycopg opens one implicitly."""
    connection = engine.raw_connection()
    sqlite = engine.dialect.name == "sqlite"
    committed = False
    try:
        cursor = connection.cursor()
        if sqlite:
            take_writer_turn(connection.info)
            cursor.execute("BEGIN IMMEDIATE")
        yield RawTransaction(cursor)
        if sqlite:
            cursor.execute("COMMIT")
        else:
            connection.commit()
        committed = True
        cursor.close()
    finally:
        if not committed:
            # Both drivers end an open transaction here, the explicit BEGIN included.
            connection.rollback()
        connection.close()


@contextmanager
def raw_reads(engine: Engine) -> Iterator[RawTransaction]:
    """Yields a RawTransaction for queries only: no write lock is taken on SQLite (each
    query reads the latest committed state), and PostgreSQL's implicit transaction is ended
    (rolled back) afterwards."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        yield RawTransaction(cursor)
        cursor.close()
    finally:
        if engine.dialect.name != "sqlite":
            connection.rollback()
        connection.close()
