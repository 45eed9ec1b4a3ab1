"""The audit log as the database holds it: one entry per read and change, with actor, names,
source and result, and never a secret value."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.domain.secret_value import SecretValue
from coffer.storage.tables import audit_log
from tests.conftest import Vault
from tests.integration.api_helpers import (
    PROJECTS,
    audit_entries,
    env_path,
    last_audit_seq,
    put_secret,
    secret_path,
)

DEV = "development"
STG = "staging"


def _summary(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(action, project, environment, key, metadata) of each entry, oldest first."""
    return [(e["action"], e["project"], e["environment"], e["key"], e["metadata"]) for e in entries]


def _new_entries(vault: Vault, after: int) -> list[dict[str, Any]]:
    return audit_entries(vault.services.engine, after)


@pytest.fixture
def me(api: TestClient) -> dict[str, str]:
    """The identity behind the test client's token (whoami)."""
    body: dict[str, str] = api.get("/api/v1/whoami").json()
    return body


def _assert_http_actor(entry: dict[str, Any], me: dict[str, str]) -> None:
    assert entry["actor_id"] == me["id"]
    assert entry["actor_kind"] == "bootstrap"
    assert entry["org_id"] == me["org_id"]
    assert entry["source_ip"] == "testclient"
    assert entry["user_agent"] == "testclient"
    assert entry["result"] == "success"
    assert entry["timestamp"] > 0
    assert entry["id"]


def test_set_appends_created_then_updated(
    api: TestClient, vault: Vault, project: str, me: dict[str, str]
) -> None:
    """A first write records secret.created (version 1), the next secret.updated (version 2)."""
    start = last_audit_seq(vault.services.engine)
    put_secret(api, project, DEV, "db/password", "audit-set-1")
    put_secret(api, project, DEV, "db/password", "audit-set-2")
    entries = _new_entries(vault, start)
    assert _summary(entries) == [
        ("secret.created", "web", DEV, "db/password", {"version": 1}),
        ("secret.updated", "web", DEV, "db/password", {"version": 2}),
    ]
    for entry in entries:
        _assert_http_actor(entry, me)


def test_get_appends_one_read_with_the_version(
    api: TestClient, vault: Vault, project: str, me: dict[str, str]
) -> None:
    """Each read, of the current value or of a past version, records secret.read with it."""
    put_secret(api, project, DEV, "K", "audit-get-1")
    put_secret(api, project, DEV, "K", "audit-get-2")
    start = last_audit_seq(vault.services.engine)
    assert api.get(secret_path(project, DEV, "K")).status_code == 200
    assert api.get(secret_path(project, DEV, "K"), params={"version": 1}).status_code == 200
    entries = _new_entries(vault, start)
    assert _summary(entries) == [
        ("secret.read", "web", DEV, "K", {"version": 2, "via": "get"}),
        ("secret.read", "web", DEV, "K", {"version": 1, "via": "get"}),
    ]
    for entry in entries:
        _assert_http_actor(entry, me)


def test_failed_read_appends_nothing(api: TestClient, vault: Vault, project: str) -> None:
    """A read of a missing secret or version records no secret.read."""
    put_secret(api, project, DEV, "K", "v")
    start = last_audit_seq(vault.services.engine)
    assert api.get(secret_path(project, DEV, "MISSING")).status_code == 404
    assert api.get(secret_path(project, DEV, "K"), params={"version": 9}).status_code == 404
    assert _new_entries(vault, start) == []


def test_delete_appends_deleted_with_versions_destroyed(
    api: TestClient, vault: Vault, project: str, me: dict[str, str]
) -> None:
    """Deleting a secret records secret.deleted with how many versions went."""
    for value in ("a", "b", "c"):
        put_secret(api, project, DEV, "K", value)
    start = last_audit_seq(vault.services.engine)
    assert api.delete(secret_path(project, DEV, "K")).status_code == 200
    entries = _new_entries(vault, start)
    assert _summary(entries) == [
        ("secret.deleted", "web", DEV, "K", {"versions_destroyed": 3}),
    ]
    _assert_http_actor(entries[0], me)


def test_rollback_appends_a_read_of_the_old_version_and_the_new_version(
    api: TestClient, vault: Vault, project: str, me: dict[str, str]
) -> None:
    """A rollback records reading the old version and writing the new one that copies it."""
    put_secret(api, project, DEV, "K", "a")
    put_secret(api, project, DEV, "K", "b")
    start = last_audit_seq(vault.services.engine)
    response = api.post(f"{env_path(project, DEV)}/rollback/K", json={"version": 1})
    assert response.status_code == 200
    entries = _new_entries(vault, start)
    assert _summary(entries) == [
        ("secret.read", "web", DEV, "K", {"version": 1, "via": "rollback"}),
        ("secret.updated", "web", DEV, "K", {"version": 3, "rolled_back_to": 1}),
    ]
    for entry in entries:
        _assert_http_actor(entry, me)


