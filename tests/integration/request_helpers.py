"""Helpers shared by the access request, approval and read reason tests: a team of people
(two admins and a viewer besides the owner) opened once per test module and backend, a
fresh project per test (so tests stay apart), policies and settings written through the
storage layer, and moving a request's, grant's or approval's clock into the past."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from coffer.domain.inventory import EnvironmentPolicy
from coffer.storage import policy_store, settings_store
from coffer.storage.compliance_tables import access_requests, operation_approvals
from coffer.storage.settings_store import ComplianceSettings
from coffer.storage.tables import grants
from tests.integration.team_helpers import (
    API,
    Team,
    bearer,
    cheap_settings,
    member_token,
    team_factory,
)

REQUESTS = f"{API}/access-requests"
APPROVALS = f"{API}/approvals"
VALUE = "s3cret-value"
ADA, BEN, VIC = "ada@acme.test", "ben@acme.test", "vic@acme.test"


@dataclass
class People:
    """acme's owner and three members with their CLI tokens: admins Ada and Ben, viewer
    Vic; ``org_id`` is acme's id."""

    team: Team
    owner: str
    ada: str
    ben: str
    vic: str
    org_id: str

    def post(self, url: str, token: str, body: Any = None, **kwargs: Any) -> Any:
        """A POST with ``token`` as bearer."""
        return self.team.client.post(url, json=body, headers=bearer(token), **kwargs)

    def get(self, url: str, token: str, **kwargs: Any) -> Any:
        """A GET with ``token`` as bearer."""
        return self.team.client.get(url, headers=bearer(token), **kwargs)

    def put(self, url: str, token: str, body: Any, **kwargs: Any) -> Any:
        """A PUT with ``token`` as bearer."""
        return self.team.client.put(url, json=body, headers=bearer(token), **kwargs)


def secret_url(project: str, environment: str, key: str = "db/password") -> str:
    """The URL of a secret."""
    return f"{API}/projects/{project}/environments/{environment}/secrets/{key}"


def export_url(project: str, environment: str = "production") -> str:
    """The URL of an environment's export."""
    return f"{API}/projects/{project}/environments/{environment}/export"


def people_of(team: Team) -> People:
    """Adds Ada and Ben (admins) and Vic (viewer) to ``team`` and logs them in."""
    client = team.client
    ada = member_token(client, team.owner, ADA, "admin")
    ben = member_token(client, team.owner, BEN, "admin")
    vic = member_token(client, team.owner, VIC, "viewer")
    org_id = team.services.auth.authenticate(team.owner).org_id
    return People(team, team.owner, ada, ben, vic, org_id)


@contextmanager
def people_on(database_url: str, directory: Path, **overrides: Any) -> Iterator[People]:
    """acme on ``database_url`` (settings ``overrides``) with its people, for one module."""
    settings = cheap_settings(database_url, directory)
    with team_factory(settings) as open_team:
        yield people_of(open_team(**overrides))


def new_project(people: People) -> str:
    """A project of its own for one test, with ``db/password`` (``VALUE``) in production
    and staging; returns its name."""
    name = f"p-{uuid.uuid4().hex[:10]}"
    created = people.post(f"{API}/projects", people.owner, {"name": name})
    assert created.status_code == 201, created.text
    for environment in ("production", "staging"):
        written = people.put(secret_url(name, environment), people.owner, {"value": VALUE})
        assert written.status_code == 200, written.text
    return name


def set_policy(people: People, **rules: Any) -> None:
    """Saves acme's policy for ``production`` environments with ``rules``."""
    policy = EnvironmentPolicy(environment="production", **rules)
    with people.team.services.engine.begin() as conn:
        policy_store.save_policy(conn, people.org_id, policy, by="test", now=time.time())


def require_root_approval(people: People) -> None:
    """Makes acme's root key rotations need a second approver."""
    settings = ComplianceSettings(root_rotation_approvals=2)
    with people.team.services.engine.begin() as conn:
        settings_store.save_settings(conn, people.org_id, settings, by="test", now=time.time())


def grant(people: People, member: str, scope: str) -> None:
    """Gives ``member`` a standing grant of ``scope`` (``project[:env]:access``)."""
    answer = people.post(f"{API}/grants", people.owner, {"member": member, "scope": scope})
    assert answer.status_code == 201, answer.text


def age_request(people: People, request_id: str, seconds: float) -> None:
    """Moves a request's creation ``seconds`` into the past."""
    with people.team.services.engine.begin() as conn:
        conn.execute(
            sa.update(access_requests)
            .where(access_requests.c.id == request_id)
            .values(created_at=access_requests.c.created_at - seconds)
        )


def expire_grant(people: People, request_id: str) -> None:
    """Moves the end of an approved request's grant (and the request's record of it) one
    second into the past, as if its duration had passed."""
    past = time.time() - 1
    with people.team.services.engine.begin() as conn:
        grant_id = conn.execute(
            sa.select(access_requests.c.grant_id).where(access_requests.c.id == request_id)
        ).scalar_one()
        conn.execute(sa.update(grants).where(grants.c.id == grant_id).values(expires_at=past))
        conn.execute(
            sa.update(access_requests)
            .where(access_requests.c.id == request_id)
            .values(expires_at=past)
        )


def update_approval(people: People, approval_id: str, **values: Any) -> None:
    """Changes an approval's row directly (an attacker with database access, or time)."""
    with people.team.services.engine.begin() as conn:
        conn.execute(
            sa.update(operation_approvals)
            .where(operation_approvals.c.id == approval_id)
            .values(**values)
        )


def approved_export(people: People, requester: str, approver: str, target: str) -> str:
    """An ``env.export`` approval of ``target`` asked for by ``requester`` and approved by
    ``approver``; returns its id."""
    asked = people.post(
        APPROVALS,
        requester,
        {"operation": "env.export", "target": target, "reason": "quarterly backup"},
    )
    assert asked.status_code == 201, asked.text
    approval_id: str = asked.json()["id"]
    done = people.post(f"{APPROVALS}/{approval_id}/approve", approver)
    assert done.status_code == 200, done.text
    return approval_id
