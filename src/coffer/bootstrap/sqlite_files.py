"""Where a SQLite vault's file is, and creating it private."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import make_url


def sqlite_file(database_url: str) -> Path | None:
    """The database file a SQLite URL names (None for an in-memory database)."""
    database = make_url(database_url).database
    return Path(database) if database and database != ":memory:" else None


def create_private_sqlite_file(database_url: str) -> None:
    """Creates the SQLite file with mode 0600 before SQLite does (its -wal and -shm files
    inherit the mode), so the database is never readable by other users."""
    path = sqlite_file(database_url)
    if path is not None and path.parent.is_dir() and not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
