"""Inventory metadata, environment policies and compliance settings over the HTTP API, on
SQLite and PostgreSQL: setting and reading metadata, refusing bad fields and writes that
break a policy (the hot path included), refusing a policy that existing secrets break, and
who may see or change what.

``api`` is the bootstrap owner on project ``web`` (environments development, staging,
production); ``team`` is organization acme with ``app/production/db/password``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coffer.domain.errors import PolicyViolation
from coffer.domain.inventory import parse_inventory_change
from coffer.domain.secret_value import SecretValue
from coffer.services.secrets import SecretWrite
from tests.conftest import Vault
from tests.integration.api_helpers import (
    audit_entries,
    env_path,
    last_audit_seq,
    put_secret,
    row_counts,
    secret_path,
)
from tests.integration.team_helpers import API, SECRET, Team, bearer, member_token

POLICIES = f"{API}/policies"
INVENTORY = f"{API}/inventory"
SETTINGS = f"{API}/compliance-settings"


def inventory_path(project: str, environment: str, key: str) -> str:
    """The URL of one secret's inventory metadata."""
    return f"{env_path(project, environment)}/inventory/{key}"


def error_of(response: Any, status: int) -> dict[str, str]:
    """The error body of an answer that must have ``status``."""
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    return error


def metadata_of(entry: dict[str, Any]) -> dict[str, Any]:
    """An audit entry's metadata as a dict (stored as JSON text, or decoded already)."""
    metadata = entry["metadata"]
    decoded: dict[str, Any] = json.loads(metadata) if isinstance(metadata, str) else metadata
    return decoded


def actions_since(vault: Vault, seq: int) -> list[str]:
    """The audit actions recorded after ``seq``."""
    return [entry["action"] for entry in audit_entries(vault.services.engine, seq)]


@pytest.fixture
def web(api: TestClient, project: str) -> TestClient:
    """Project ``web`` with ``db/password`` (v1) in production and ``API_KEY`` in
    development."""
    put_secret(api, project, "production", "db/password", "pw-1")
    put_secret(api, project, "development", "API_KEY", "dev-key")
    return api


def test_inventory_is_set_partially_read_back_and_audited(web: TestClient, vault: Vault) -> None:
    """A PUT sets the fields sent (sensitivity in any case, a rotation period as 90d), a
    later PUT changes only its own fields and null clears one; the audit entry names the
    changed fields and their new values, and reading the metadata records no read."""
    path = inventory_path("web", "production", "db/password")
    seq = last_audit_seq(vault.services.engine)
    first = web.put(
        path,
        json={"owner": " alice@example.com ", "sensitivity": "SECRET", "rotation_days": "90d"},
    )
    assert first.status_code == 200, first.text
    assert first.json()["owner"] == "alice@example.com"
    assert first.json()["sensitivity"] == "secret"
    assert first.json()["rotation_days"] == 90
    second = web.put(path, json={"system": "billing db", "owner": None})
    assert second.status_code == 200, second.text
    shown = web.get(path).json()
    assert {k: shown[k] for k in ("owner", "system", "sensitivity", "rotation_days")} == {
        "owner": None,
        "system": "billing db",
        "sensitivity": "secret",
        "rotation_days": 90,
    }
    assert shown["current_version"] == 1 and shown["violations"] == []
    entries = [
        e for e in audit_entries(vault.services.engine, seq) if e["action"] == "inventory.updated"
    ]
    assert [metadata_of(e) for e in entries] == [
        {
            "fields": "owner,sensitivity,rotation_days",
            "owner": "alice@example.com",
            "sensitivity": "secret",
            "rotation_days": 90,
        },
        {"fields": "owner,system", "owner": None, "system": "billing db"},
    ]
    assert entries[0]["key"] == "db/password" and entries[0]["environment"] == "production"
    assert "secret.read" not in actions_since(vault, seq)


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"owner": "x" * 255}, "owner"),
    ({"owner": "alice\x1b[31m"}, "owner"),
    ({"owner": ""}, "owner"),
    ({"owner": 7}, "owner"),
    ({"system": "s" * 129}, "system"),
    ({"description": "d" * 1025}, "description"),
    ({"description": "line\x00"}, "description"),
    ({"sensitivity": "top-secret"}, "sensitivity"),
    ({"rotation_days": 0}, "rotation_days"),
    ({"rotation_days": 3651}, "rotation_days"),
    ({"rotation_days": "36h"}, "rotation_days"),
    ({"rotation_days": True}, "rotation_days"),
    ({"colour": "blue"}, "colour"),
    ({}, "inventory"),
]


