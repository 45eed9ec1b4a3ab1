"""The shared parts of the relational schema: the ``MetaData`` every table registers on, with
its naming convention, and column helpers used by more than one table module."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def cascading_fk(column: str) -> sa.ForeignKey:
    """A foreign key whose rows go when the parent goes."""
    return sa.ForeignKey(column, ondelete="CASCADE")


def read_limit_columns() -> list[sa.Column[object]]:
    """The time to live, read limit and counters of a limited secret (see
    ``domain.read_limits``); all empty for an ordinary secret."""
    return [
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("max_reads", sa.Integer, nullable=True),
        sa.Column("read_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("burn", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("sealed_at", sa.Float, nullable=True),
    ]
