"""Running rotators safely: one run of a secret at a time, the environment policy and the
connection secret's read access checked before the source is touched (API tests on SQLite
and PostgreSQL; the postgresql rotator's own source is tested in test_rotators_postgres)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from coffer.domain.errors import Conflict
from coffer.domain.inventory import EnvironmentPolicy
from coffer.domain.models import CallContext
from coffer.domain.rotators import PendingRotation, RotatorConfig
from coffer.domain.secret_value import SecretValue
from coffer.services.rotator_random import RandomRotator
from coffer.storage import policy_store
from coffer.storage.compliance_tables import secret_rotators
from coffer.storage.tables import audit_log
from tests.integration.api_helpers import row_counts
from tests.integration.rotation_helpers import ROTATION, put, secret_row
from tests.integration.team_helpers import API, Team, bearer, member_token

TARGET = "app/staging/API_TOKEN"


def rotate(team: Team, token: str | None = None) -> Any:
    """Runs TARGET's rotator (as the owner unless ``token`` is given)."""
    return team.client.post(f"{ROTATION}/rotate/{TARGET}", headers=bearer(token or team.owner))


def owner_context(team: Team) -> CallContext:
    """The owner's call context, for calling services while a request is under way."""
    return CallContext(actor=team.services.auth.authenticate(team.owner), source_ip="127.0.0.1")


def actions(team: Team) -> list[str]:
    """Every audit entry's action, oldest first."""
    with team.services.engine.connect() as conn:
        return list(conn.execute(sa.select(audit_log.c.action).order_by(audit_log.c.seq)).scalars())


def run_state(team: Team) -> tuple[str | None, str | None]:
    """TARGET's rotator's last status and error."""
    with team.services.engine.connect() as conn:
        row = conn.execute(sa.select(secret_rotators.c.last_status, secret_rotators.c.last_error))
        status, error = row.one()
    return status, error


def version(team: Team) -> int:
    """TARGET's current version."""
    return secret_row(team.services.engine, "app", "staging", "API_TOKEN")[1]


def with_random_rotator(team: Team) -> None:
    """Stores TARGET at version 1 and gives it a random rotator."""
    put(team.client, team.owner, "app", "staging", "API_TOKEN", "token-v1")
    response = team.client.put(
        f"{ROTATION}/rotators/{TARGET}", json={"kind": "random"}, headers=bearer(team.owner)
    )
    assert response.status_code == 200, response.text


