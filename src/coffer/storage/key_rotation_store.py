"""The rows a project data-key rotation reads and rewrites: the project's key version, its
data keys and its secret versions, walked in primary-key order so each step starts where the
last one stopped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from coffer.storage.tables import data_keys, environments, projects, secret_versions, secrets

_KEY_VERSION = sa.select(projects.c.key_version).where(projects.c.id == sa.bindparam("id"))
_KEY_VERSION_SHARED = _KEY_VERSION.with_for_update(read=True)


def current_key_version(conn: sa.Connection, project_id: str, *, lock: bool) -> int:
    """The project's current data-key version. With ``lock`` the project row stays
    share-locked (PostgreSQL) until the transaction ends, so a rotation starting meanwhile
    waits for this write, and every version under the old key exists before it starts."""
    version: int = conn.execute(
        _KEY_VERSION_SHARED if lock else _KEY_VERSION, {"id": project_id}
    ).scalar_one()
    return version


def advance_key_version(conn: sa.Connection, project_id: str, seen: int) -> bool:
    """Moves the project from data-key version ``seen`` to ``seen + 1``; False when another
    rotation moved it first."""
    result = conn.execute(
        sa.update(projects)
        .where(projects.c.id == project_id, projects.c.key_version == seen)
        .values(key_version=seen + 1)
    )
    return result.rowcount == 1


def key_versions(conn: sa.Connection, project_id: str) -> list[int]:
    """The data-key versions the project holds, oldest first."""
    rows = conn.execute(
        sa.select(data_keys.c.version)
        .where(data_keys.c.project_id == project_id)
        .order_by(data_keys.c.version)
    )
    return [int(row[0]) for row in rows]


def destroy_keys_before(conn: sa.Connection, project_id: str, current: int) -> None:
    """Deletes every data key of the project older than ``current`` (crypto-shredding)."""
    conn.execute(
        sa.delete(data_keys).where(
            data_keys.c.project_id == project_id, data_keys.c.version < current
        )
    )


def _project_versions() -> sa.Select[Any]:
    return (
        sa.select(sa.func.count())
        .select_from(secret_versions)
        .join(secrets, secrets.c.id == secret_versions.c.secret_id)
        .join(environments, environments.c.id == secrets.c.environment_id)
        .where(environments.c.project_id == sa.bindparam("project_id"))
    )


class no_index(FunctionElement[Any]):  # noqa: N801 - reads as a SQL function
    """``no_index(column)``: the column's value, which SQLite's planner may not look up
    through an index (``+column``); plain ``column`` on other databases."""

    inherit_cache = True
    type = sa.String()


@compiles(no_index)
def _no_index_default(element: no_index, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(no_index, "sqlite")
def _no_index_sqlite(element: no_index, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"


_COUNT_ALL = _project_versions()
_COUNT_OLD = _project_versions().where(secret_versions.c.key_version < sa.bindparam("current"))


def count_versions(conn: sa.Connection, project_id: str, *, older_than: int | None) -> int:
    """How many secret versions the project has (under a key older than ``older_than`` when
    given)."""
    if older_than is None:
        return int(conn.execute(_COUNT_ALL, {"project_id": project_id}).scalar_one())
    return int(
        conn.execute(_COUNT_OLD, {"project_id": project_id, "current": older_than}).scalar_one()
    )


@dataclass(frozen=True)
class StoredSecretVersion:
    """One secret version as a rotation step sees it, with what its AAD binds."""

    secret_id: str
    version: int
    key_version: int
    environment_id: str
    key: str
    ciphertext: bytes = field(repr=False)


_PAGE_COLUMNS = (
    secret_versions.c.secret_id,
    secret_versions.c.version,
    secret_versions.c.key_version,
    secrets.c.environment_id,
    secrets.c.key,
    secret_versions.c.ciphertext,
)


def _page(after: bool) -> sa.Select[Any]:
    # A page walks secret_versions in primary-key order over the cursor's secret and the
    # next ``limit`` secrets of the project (each has a version, so a full page needs no
    # more), found by walking secrets from the cursor: a step reads about a page whatever
    # the project's size. Joining environments -> secrets -> versions instead makes SQLite
    # visit and sort every version of the project on every page.
    next_secrets = (
        sa.select(secrets.c.id)
        .join(environments, environments.c.id == no_index(secrets.c.environment_id))
        .where(environments.c.project_id == sa.bindparam("project_id"))
        .order_by(secrets.c.id)
        .limit(sa.bindparam("secrets"))
    )
    versions = (
        sa.select(*_PAGE_COLUMNS)
        .select_from(secret_versions)
        .join(secrets, secrets.c.id == secret_versions.c.secret_id)
        .order_by(secret_versions.c.secret_id, secret_versions.c.version)
        .limit(sa.bindparam("limit"))
    )
    if not after:
        return versions.where(secret_versions.c.secret_id.in_(next_secrets))
    next_secrets = next_secrets.where(secrets.c.id >= sa.bindparam("after_id"))
    return versions.where(
        secret_versions.c.secret_id.in_(next_secrets),
        sa.tuple_(secret_versions.c.secret_id, secret_versions.c.version)
        > sa.tuple_(sa.bindparam("after_id"), sa.bindparam("after_version")),
    )


_FIRST_PAGE = _page(after=False)
_NEXT_PAGE = _page(after=True)


def versions_page(
    conn: sa.Connection, project_id: str, after: tuple[str, int] | None, limit: int
) -> list[StoredSecretVersion]:
    """Up to ``limit`` of the project's secret versions after ``after`` (secret id,
    version) in primary-key order."""
    params: dict[str, Any] = {"project_id": project_id, "limit": limit, "secrets": limit + 1}
    if after is not None:
        params.update(after_id=after[0], after_version=after[1])
    rows = conn.execute(_NEXT_PAGE if after is not None else _FIRST_PAGE, params)
    return [StoredSecretVersion(*row) for row in rows]


_REPLACE = (
    sa.update(secret_versions)
    .where(
        secret_versions.c.secret_id == sa.bindparam("b_secret_id"),
        secret_versions.c.version == sa.bindparam("b_version"),
        secret_versions.c.key_version == sa.bindparam("b_old_key_version"),
    )
    .values(ciphertext=sa.bindparam("b_ciphertext"), key_version=sa.bindparam("b_key_version"))
)


def replace_ciphertexts(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Stores re-encrypted versions: each dict holds ``b_secret_id``, ``b_version``,
    ``b_old_key_version``, ``b_ciphertext`` and ``b_key_version``; a version another step
    rewrote meanwhile is left as it is."""
    if rows:
        conn.execute(_REPLACE, rows)


def rotating_projects(conn: sa.Connection) -> list[tuple[str, int]]:
    """(project id, current key version) of every project that still holds a data key older
    than its current one: a rotation is under way there."""
    rows = conn.execute(
        sa.select(projects.c.id, projects.c.key_version)
        .where(
            sa.exists().where(
                data_keys.c.project_id == projects.c.id,
                data_keys.c.version < projects.c.key_version,
            )
        )
        .order_by(projects.c.id)
    )
    return [(str(row[0]), int(row[1])) for row in rows]