def test_export_appends_one_read_per_key_and_per_reference(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Export records a read for every key, plus one for each secret a reference reads."""
    put_secret(api, project, STG, "HOST", "stg")
    put_secret(api, project, DEV, "B", "plain")
    put_secret(api, project, DEV, "A", "${staging.HOST}")
    start = last_audit_seq(vault.services.engine)
    response = api.get(f"{env_path(project, DEV)}/export", params={"format": "dotenv"})
    assert response.status_code == 200
    assert _summary(_new_entries(vault, start)) == [
        ("secret.read", "web", DEV, "A", {"version": 1, "via": "export"}),
        ("secret.read", "web", STG, "HOST", {"version": 1, "via": "reference"}),
        ("secret.read", "web", DEV, "B", {"version": 1, "via": "export"}),
    ]


def test_expanded_get_appends_a_read_for_each_referenced_secret(
    api: TestClient, vault: Vault, project: str
) -> None:
    """get?expand=true records the read of the secret and of every secret it references."""
    put_secret(api, project, DEV, "USER", "u")
    put_secret(api, project, DEV, "PASS", "p")
    put_secret(api, project, DEV, "URL", "${USER}:${PASS}")
    start = last_audit_seq(vault.services.engine)
    response = api.get(secret_path(project, DEV, "URL"), params={"expand": "true"})
    assert response.json()["value"] == "u:p"
    assert _summary(_new_entries(vault, start)) == [
        ("secret.read", "web", DEV, "URL", {"version": 1, "via": "get"}),
        ("secret.read", "web", DEV, "USER", {"version": 1, "via": "reference"}),
        ("secret.read", "web", DEV, "PASS", {"version": 1, "via": "reference"}),
    ]


def test_import_appends_only_for_keys_it_writes(
    api: TestClient, vault: Vault, project: str
) -> None:
    """An import records created and updated keys (via import) and nothing for unchanged ones."""
    put_secret(api, project, DEV, "SAME", "same")
    put_secret(api, project, DEV, "CHANGED", "old")
    start = last_audit_seq(vault.services.engine)
    body = {"secrets": {"SAME": "same", "CHANGED": "new", "NEW": "n"}}
    assert api.post(f"{env_path(project, DEV)}/import", json=body).status_code == 200
    assert _summary(_new_entries(vault, start)) == [
        ("secret.updated", "web", DEV, "CHANGED", {"version": 2, "via": "import"}),
        ("secret.created", "web", DEV, "NEW", {"version": 1, "via": "import"}),
    ]


def test_promote_appends_writes_in_the_target_and_dry_run_appends_nothing(
    api: TestClient, vault: Vault, project: str
) -> None:
    """A promotion records each write in the target environment; a dry run records nothing."""
    put_secret(api, project, DEV, "K", "v")
    start = last_audit_seq(vault.services.engine)
    body = {"from": DEV, "to": STG, "dry_run": True}
    assert api.post(f"{PROJECTS}/{project}/promote", json=body).status_code == 200
    assert _new_entries(vault, start) == []
    body = {"from": DEV, "to": STG}
    assert api.post(f"{PROJECTS}/{project}/promote", json=body).status_code == 200
    assert _summary(_new_entries(vault, start)) == [
        ("secret.created", "web", STG, "K", {"version": 1, "via": "promote", "from": DEV}),
    ]


def test_project_and_environment_changes_are_recorded(
    api: TestClient, vault: Vault, me: dict[str, str]
) -> None:
    """Creating and deleting projects and environments each append their own entry."""
    start = last_audit_seq(vault.services.engine)
    assert api.post(PROJECTS, json={"name": "web"}).status_code == 201
    assert api.post(f"{PROJECTS}/web/environments", json={"name": "qa"}).status_code == 201
    assert api.delete(env_path("web", "qa")).status_code == 204
    assert api.delete(f"{PROJECTS}/web").status_code == 204
    entries = _new_entries(vault, start)
    assert _summary(entries) == [
        (
            "project.created",
            "web",
            None,
            None,
            {"environments": "development,staging,production"},
        ),
        ("environment.created", "web", "qa", None, {}),
        ("environment.deleted", "web", "qa", None, {}),
        ("project.deleted", "web", None, None, {"data_keys_destroyed": 1}),
    ]
    for entry in entries:
        _assert_http_actor(entry, me)


def test_service_calls_record_the_callers_context(vault: Vault) -> None:
    """Entries written through the services carry the context's actor, address and agent."""
    services, ctx = vault.services, vault.ctx
    services.projects.create(ctx, "svc")
    start = last_audit_seq(services.engine)
    services.secrets.set(ctx, "svc", DEV, "K", SecretValue("svc-value"), comment="c")
    services.secrets.get(ctx, "svc", DEV, "K")
    entries = _new_entries(vault, start)
    assert [e["action"] for e in entries] == ["secret.created", "secret.read"]
    for entry in entries:
        assert entry["actor_id"] == ctx.actor.id
        assert entry["org_id"] == ctx.actor.org_id
        assert entry["source_ip"] == "127.0.0.1"
        assert entry["user_agent"] == "pytest"
        assert entry["result"] == "success"


def test_audit_entries_are_ordered_and_unique(api: TestClient, vault: Vault, project: str) -> None:
    """Entry ids are unique and timestamps never go backwards along the sequence."""
    for i in range(5):
        put_secret(api, project, DEV, f"K{i}", "v")
        assert api.get(secret_path(project, DEV, f"K{i}")).status_code == 200
    entries = _new_entries(vault, 0)
    assert len({e["id"] for e in entries}) == len(entries)
    stamps = [e["timestamp"] for e in entries]
    assert stamps == sorted(stamps)


LEAK = "AUDITLEAK-c4f1e9"


def test_no_audit_row_contains_a_secret_value(api: TestClient, vault: Vault, project: str) -> None:
    """After every kind of operation on distinctive values, no audit column holds one."""
    values = {f"K{i}": f"{LEAK}-{i}" for i in range(3)}
    for key, value in values.items():
        put_secret(api, project, DEV, key, value, comment="no value here")
    put_secret(api, project, DEV, "REF", f"{LEAK}-ref-${{K0}}")
    put_secret(api, project, DEV, "K0", f"{LEAK}-updated")
    api.get(secret_path(project, DEV, "K0"))
    api.get(secret_path(project, DEV, "K0"), params={"version": 1})
    api.get(secret_path(project, DEV, "REF"), params={"expand": "true"})
    api.get(f"{env_path(project, DEV)}/export", params={"format": "yaml"})
    api.post(f"{env_path(project, DEV)}/rollback/K0", json={"version": 1})
    api.post(f"{env_path(project, STG)}/import", json={"content": f"IMP={LEAK}-import\n"})
    api.post(f"{PROJECTS}/{project}/promote", json={"from": DEV, "to": STG, "overwrite": True})
    api.get(f"{PROJECTS}/{project}/diff", params={"from": DEV, "to": STG})
    api.put(secret_path(project, DEV, "bad..key"), json={"value": f"{LEAK}-rejected"})
    api.delete(secret_path(project, DEV, "K1"))
    entries = _new_entries(vault, 0)
    assert len(entries) > 20
    for entry in entries:
        text = json.dumps(entry, default=str)
        assert LEAK not in text, entry
    with vault.services.engine.connect() as conn:
        raw = conn.execute(sa.select(sa.cast(audit_log.c.metadata, sa.Text))).scalars().all()
    assert raw and not any(LEAK in (m or "") for m in raw)


def test_writes_that_fail_add_no_audit_row(api: TestClient, vault: Vault, project: str) -> None:
    """Rejected writes (bad key, size, NUL, unknown names, bad JSON, bad token, bad import,
    missing version or key) leave the audit log as it was."""
    put_secret(api, project, DEV, "K", "v")
    start = last_audit_seq(vault.services.engine)
    env = env_path(project, DEV)
    anonymous = TestClient(api.app)
    responses = [
        api.put(secret_path(project, DEV, "a..b"), json={"value": "x"}),
        api.put(secret_path(project, DEV, "K"), json={"value": "x" * 65537}),
        api.put(secret_path(project, DEV, "K"), json={"value": "a\x00b"}),
        api.put(secret_path(project, DEV, "K"), json={"value": "x", "comment": "c" * 1025}),
        api.put(secret_path("nope", DEV, "K"), json={"value": "x"}),
        api.put(secret_path(project, "nope", "K"), json={"value": "x"}),
        api.put(
            secret_path(project, DEV, "K"),
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        ),
        anonymous.put(secret_path(project, DEV, "K"), json={"value": "x"}),
        api.post(f"{env}/import", json={"secrets": {"OK": "x", "bad key": "y"}}),
        api.post(f"{env}/rollback/K", json={"version": 5}),
        api.delete(secret_path(project, DEV, "MISSING")),
        api.post(f"{PROJECTS}/{project}/promote", json={"from": DEV, "to": STG, "keys": ["NO"]}),
        api.post(PROJECTS, json={"name": project}),
        api.post(PROJECTS, json={"name": "bad.name"}),
    ]
    assert all(r.status_code >= 400 for r in responses), [r.status_code for r in responses]
    assert _new_entries(vault, start) == []