def test_a_second_run_while_one_is_running_gets_409_and_changes_nothing(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run started while another run of the same secret is changing its source is refused
    with 409 naming the secret, without touching the source or writing anything; the first
    run stores its value (version 2), and once it is done the secret can be rotated again."""
    with_random_rotator(team)
    original = RandomRotator.rotate
    refused: list[Conflict] = []

    def rotate_and_race(
        self: RandomRotator, current: SecretValue, config: RotatorConfig, conn: Any
    ) -> PendingRotation:
        if not refused:
            before = row_counts(team.services.engine)
            with pytest.raises(Conflict) as second:
                team.services.rotators.rotate(owner_context(team), *TARGET.split("/"))
            refused.append(second.value)
            assert row_counts(team.services.engine) == before
        return original(self, current, config, conn)

    monkeypatch.setattr(RandomRotator, "rotate", rotate_and_race)
    first = rotate(team)
    assert first.status_code == 200, first.text
    assert [error.message for error in refused] == [
        f"a rotation of {TARGET} is already running; wait for it to finish"
    ]
    running = {"last_status": "running", "last_run_at": time.time()}
    with team.services.engine.begin() as conn:
        conn.execute(sa.update(secret_rotators).values(**running))
    conflict = rotate(team)
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "conflict"
    with team.services.engine.begin() as conn:
        conn.execute(sa.update(secret_rotators).values(last_status="succeeded"))
    assert version(team) == 2 and run_state(team) == ("succeeded", None)
    assert actions(team).count("rotation.completed") == 1
    assert "rotation.failed" not in actions(team)
    again = rotate(team)
    assert again.status_code == 200 and again.json()["version"] == 3


def test_a_run_left_running_is_taken_over_once_stale(team: Team) -> None:
    """A run marked running less than 10 minutes ago holds the secret (409); one marked
    running longer ago is taken to have died, and a new run goes ahead."""
    with_random_rotator(team)
    for started, expected in ((60.0, 409), (601.0, 200)):
        with team.services.engine.begin() as conn:
            conn.execute(
                sa.update(secret_rotators).values(
                    last_status="running", last_run_at=time.time() - started
                )
            )
        assert rotate(team).status_code == expected
    assert version(team) == 2 and run_state(team) == ("succeeded", None)


def test_a_value_stored_meanwhile_is_not_undone_at_the_source(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the secret gets a new version while it is being rotated, the run does not put
    the old value back at the source: it answers 502 saying the vault was not updated, keeps
    that in last_error, and the version written meanwhile stays current."""
    with_random_rotator(team)
    original = RandomRotator.rotate
    undone: list[bool] = []

    def rotate_while_written(
        self: RandomRotator, current: SecretValue, config: RotatorConfig, conn: Any
    ) -> PendingRotation:
        team.services.secrets.set(
            owner_context(team), "app", "staging", "API_TOKEN", SecretValue("token-v2")
        )
        pending = original(self, current, config, conn)
        monkeypatch.setattr(type(pending), "rollback", lambda _self: undone.append(True))
        return pending

    monkeypatch.setattr(RandomRotator, "rotate", rotate_while_written)
    response = rotate(team)
    assert response.status_code == 502, response.text
    message = response.json()["error"]["message"]
    assert message == f"{TARGET} changed while it was being rotated; the new value was not stored"
    assert undone == [] and run_state(team) == ("failed", message)
    value = team.client.get(
        f"{API}/projects/app/environments/staging/secrets/API_TOKEN", headers=bearer(team.owner)
    ).json()
    assert (value["version"], value["value"]) == (2, "token-v2")


def test_a_run_that_would_break_the_policy_is_refused_before_the_source(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret that breaks its environment's policy (staging requires an owner) is not
    rotated: 400 policy_violation naming the field, the rotator is never called, and no row
    changes (no claim, no audit entry, no version)."""
    with_random_rotator(team)
    org_id = team.services.auth.authenticate(team.owner).org_id
    with team.services.engine.begin() as conn:
        policy = EnvironmentPolicy(environment="staging", required_fields=("owner",))
        policy_store.save_policy(conn, org_id, policy, by="t", now=time.time())
    called: list[bool] = []
    monkeypatch.setattr(RandomRotator, "rotate", lambda *_args: called.append(True))
    before = row_counts(team.services.engine)
    response = rotate(team)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("policy_violation", "owner")
    assert "staging requires owner" in error["message"]
    assert called == [] and row_counts(team.services.engine) == before
    assert version(team) == 1 and run_state(team) == (None, None)


def test_a_runner_who_may_not_read_the_connection_secret_is_refused(team: Team) -> None:
    """A member with write access to the rotated secret but no read access to the
    environment of its rotator's connection secret gets 403 naming that secret; the
    connection is not read (no secret.read), the rotator not run, the version stays."""
    put(team.client, team.owner, "app", "staging", "API_TOKEN", "token-v1")
    team.client.post(f"{API}/projects", json={"name": "ops"}, headers=bearer(team.owner))
    put(team.client, team.owner, "ops", "production", "PG", "postgresql://u@127.0.0.1:1/db")
    spec = {"kind": "postgresql", "role": "app_user", "connection": "ops/production/PG"}
    configured = team.client.put(
        f"{ROTATION}/rotators/{TARGET}", json=spec, headers=bearer(team.owner)
    )
    assert configured.status_code == 200, configured.text
    writer = member_token(team.client, team.owner, "w@acme.test", "viewer")
    for scope in ("app:staging:write", "ops:production:none"):
        grant = {"member": "w@acme.test", "scope": scope}
        created = team.client.post(f"{API}/grants", json=grant, headers=bearer(team.owner))
        assert created.status_code == 201, created.text
    before = actions(team)
    response = rotate(team, writer)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "access_denied" and "ops/production/PG" in error["message"]
    assert actions(team)[len(before) :] == ["access.denied"]
    assert version(team) == 1 and run_state(team) == (None, None)
