"""Helpers shared by the rotation tests: the rotation API's paths, and setting a secret's
schedule facts (its period, its policy, its current version's age, an exposure) straight in
the database, so that the tests do not wait for days to pass."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from coffer.domain.inventory import EnvironmentPolicy
from coffer.storage import exposure_store, policy_store
from coffer.storage.compliance_tables import secret_inventory
from coffer.storage.tables import environments, projects, secret_versions, secrets
from tests.integration.team_helpers import API, bearer

ROTATION = f"{API}/rotation"
DAY = 86_400.0


def secret_url(project: str, environment: str, key: str) -> str:
    """The vault URL of a secret."""
    return f"{API}/projects/{project}/environments/{environment}/secrets/{key}"


def put(
    client: TestClient, token: str, project: str, environment: str, key: str, value: str
) -> int:
    """Writes a new version as ``token``'s identity (asserting 200) and returns it."""
    response = client.put(
        secret_url(project, environment, key), json={"value": value}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


def secret_row(
    engine: Engine, project: str, environment: str, key: str, org_id: str | None = None
) -> tuple[str, int]:
    """The secret's id and current version (in organization ``org_id``, when given)."""
    query = (
        sa.select(secrets.c.id, secrets.c.current_version)
        .join(environments, environments.c.id == secrets.c.environment_id)
        .join(projects, projects.c.id == environments.c.project_id)
        .where(
            projects.c.name == project,
            environments.c.name == environment,
            secrets.c.key == key,
        )
    )
    if org_id is not None:
        query = query.where(projects.c.org_id == org_id)
    with engine.connect() as conn:
        row = conn.execute(query).one()
    return str(row[0]), int(row[1])


def age(
    engine: Engine,
    project: str,
    environment: str,
    key: str,
    days: float,
    org_id: str | None = None,
) -> None:
    """Makes the secret's current version ``days`` days old."""
    secret_id, version = secret_row(engine, project, environment, key, org_id)
    with engine.begin() as conn:
        conn.execute(
            sa.update(secret_versions)
            .where(secret_versions.c.secret_id == secret_id, secret_versions.c.version == version)
            .values(created_at=time.time() - days * DAY)
        )


def set_period(
    engine: Engine, project: str, environment: str, key: str, days: int, org_id: str | None = None
) -> None:
    """Gives the secret its own rotation period (its inventory's ``rotation_days``)."""
    secret_id, _ = secret_row(engine, project, environment, key, org_id)
    with engine.begin() as conn:
        conn.execute(sa.delete(secret_inventory).where(secret_inventory.c.secret_id == secret_id))
        conn.execute(
            sa.insert(secret_inventory).values(
                secret_id=secret_id, rotation_days=days, updated_at=time.time(), updated_by="t"
            )
        )


def set_policy(engine: Engine, org_id: str, environment: str, days: int) -> None:
    """Gives every environment called ``environment`` a policy of rotation every ``days``."""
    with engine.begin() as conn:
        policy_store.save_policy(
            conn,
            org_id,
            EnvironmentPolicy(environment=environment, max_rotation_days=days),
            by="t",
            now=time.time(),
        )


def expose(
    engine: Engine,
    project: str,
    environment: str,
    key: str,
    location: str,
    version: int | None = None,
) -> None:
    """Records that the secret's current version (or ``version``) leaked at ``location``."""
    secret_id, current = secret_row(engine, project, environment, key)
    with engine.begin() as conn:
        exposure_store.record_exposure(
            conn,
            secret_id=secret_id,
            version=current if version is None else version,
            rule_id="generic-password",
            location=location,
            reported_by=None,
            reported_by_kind="user",
            now=time.time(),
        )


def by_key(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A schedule answer's secrets by ``project/environment/key``."""
    return {f"{s['project']}/{s['environment']}/{s['key']}": s for s in body["secrets"]}
