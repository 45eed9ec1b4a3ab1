"""Vault-wide facts kept in ``vault_meta``: the root key check value, creation time, ..."""

from __future__ import annotations

import sqlalchemy as sa

from coffer.storage.tables import vault_meta


def get_meta(conn: sa.Connection, name: str) -> str | None:
    """Returns the stored value for ``name``, or None."""
    return conn.execute(
        sa.select(vault_meta.c.value).where(vault_meta.c.name == name)
    ).scalar_one_or_none()


def set_meta(conn: sa.Connection, name: str, value: str) -> None:
    """Stores ``value`` under ``name``, replacing any previous value."""
    conn.execute(sa.delete(vault_meta).where(vault_meta.c.name == name))
    conn.execute(sa.insert(vault_meta).values(name=name, value=value))
