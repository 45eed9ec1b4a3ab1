"""Every table of the vault as plain JSON-ready rows, and back: the contents of a backup.

Rows are read in primary-key order with their stored bytes as they are (binary columns as
base64, canonical JSON columns as their stored text), so a restored audit log hashes exactly
as the original did.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from coffer.storage.json_text import CanonicalJSON, json_text
from coffer.storage.tables import metadata

ROWS_PER_READ = 5000


def backup_tables() -> list[sa.Table]:
    """The tables a backup holds, parents before children (the order a restore inserts)."""
    return list(metadata.sorted_tables)


def column_names(table: sa.Table) -> list[str]:
    """The table's columns in schema order (the order of each row's values)."""
    return [column.name for column in table.columns]


def _selected(column: sa.Column[Any]) -> sa.ColumnElement[Any]:
    if isinstance(column.type, CanonicalJSON):
        return json_text(column)
    return column


def read_rows(conn: sa.Connection, table: sa.Table) -> Iterator[list[Any]]:
    """Yields every row of ``table`` as a list of JSON-ready values, in primary-key order."""
    binary = [isinstance(c.type, sa.LargeBinary) for c in table.columns]
    query = sa.select(*(_selected(c) for c in table.columns)).order_by(*table.primary_key.columns)
    result = conn.execution_options(yield_per=ROWS_PER_READ).execute(query)
    for row in result:
        yield [
            base64.b64encode(value).decode("ascii") if is_binary and value is not None else value
            for value, is_binary in zip(row, binary, strict=True)
        ]


def insert_rows(conn: sa.Connection, table: sa.Table, rows: list[list[Any]]) -> None:
    """Inserts rows ``read_rows`` produced. Raises ValueError when a row does not fit the
    table (wrong number of values, bad base64)."""
    if not rows:
        return
    names = column_names(table)
    binary = {c.name for c in table.columns if isinstance(c.type, sa.LargeBinary)}
    records = []
    for values in rows:
        if len(values) != len(names):
            raise ValueError(f"a row of {table.name} has {len(values)} values, not {len(names)}")
        record = dict(zip(names, values, strict=True))
        for name in binary:
            if record[name] is not None:
                record[name] = base64.b64decode(record[name], validate=True)
        records.append(record)
    conn.execute(sa.insert(table), records)


def clear_all(conn: sa.Connection) -> None:
    """Deletes every row of every table, children first (a restore target's seed rows)."""
    for table in reversed(backup_tables()):
        conn.execute(sa.delete(table))


def count_rows(conn: sa.Connection) -> dict[str, int]:
    """Rows per table."""
    return {
        table.name: int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
        for table in backup_tables()
    }


def reset_sequences(conn: sa.Connection) -> None:
    """After rows were inserted with their own ids: moves PostgreSQL's sequences past them
    (SQLite needs nothing)."""
    if conn.dialect.name != "postgresql":
        return
    for table in backup_tables():
        for column in table.primary_key.columns:
            if column.autoincrement is True:
                highest = sa.select(sa.func.max(column)).scalar_subquery()
                conn.execute(
                    sa.select(
                        sa.func.setval(
                            sa.func.pg_get_serial_sequence(table.name, column.name),
                            sa.func.coalesce(highest, 0) + 1,
                            False,
                        )
                    )
                )
