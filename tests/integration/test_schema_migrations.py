"""The Alembic migrations build exactly the schema of ``storage/tables.py``, on both backends,
and step up from an older vault without losing its rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from coffer.storage import schema
from coffer.storage.database import create_engine
from coffer.storage.tables import metadata


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on a fresh, empty database of the backend under test."""
    created = create_engine(database_url)
    try:
        yield created
    finally:
        created.dispose()


def _migrate(engine: Engine, direction: str, revision: str) -> None:
    """Runs ``alembic upgrade|downgrade revision`` on the engine, as coffer configures it."""
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, direction)(config, revision)


def _differences(engine: Engine) -> list[Any]:
    """What autogenerate would change to make the database match ``tables.py``."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, metadata))


def _tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_migrations_build_exactly_the_declared_schema(engine: Engine) -> None:
    """After every migration, autogenerate finds no difference from ``tables.py``: no
    missing or extra table, column, index, constraint, type, nullability or default."""
    schema.upgrade_to_head(engine)
    assert _differences(engine) == []
    assert _tables(engine) == {t.name for t in metadata.sorted_tables} | {"alembic_version"}
    assert schema.current_revision(engine) == schema.head_revision()


def test_upgrade_at_head_changes_nothing(engine: Engine) -> None:
    """Running the migrations again on an up-to-date database is a no-op."""
    schema.upgrade_to_head(engine)
    schema.upgrade_to_head(engine)
    assert _differences(engine) == []


def test_downgrade_to_base_and_back(engine: Engine) -> None:
    """Every migration can be undone, leaving no coffer table behind, and redone to the
    declared schema."""
    schema.upgrade_to_head(engine)
    _migrate(engine, "downgrade", "base")
    assert _tables(engine) <= {"alembic_version"}
    assert schema.current_revision(engine) is None
    schema.upgrade_to_head(engine)
    assert _differences(engine) == []


ORG_ID, TOKEN_ID, PROJECT_ID, ENV_ID = (f"01{name:0<24}" for name in ("ORG", "TOK", "PRJ", "ENV"))
OLD_ROWS = [
    "INSERT INTO organizations (id, name, created_at) VALUES (:org, 'old', :now)",
    (
        "INSERT INTO api_tokens (id, org_id, token_hash, kind, name, identity_id, identity_kind,"
        " created_at) VALUES (:tok, :org, :hash, 'boot', 'bootstrap owner', :tok, 'bootstrap',"
        " :now)"
    ),
    (
        "INSERT INTO projects (id, org_id, name, key_version, created_at)"
        " VALUES (:prj, :org, 'web', 1, :now)"
    ),
    (
        "INSERT INTO environments (id, project_id, name, created_at)"
        " VALUES (:env, :prj, 'dev', :now)"
    ),
]


def test_identity_migration_keeps_an_older_vaults_rows(
    engine: Engine, request: pytest.FixtureRequest
) -> None:
    """A vault made by revision 0001 keeps its organization, token, project and environment
    through the identity migration; the new columns get their defaults."""
    _migrate(engine, "upgrade", "0001")
    values = {"org": ORG_ID, "tok": TOKEN_ID, "prj": PROJECT_ID, "env": ENV_ID, "hash": "a" * 64}
    with engine.begin() as conn:
        for statement in OLD_ROWS:
            conn.execute(sa.text(statement), {**values, "now": time.time()})
    schema.upgrade_to_head(engine)
    with engine.connect() as conn:
        orgs = conn.execute(sa.text("SELECT name, require_mfa FROM organizations")).all()
        tokens = conn.execute(
            sa.text("SELECT kind, last_used_at, idle_timeout, revoked_at FROM api_tokens")
        ).all()
        projects = conn.execute(sa.text("SELECT name FROM projects")).scalars().all()
        envs = conn.execute(sa.text("SELECT name FROM environments")).scalars().all()
    assert [(name, bool(flag)) for name, flag in orgs] == [("old", False)]
    assert [tuple(t) for t in tokens] == [("boot", None, None, None)]
    assert (projects, envs) == (["web"], ["dev"])
    assert _differences(engine) == []
