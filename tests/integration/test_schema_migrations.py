"""The Alembic migrations build exactly the schema of ``storage/tables.py``, on both backends,
and step up from an older vault without losing its rows; a schema older or newer than the code
is refused naming both revisions, and concurrent upgrades take turns."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from coffer.bootstrap import build_services, initialise_vault
from coffer.config import Settings
from coffer.domain.errors import ConfigError, SchemaMismatch
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


# --- refusing a mismatched schema, and `coffer migrate`'s upgrade -----------------------------

FUTURE_REVISION = "9999_from_a_newer_coffer"


def _stamp(engine: Engine, revision: str) -> None:
    """Records ``revision`` in alembic_version without running anything (as a newer coffer
    would leave it)."""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :rev"), {"rev": revision})


def _older_revision() -> str:
    """The revision just before this code's head."""
    older = schema.previous_revision(schema.head_revision())
    assert older is not None
    return older


def test_check_schema_accepts_the_head_revision(engine: Engine) -> None:
    """A database at this code's head passes the check, which returns the revision."""
    schema.upgrade_to_head(engine)
    assert schema.check_schema(engine) == schema.head_revision()


def test_an_empty_database_is_not_a_vault(engine: Engine) -> None:
    """A database with no coffer schema is refused as uninitialised, not as a mismatch."""
    with pytest.raises(ConfigError) as raised:
        schema.check_schema(engine)
    assert type(raised.value) is ConfigError
    assert raised.value.message == (
        "the database is not an initialised coffer vault; run `coffer init`"
    )


def test_an_older_schema_is_refused_then_migrated(engine: Engine) -> None:
    """A schema one revision behind is refused naming both revisions and `coffer migrate`;
    the upgrade reports both revisions and the check then passes."""
    older, head = _older_revision(), schema.head_revision()
    _migrate(engine, "upgrade", older)
    with pytest.raises(SchemaMismatch) as raised:
        schema.check_schema(engine)
    assert raised.value.message == (
        f"the database schema is at revision {older} but this coffer needs {head}: "
        "run `coffer migrate`"
    )
    assert (raised.value.database_revision, raised.value.code_revision) == (older, head)
    assert raised.value.code == "schema_mismatch"
    assert schema.current_revision(engine) == older  # checking changed nothing
    assert schema.upgrade_to_head(engine) == schema.SchemaMigration(before=older, after=head)
    assert schema.check_schema(engine) == head
    assert schema.upgrade_to_head(engine) == schema.SchemaMigration(before=head, after=head)
    assert _differences(engine) == []


def test_an_unknown_newer_revision_is_refused_and_never_migrated(engine: Engine) -> None:
    """A revision this code does not know (a newer coffer's) is refused by the check and by
    the upgrade alike, naming both revisions and telling to upgrade coffer; nothing changes."""
    schema.upgrade_to_head(engine)
    _stamp(engine, FUTURE_REVISION)
    expected = (
        f"the database schema is at revision {FUTURE_REVISION}, newer than this coffer "
        f"(which knows up to {schema.head_revision()}): upgrade coffer"
    )
    for attempt in (schema.check_schema, schema.upgrade_to_head):
        with pytest.raises(SchemaMismatch) as raised:
            attempt(engine)
        assert raised.value.message == expected
        assert raised.value.database_revision == FUTURE_REVISION
    assert schema.current_revision(engine) == FUTURE_REVISION


def test_opening_a_vault_checks_instead_of_migrating(settings: Settings) -> None:
    """A node opening a vault whose schema is one revision behind refuses it, naming both
    revisions, and leaves the schema where it was; after the upgrade it opens."""
    initialise_vault(settings)
    engine = create_engine(settings.database_url)
    try:
        older, head = _older_revision(), schema.head_revision()
        _migrate(engine, "downgrade", older)
        with pytest.raises(SchemaMismatch) as raised:
            build_services(settings)
        assert raised.value.message == (
            f"the database schema is at revision {older} but this coffer needs {head}: "
            "run `coffer migrate`"
        )
        assert schema.current_revision(engine) == older
        schema.upgrade_to_head(engine)
    finally:
        engine.dispose()
    build_services(settings).close()


CONCURRENT_MIGRATIONS = 3
_start: Any = None  # the barrier of a migrating process (set by its initializer)


def _wait_at(barrier: Any) -> None:
    global _start
    _start = barrier


def _migrate_as_a_node(database_url: str) -> schema.SchemaMigration:
    """Runs in a process of its own, as a node would: waits for the others, then upgrades."""
    _start.wait(timeout=60)
    engine = create_engine(database_url)
    try:
        return schema.upgrade_to_head(engine)
    finally:
        engine.dispose()


def test_concurrent_upgrades_take_turns(engine: Engine, database_url: str) -> None:
    """Several processes migrating the same old schema at once all succeed: exactly one
    applies the migrations, the others wait for it and find the schema at head."""
    _migrate(engine, "upgrade", "0001")
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(CONCURRENT_MIGRATIONS)
    with ProcessPoolExecutor(
        CONCURRENT_MIGRATIONS, mp_context=spawn, initializer=_wait_at, initargs=(start,)
    ) as pool:
        results = list(pool.map(_migrate_as_a_node, [database_url] * CONCURRENT_MIGRATIONS))
    head = schema.head_revision()
    assert sorted(results, key=lambda done: done.before != "0001") == [
        schema.SchemaMigration(before="0001", after=head),
        *[schema.SchemaMigration(before=head, after=head)] * (CONCURRENT_MIGRATIONS - 1),
    ]
    assert schema.current_revision(engine) == head
    assert _differences(engine) == []
