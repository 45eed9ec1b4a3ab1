"""``coffer migrate``: brings the vault's database schema to this coffer's revision (local)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from coffer.cli.commands.local import DirOpt
from coffer.cli.common import JsonOpt, handle_errors
from coffer.cli.output import emit

if TYPE_CHECKING:
    from coffer.config import Settings
    from coffer.storage.schema import SchemaMigration

CheckOpt = Annotated[
    bool,
    typer.Option(
        "--check",
        help="Change nothing; exit 0 when the schema is at this coffer's revision, else 7.",
    ),
]


def migrate_vault(settings: Settings, *, check: bool = False) -> SchemaMigration:
    """Applies the pending migrations to the settings' vault (with ``check``, only checks
    it is at this code's head) and returns the revisions before and after. Raises
    ConfigError when there is no vault or the database cannot be opened, SchemaMismatch
    (naming both revisions) for a schema newer than the code or, with ``check``, older."""
    from coffer.bootstrap import vault_exists
    from coffer.domain.errors import ConfigError
    from coffer.storage import schema
    from coffer.storage.database import create_engine

    if not vault_exists(settings):
        where = settings.directory if settings.is_sqlite else "COFFER_DATABASE_URL"
        raise ConfigError(f"no coffer vault in {where}; run `coffer init` first")
    engine = create_engine(settings.database_url)
    try:
        if check:
            revision = schema.check_schema(engine)
            return schema.SchemaMigration(before=revision, after=revision)
        return schema.upgrade_to_head(engine)
    finally:
        engine.dispose()


def describe(migration: SchemaMigration) -> str:
    """One line saying what a migration did."""
    if migration.changed:
        return f"migrated the schema from {migration.before} to {migration.after}"
    return f"the schema is already at {migration.after}"


@handle_errors
def migrate(directory: DirOpt = None, check: CheckOpt = False, as_json: JsonOpt = False) -> None:
    """Apply pending database migrations to the vault (COFFER_DATABASE_URL or --dir).

    Run it once after installing a new coffer and before starting its nodes: a node refuses
    a schema older or newer than its own. Concurrent runs on PostgreSQL take turns."""
    from coffer.config import Settings

    migration = migrate_vault(Settings.from_env(directory=directory), check=check)
    if check:
        text = f"the schema is at {migration.after}, this coffer's revision"
    else:
        text = describe(migration)
    emit(
        {"before": migration.before, "after": migration.after, "migrated": migration.changed},
        as_json,
        text,
    )
