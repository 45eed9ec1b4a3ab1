"""Applies Alembic migrations; the only way coffer creates or changes tables.

A node never migrates by itself: it checks that the database is at this code's head revision
(``check_schema``) and refuses to serve one that is older or newer. ``coffer migrate`` (and
``coffer init`` for a new vault) run ``upgrade_to_head``, which on PostgreSQL holds an advisory
lock so that several nodes migrating at once take turns instead of racing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from coffer.domain.errors import ConfigError, SchemaMismatch

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The first key of the two-key advisory lock that serialises migrations; the second is a hash
# of the schema being migrated, so vaults in different schemas of one database do not wait on
# each other.
_MIGRATION_LOCK_CLASS = 0x636F6666  # "coff"


@dataclass(frozen=True)
class SchemaMigration:
    """What ``upgrade_to_head`` did: the revision before (None for an empty database) and
    after (this code's head)."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        """True when a migration ran."""
        return self.before != self.after


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """Returns the newest migration revision this code knows."""
    head = _scripts().get_current_head()
    assert head is not None
    return head


def previous_revision(revision: str) -> str | None:
    """Returns the revision ``revision`` upgrades from (None for the first one); raises
    KeyError for a revision this code does not know."""
    script = {script.revision: script for script in _scripts().walk_revisions()}[revision]
    down = script.down_revision
    assert down is None or isinstance(down, str)  # the history is linear
    return down


def _known_revisions() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}


def _revision_on(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    """Returns the revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return _revision_on(conn)


def _refuse_unknown(revision: str | None, head: str) -> None:
    """Raises SchemaMismatch when ``revision`` is one this code does not know (a newer
    coffer's, or a foreign one)."""
    if revision is None or revision in _known_revisions():
        return
    raise SchemaMismatch(
        f"the database schema is at revision {revision}, newer than this coffer (which knows "
        f"up to {head}): upgrade coffer",
        database_revision=revision,
        code_revision=head,
    )


def check_schema(engine: Engine) -> str:
    """Returns the database's revision when it is this code's head. Raises SchemaMismatch
    naming both revisions when it is older (run ``coffer migrate``) or newer or unknown
    (upgrade coffer), and ConfigError when the database holds no coffer schema at all."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return head
    if current is None:
        raise ConfigError("the database is not an initialised coffer vault; run `coffer init`")
    _refuse_unknown(current, head)
    raise SchemaMismatch(
        f"the database schema is at revision {current} but this coffer needs {head}: "
        "run `coffer migrate`",
        database_revision=current,
        code_revision=head,
    )


@contextmanager
def _migration_lock(conn: sa.Connection) -> Iterator[None]:
    """Holds a session-level advisory lock on PostgreSQL while the caller migrates, so a
    second ``coffer migrate`` waits and then finds the schema at head. SQLite needs none: a
    migration's ``BEGIN IMMEDIATE`` already excludes every other writer."""
    if conn.dialect.name != "postgresql":
        yield
        return
    key = sa.text("hashtext(current_schema())")
    conn.execute(sa.select(sa.func.pg_advisory_lock(_MIGRATION_LOCK_CLASS, key)))
    conn.commit()
    try:
        yield
    finally:
        if conn.in_transaction():
            conn.rollback()
        conn.execute(sa.select(sa.func.pg_advisory_unlock(_MIGRATION_LOCK_CLASS, key)))
        conn.commit()


def upgrade_to_head(engine: Engine) -> SchemaMigration:
    """Applies every pending migration in one transaction and returns the revisions before
    and after. Concurrent calls on PostgreSQL take turns (the later ones find nothing to do).
    Raises SchemaMismatch, changing nothing, when the database is at a revision this code
    does not know (made by a newer coffer)."""
    head = head_revision()
    config = _config()
    with engine.connect() as conn, _migration_lock(conn), conn.begin():
        before = _revision_on(conn)
        _refuse_unknown(before, head)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        return SchemaMigration(before=before, after=_revision_on(conn) or head)
