"""Helpers shared by the HTTP API integration tests: paths, writes, snapshots of stored state."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coffer.storage.tables import audit_log, metadata

PROJECTS = "/api/v1/projects"


def env_path(project: str, environment: str) -> str:
    """The URL of an environment."""
    return f"{PROJECTS}/{project}/environments/{environment}"


def secret_path(project: str, environment: str, key: str) -> str:
    """The URL of a secret (``key`` is put in the path as given, already URL-encoded)."""
    return f"{env_path(project, environment)}/secrets/{key}"


def put_secret(
    api: TestClient,
    project: str,
    environment: str,
    key: str,
    value: str,
    comment: str | None = None,
) -> dict[str, Any]:
    """Writes a secret over the API, asserts 200 and returns the write report."""
    body: dict[str, Any] = {"value": value}
    if comment is not None:
        body["comment"] = comment
    response = api.put(secret_path(project, environment, key), json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def get_value(api: TestClient, project: str, environment: str, key: str, **params: Any) -> str:
    """Reads a secret's value over the API, asserting 200."""
    response = api.get(secret_path(project, environment, key), params=params)
    assert response.status_code == 200, response.text
    value: str = response.json()["value"]
    return value


def listed_versions(api: TestClient, project: str, environment: str) -> dict[str, int]:
    """The environment's keys and current versions, as the list endpoint shows them."""
    response = api.get(f"{env_path(project, environment)}/secrets")
    assert response.status_code == 200, response.text
    return {item["key"]: item["version"] for item in response.json()["secrets"]}


# Written by the server's background jobs on their own schedule, not by requests.
_BACKGROUND_TABLES = frozenset(
    {"audit_checkpoints", "audit_cursors", "audit_seen_addresses", "job_leases"}
)


def row_counts(engine: Engine) -> dict[str, int]:
    """How many rows every table that requests write holds (a snapshot to compare before
    and after)."""
    with engine.connect() as conn:
        return {
            table.name: int(
                conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            )
            for table in metadata.sorted_tables
            if table.name not in _BACKGROUND_TABLES
        }


def all_rows_text(engine: Engine) -> str:
    """Every row of every table rendered as text (bytes decoded leniently), for leak checks."""
    parts: list[str] = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for cell in row:
                    if isinstance(cell, bytes | bytearray | memoryview):
                        parts.append(bytes(cell).decode("utf-8", errors="replace"))
                        parts.append(bytes(cell).hex())
                    else:
                        parts.append(str(cell))
    return "\n".join(parts)


def audit_entries(engine: Engine, after_seq: int = 0) -> list[dict[str, Any]]:
    """The audit log's entries after sequence number ``after_seq``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log).where(audit_log.c.seq > after_seq).order_by(audit_log.c.seq)
        )
        return [dict(row._mapping) for row in rows]


def last_audit_seq(engine: Engine) -> int:
    """The sequence number of the newest audit entry (0 when the log is empty)."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar_one() or 0)