def test_every_bad_field_is_refused_by_name_and_changes_nothing(
    web: TestClient, vault: Vault
) -> None:
    """Each bad field (too long, control characters, empty, wrong type, unknown sensitivity,
    rotation outside 1..3650 whole days, an unknown field) gets 400 naming that field, and
    neither the metadata nor the audit log changes; the write's ``inventory`` object too."""
    path = inventory_path("web", "production", "db/password")
    assert web.put(path, json={"owner": "alice@example.com"}).status_code == 200
    before = web.get(path).json()
    seq = last_audit_seq(vault.services.engine)
    for body, field in BAD_FIELDS:
        error = error_of(web.put(path, json=body), 400)
        assert error["field"] == field, (body, error)
        assert field in error["message"], (body, error)
    write = web.put(
        secret_path("web", "production", "db/password"),
        json={"value": "pw-2", "inventory": {"sensitivity": "loud"}},
    )
    assert error_of(write, 400)["field"] == "sensitivity"
    nested = web.put(
        secret_path("web", "production", "db/password"),
        json={"value": "pw-2", "inventory": {"colour": "blue"}},
    )
    assert error_of(nested, 400)["field"] == "inventory.colour"
    assert web.get(path).json() == before
    assert actions_since(vault, seq) == []


def test_a_write_breaking_the_policy_is_refused_with_the_rule_and_writes_nothing(
    web: TestClient, vault: Vault
) -> None:
    """Under "production requires owner, rotation at most every 90 days", a write without
    them is refused naming both rules and how to fix them: no version, no metadata, no
    audit entry. The same write carrying its inventory goes through, in one transaction
    with its ``inventory.updated`` entry."""
    policy = {"required_fields": ["owner"], "max_rotation_days": 90}
    saved = web.put(f"{POLICIES}/production", json={**policy, "allow_existing_violations": True})
    assert saved.status_code == 200, saved.text
    counts = row_counts(vault.services.engine)
    seq = last_audit_seq(vault.services.engine)
    refused = web.put(
        secret_path("web", "production", "NEW_KEY"),
        json={"value": "v", "max_reads": None},  # the full stack
    )
    error = error_of(refused, 400)
    assert error["code"] == "policy_violation"
    assert "production requires owner" in error["message"]
    assert "production requires rotation_days of at most 90 days" in error["message"]
    assert "--owner" in error["message"] and "--rotate-every" in error["message"]
    too_slow = web.put(
        secret_path("web", "production", "NEW_KEY"),
        json={"value": "v", "inventory": {"owner": "ops", "rotation_days": 365}},
    )
    assert (
        "rotation at most every 90 days (rotation_days is 365)"
        in (error_of(too_slow, 400)["message"])
    )
    assert row_counts(vault.services.engine) == counts
    assert actions_since(vault, seq) == []
    assert web.get(secret_path("web", "production", "NEW_KEY")).status_code == 404
    accepted = web.put(
        secret_path("web", "production", "NEW_KEY"),
        json={"value": "v", "inventory": {"owner": "ops", "rotation_days": "30d"}},
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["version"] == 1
    assert actions_since(vault, seq) == ["secret.created", "inventory.updated"]
    assert web.get(inventory_path("web", "production", "NEW_KEY")).json()["owner"] == "ops"
    development = web.put(secret_path("web", "development", "NEW_KEY"), json={"value": "v"})
    assert development.status_code == 200, "the policy covers production only"


def test_the_hot_path_write_is_refused_in_a_policied_environment(
    web: TestClient, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain ``{"value": ...}`` PUT, answered by the hot path without FastAPI, is refused
    like the route's: 400 policy_violation naming the rule, version unchanged; after the
    owner is set, the same plain write succeeds."""
    path = secret_path("web", "production", "db/password")
    assert web.get(path).status_code == 200  # the token's holder is cached from here on
    assert (
        web.put(
            f"{POLICIES}/production",
            json={"required_fields": ["owner"], "allow_existing_violations": True},
        ).status_code
        == 200
    )
    routed: list[str] = []
    authenticate = vault.services.auth.authenticate
    monkeypatch.setattr(
        vault.services.auth,
        "authenticate",
        lambda *args, **kwargs: routed.append("route") or authenticate(*args, **kwargs),
    )
    seq = last_audit_seq(vault.services.engine)
    refused = web.put(path, json={"value": "pw-2"})
    assert routed == [], "the plain write must be answered by the hot path"
    error = error_of(refused, 400)
    assert error["code"] == "policy_violation"
    assert "production requires owner" in error["message"]
    assert web.get(path).json()["version"] == 1
    assert "secret.updated" not in actions_since(vault, seq)
    owner = web.put(inventory_path("web", "production", "db/password"), json={"owner": "ops"})
    assert owner.status_code == 200, owner.text
    assert web.put(path, json={"value": "pw-2"}).json()["version"] == 2


def test_import_promote_and_rollback_are_refused_in_a_policied_environment(
    web: TestClient, vault: Vault
) -> None:
    """Every way of writing a version goes through the policy: an import into production is
    refused as a whole, a promotion into it and a rollback there are refused, all naming
    the rule and changing nothing."""
    web.put(
        f"{POLICIES}/production",
        json={"required_fields": ["owner"], "allow_existing_violations": True},
    )
    put_secret(web, "web", "staging", "db/password", "pw-staging")
    counts = row_counts(vault.services.engine)
    seq = last_audit_seq(vault.services.engine)
    attempts = [
        web.post(
            f"{env_path('web', 'production')}/import",
            json={"secrets": {"A_KEY": "a", "B_KEY": "b"}},
        ),
        web.post(
            f"{API}/projects/web/promote",
            json={"from": "staging", "to": "production", "overwrite": True},
        ),
        web.post(f"{env_path('web', 'production')}/rollback/db/password", json={"version": 1}),
    ]
    for answer in attempts:
        error = error_of(answer, 400)
        assert error["code"] == "policy_violation", error
        assert "production requires owner" in error["message"]
    assert row_counts(vault.services.engine) == counts
    assert actions_since(vault, seq) == []


def test_the_group_commit_refuses_only_the_write_that_breaks_the_policy(
    web: TestClient, vault: Vault
) -> None:
    """In one batch of hot-path writes, the write in the policied environment is refused
    with PolicyViolation and the other one is written."""
    web.put(
        f"{POLICIES}/production",
        json={"required_fields": ["owner"], "allow_existing_violations": True},
    )
    ctx = vault.ctx
    results = vault.services.secrets.set_many(
        [
            SecretWrite(ctx, "web", "production", "db/password", SecretValue("pw-2")),
            SecretWrite(ctx, "web", "development", "API_KEY", SecretValue("dev-2")),
        ]
    )
    assert isinstance(results[0], PolicyViolation)
    assert not isinstance(results[1], Exception) and results[1].version == 2


def test_an_inventory_change_that_would_break_the_policy_is_refused(
    web: TestClient, vault: Vault
) -> None:
    """Clearing the owner that production requires is refused naming the rule, and the
    owner stays."""
    path = inventory_path("web", "production", "db/password")
    assert web.put(path, json={"owner": "ops"}).status_code == 200
    assert web.put(f"{POLICIES}/production", json={"required_fields": ["owner"]}).status_code == 200
    seq = last_audit_seq(vault.services.engine)
    error = error_of(web.put(path, json={"owner": None}), 400)
    assert error["code"] == "policy_violation" and error["field"] == "owner"
    assert "production requires owner" in error["message"]
    assert web.get(path).json()["owner"] == "ops"
    assert actions_since(vault, seq) == []


def test_a_policy_that_existing_secrets_break_is_refused_then_accepted_explicitly(
    web: TestClient, vault: Vault
) -> None:
    """A production policy that ``db/password`` already breaks gets 409 naming
    web/production/db/password and the rule, saving nothing and recording nothing; with
    allow_existing_violations it is saved, the answer lists the secret, the audit says how
    many broke it, and the violations report and the inventory show it."""
    body = {"required_fields": ["owner", "sensitivity"], "export_approvals": 2}
    seq = last_audit_seq(vault.services.engine)
    error = error_of(web.put(f"{POLICIES}/production", json=body), 409)
    assert "web/production/db/password (production requires owner" in error["message"]
    assert "allow_existing_violations" in error["message"]
    assert web.get(POLICIES).json() == {"policies": []}
    assert actions_since(vault, seq) == []
    saved = web.put(f"{POLICIES}/production", json={**body, "allow_existing_violations": True})
    assert saved.status_code == 200, saved.text
    assert saved.json()["policy"] == {
        "environment": "production",
        "required_fields": ["owner", "sensitivity"],
        "max_rotation_days": None,
        "require_read_reason": False,
        "export_approvals": 2,
    }
    assert [e["key"] for e in saved.json()["existing_violations"]] == ["db/password"]
    [entry] = [e for e in audit_entries(vault.services.engine, seq)]
    assert entry["action"] == "policy.updated" and entry["environment"] == "production"
    assert metadata_of(entry)["existing_violations"] == 1
    broken = web.get(f"{POLICIES}/violations").json()["secrets"]
    assert [(e["project"], e["environment"], e["key"]) for e in broken] == [
        ("web", "production", "db/password")
    ]
    assert broken[0]["violations"] == [
        "production requires owner",
        "production requires sensitivity",
    ]
    deleted = web.delete(f"{POLICIES}/production")
    assert deleted.json() == {"environment": "production", "deleted": True}
    assert web.get(f"{POLICIES}/violations").json()["secrets"] == []
    assert error_of(web.delete(f"{POLICIES}/production"), 404)["field"] == "environment"
    assert actions_since(vault, seq)[-1] == "policy.deleted"


def test_a_refused_policy_lists_at_most_fifty_secrets_and_counts_the_rest(
    web: TestClient, vault: Vault
) -> None:
    """With 51 breaking secrets the 409 names 50 of them and says "and 1 more"."""
    ctx = vault.ctx
    for index in range(51):
        vault.services.secrets.set(ctx, "web", "staging", f"K{index:02d}", SecretValue("v"))
    error = error_of(web.put(f"{POLICIES}/staging", json={"required_fields": ["owner"]}), 409)
    assert "51 existing secrets already break it" in error["message"]
    assert "web/staging/K49 " in error["message"] and "K50" not in error["message"]
    assert error["message"].count("staging requires owner") == 50
    assert "and 1 more" in error["message"]


BAD_POLICIES: list[tuple[dict[str, Any], str]] = [
    ({"required_fields": ["owner", "colour"]}, "required_fields"),
    ({"required_fields": "owner"}, "required_fields"),
    ({"max_rotation_days": 0}, "max_rotation_days"),
    ({"max_rotation_days": "forever"}, "max_rotation_days"),
    ({"export_approvals": 3}, "export_approvals"),
    ({"export_approvals": True}, "export_approvals"),
    ({"require_read_reason": "yes"}, "require_read_reason"),
    ({"allow_existing_violations": "yes"}, "allow_existing_violations"),
    ({"required": ["owner"]}, "required"),
]


def test_bad_policy_fields_are_refused_by_name(web: TestClient, vault: Vault) -> None:
    """A policy with a bad field (or for a name no environment could have) gets 400 naming
    that field; nothing is saved or recorded."""
    seq = last_audit_seq(vault.services.engine)
    for body, field in BAD_POLICIES:
        error = error_of(web.put(f"{POLICIES}/production", json=body), 400)
        assert error["field"] == field, (body, error)
    assert error_of(web.put(f"{POLICIES}/prod.eu", json={}), 400)["field"] == "environment"
    assert web.get(POLICIES).json() == {"policies": []}
    assert actions_since(vault, seq) == []


def test_compliance_settings_are_shown_changed_and_checked(web: TestClient, vault: Vault) -> None:
    """The settings start at 1 approval and 7 reminder days, change field by field with a
    ``compliance.settings_updated`` entry, and bad values are refused by name."""
    assert web.get(SETTINGS).json() == {"root_rotation_approvals": 1, "rotation_reminder_days": 7}
    seq = last_audit_seq(vault.services.engine)
    changed = web.put(SETTINGS, json={"root_rotation_approvals": 2})
    assert changed.json() == {"root_rotation_approvals": 2, "rotation_reminder_days": 7}
    assert web.put(SETTINGS, json={"rotation_reminder_days": 0}).json() == {
        "root_rotation_approvals": 2,
        "rotation_reminder_days": 0,
    }
    assert actions_since(vault, seq) == ["compliance.settings_updated"] * 2
    for body, field in [
        ({"root_rotation_approvals": 3}, "root_rotation_approvals"),
        ({"rotation_reminder_days": 91}, "rotation_reminder_days"),
        ({"rotation_reminder_days": -1}, "rotation_reminder_days"),
        ({"rotation_reminder_days": "7"}, "rotation_reminder_days"),
        ({}, "root_rotation_approvals"),
    ]:
        assert error_of(web.put(SETTINGS, json=body), 400)["field"] == field
    assert web.get(SETTINGS).json()["rotation_reminder_days"] == 0


def test_inventory_lists_readable_secrets_with_metadata_and_records_no_read(
    web: TestClient, vault: Vault
) -> None:
    """The inventory has one row per current secret with its metadata, version, last
    rotation and violations; filters by project and environment; records no read."""
    web.put(inventory_path("web", "development", "API_KEY"), json={"owner": "dev team"})
    seq = last_audit_seq(vault.services.engine)
    rows = web.get(INVENTORY).json()["secrets"]
    assert [(r["project"], r["environment"], r["key"]) for r in rows] == [
        ("web", "development", "API_KEY"),
        ("web", "production", "db/password"),
    ]
    assert rows[0]["owner"] == "dev team" and rows[0]["current_version"] == 1
    assert rows[0]["last_rotated"].endswith("Z") and rows[0]["violations"] == []
    only = web.get(INVENTORY, params={"environment": "production"}).json()["secrets"]
    assert [r["key"] for r in only] == ["db/password"]
    assert web.get(INVENTORY, params={"project": "web"}).json()["secrets"] == rows
    assert error_of(web.get(INVENTORY, params={"project": "nope"}), 404)["field"] == "project"
    bad = web.get(INVENTORY, params={"project": "web", "environment": "a/b"})
    assert error_of(bad, 400)["field"] == "environment"
    assert actions_since(vault, seq) == []


def test_a_viewer_cannot_change_policies_or_settings_but_may_read_them(team: Team) -> None:
    """A viewer gets 403 for PUT/DELETE of a policy and PUT of the settings (recorded as
    access.denied), and may read the policies and settings."""
    viewer = member_token(team.client, team.owner, "viewer@acme.test", "viewer")
    as_viewer = bearer(viewer)
    assert team.client.put(f"{POLICIES}/staging", json={}, headers=as_viewer).status_code == 403
    assert team.client.delete(f"{POLICIES}/staging", headers=as_viewer).status_code == 403
    refused = team.client.put(SETTINGS, json={"rotation_reminder_days": 3}, headers=as_viewer)
    assert refused.status_code == 403
    assert team.client.get(POLICIES, headers=as_viewer).status_code == 200
    assert team.client.get(SETTINGS, headers=as_viewer).json()["rotation_reminder_days"] == 7
    assert team.get(POLICIES, team.owner).json() == {"policies": []}


def test_only_the_owner_lowers_root_rotation_approvals(team: Team) -> None:
    """An admin may require a second approver for root key rotation but not go back to one;
    the owner may."""
    admin = member_token(team.client, team.owner, "admin@acme.test", "admin")
    raised = team.client.put(SETTINGS, json={"root_rotation_approvals": 2}, headers=bearer(admin))
    assert raised.status_code == 200, raised.text
    lowered = team.client.put(SETTINGS, json={"root_rotation_approvals": 1}, headers=bearer(admin))
    assert lowered.status_code == 403
    assert team.get(SETTINGS, admin).json()["root_rotation_approvals"] == 2
    owner = team.client.put(
        SETTINGS, json={"root_rotation_approvals": 1}, headers=bearer(team.owner)
    )
    assert owner.json()["root_rotation_approvals"] == 1


def test_an_identity_without_read_access_sees_no_row_of_that_environment(team: Team) -> None:
    """A viewer narrowed to ``none`` on app/production sees app/development's secret in the
    inventory and the violations report but nothing of production, cannot ask for it by
    name (403), and cannot read or change a production secret's metadata."""
    client, owner = team.client, team.owner
    dev_secret = f"{API}/projects/app/environments/development/secrets/API_KEY"
    assert client.put(dev_secret, json={"value": "dev"}, headers=bearer(owner)).status_code == 200
    viewer = member_token(client, owner, "narrow@acme.test", "viewer")
    grant = {"member": "narrow@acme.test", "scope": "app:production:none"}
    assert client.post(f"{API}/grants", json=grant, headers=bearer(owner)).status_code == 201
    policy = {"required_fields": ["owner"], "allow_existing_violations": True}
    for env in ("production", "development"):
        assert (
            client.put(f"{POLICIES}/{env}", json=policy, headers=bearer(owner)).status_code == 200
        )
    seen = team.get(INVENTORY, viewer).json()["secrets"]
    assert [(r["environment"], r["key"]) for r in seen] == [("development", "API_KEY")]
    broken = team.get(f"{POLICIES}/violations", viewer).json()["secrets"]
    assert [(r["environment"], r["key"]) for r in broken] == [("development", "API_KEY")]
    owner_rows = team.get(INVENTORY, owner).json()["secrets"]
    assert ("production", "db/password") in [(r["environment"], r["key"]) for r in owner_rows]
    asked = team.get(INVENTORY, viewer, params={"project": "app", "environment": "production"})
    assert asked.status_code == 403
    metadata = inventory_path("app", "production", "db/password")
    assert team.get(metadata, viewer).status_code == 403
    change = client.put(metadata, json={"owner": "mallory"}, headers=bearer(viewer))
    assert change.status_code == 403
    assert team.get(metadata, owner).json()["owner"] is None
    assert SECRET.endswith("production/secrets/db/password")


def test_a_viewer_cannot_change_metadata_it_may_read(team: Team) -> None:
    """Read access shows a secret's metadata; changing it needs write access (403)."""
    viewer = member_token(team.client, team.owner, "reader@acme.test", "viewer")
    metadata = inventory_path("app", "production", "db/password")
    assert team.get(metadata, viewer).status_code == 200
    change = team.client.put(metadata, json={"owner": "me"}, headers=bearer(viewer))
    assert change.status_code == 403


def test_parse_inventory_change_keeps_only_the_fields_given() -> None:
    """A change names only the fields sent: unsent fields are not cleared."""
    change = parse_inventory_change({"owner": "ops"})
    assert dict(change.values) == {"owner": "ops"}
