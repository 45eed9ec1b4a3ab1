"""Separation of duties over the HTTP API (and the operator's root rotation) on every
backend: exporting an environment whose policy wants two people needs an approval that
someone other than the exporter granted, used once; rotating the root key where the
settings want two people needs a ``root.rotate`` approval; self-approval, other people's
approvals, reuse and bad input are refused with nothing changed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from coffer.bootstrap.operator import operator_vault
from coffer.domain.errors import ApprovalRequired
from coffer.services.root_rotation import RootRotation
from coffer.storage.tables import root_keys
from tests.integration.api_helpers import audit_entries, last_audit_seq, row_counts
from tests.integration.request_helpers import (
    ADA,
    APPROVALS,
    BEN,
    VALUE,
    People,
    approved_export,
    export_url,
    new_project,
    people_on,
    require_root_approval,
    set_policy,
    update_approval,
)
from tests.integration.team_helpers import API


@pytest.fixture(scope="module")
def people(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[People]:
    """acme with Ada and Ben (admins) and Vic (viewer), where exporting a production
    environment needs two people; shared by this module's tests."""
    with people_on(module_database_url, tmp_path_factory.mktemp("approvals")) as found:
        set_policy(found, export_approvals=2)
        yield found


@pytest.fixture
def project(people: People) -> str:
    """A project of this test's own."""
    return new_project(people)


def export(people: People, token: str, project: str, approval: str | None = None) -> Any:
    """Exports ``project``/production as JSON (with ``approval`` when given)."""
    params = {"format": "json"} | ({"approval": approval} if approval else {})
    return people.get(export_url(project), token, params=params)


def refused(answer: Any, project: str, phrase: str) -> None:
    """Asserts a 403 approval_required whose message holds ``phrase`` and says how."""
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert error["code"] == "approval_required"
    assert phrase in error["message"]
    how = f"coffer approvals request env.export {project}/production --reason"
    assert how in error["message"]


def ask(people: People, token: str, target: str) -> dict[str, Any]:
    """Asks for an export approval of ``target``; asserts 201 and returns it."""
    body = {"operation": "env.export", "target": target, "reason": "quarterly backup"}
    asked = people.post(APPROVALS, token, body)
    assert asked.status_code == 201, asked.text
    created: dict[str, Any] = asked.json()
    return created


def test_an_export_without_an_approval_is_refused_and_logged(people: People, project: str) -> None:
    """403 saying how to get an approval; no value is read, the refusal is logged."""
    seq = last_audit_seq(people.team.services.engine)
    refused(export(people, people.ada, project), project, "needs a second person's approval")
    entries = audit_entries(people.team.services.engine, seq)
    assert [e["action"] for e in entries] == ["access.denied"]
    assert entries[0]["environment"] == "production"
    staging = people.get(export_url(project, "staging"), people.ada)
    assert staging.status_code == 200  # the policy names production only


def test_a_machine_granted_production_exports_without_an_approval(
    people: People, project: str
) -> None:
    """A deploy machine with a read grant on production runs ``coffer run`` (an export)
    without a second approver: separation of duties binds people, not machines."""
    machine = {"name": f"deploy-{project}", "scopes": [f"{project}:production:read"]}
    assert people.post(f"{API}/machines", people.owner, machine).status_code == 201
    issued = people.post(f"{API}/machines/{machine['name']}/tokens", people.owner, {})
    assert issued.status_code == 201, issued.text
    answer = export(people, issued.json()["token"], project)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"db/password": VALUE}


def test_a_proper_approval_works_once(people: People, project: str) -> None:
    """Ada's approval, granted by Ben, lets Ada export once: ``approval.used`` is logged
    with the reads, and the approval then lists as used and is refused."""
    approval_id = approved_export(people, people.ada, people.ben, f"{project}/production")
    seq = last_audit_seq(people.team.services.engine)

    answer = export(people, people.ada, project, approval_id)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"db/password": VALUE}
    entries = audit_entries(people.team.services.engine, seq)
    assert [e["action"] for e in entries] == ["approval.used", "secret.read"]
    shown = people.get(f"{APPROVALS}/{approval_id}", people.ada).json()
    assert shown["status"] == "used" and shown["used_at"]
    assert (shown["requested_by"]["name"], shown["decided_by"]["name"]) == (ADA, BEN)
    refused(export(people, people.ada, project, approval_id), project, "is used, not approved")


def test_nobody_approves_their_own_approval(people: People, project: str) -> None:
    """Ada approving her own approval gets 403 (nothing changed); it stays pending and
    does not open the export."""
    approval_id = ask(people, people.ada, f"{project}/production")["id"]
    before = row_counts(people.team.services.engine)
    answer = people.post(f"{APPROVALS}/{approval_id}/approve", people.ada)
    assert answer.status_code == 403
    assert "you asked for this approval yourself" in answer.json()["error"]["message"]
    after = row_counts(people.team.services.engine)
    assert after == {**before, "audit_log": before["audit_log"] + 1}
    assert people.get(f"{APPROVALS}/{approval_id}", people.ada).json()["status"] == "pending"
    pending = export(people, people.ada, project, approval_id)
    refused(pending, project, "is pending, not approved")


def test_an_approval_its_requester_approved_in_the_database_is_refused(
    people: People, project: str
) -> None:
    """A row forged to say Ada approved her own approval does not open the export."""
    body = ask(people, people.ada, f"{project}/production")
    update_approval(
        people,
        body["id"],
        status="approved",
        decided_by=body["requested_by"]["id"],
        decided_at=time.time(),
    )
    forged = export(people, people.ada, project, body["id"])
    refused(forged, project, "not approved by a second person")


def test_someone_elses_approval_is_refused(people: People, project: str) -> None:
    """Ben's approval (granted by Ada) does not let Ada export, and stays unused."""
    approval_id = approved_export(people, people.ben, people.ada, f"{project}/production")
    refused(export(people, people.ada, project, approval_id), project, "asked for by someone else")
    assert people.get(f"{APPROVALS}/{approval_id}", people.ben).json()["status"] == "approved"
    assert export(people, people.ben, project, approval_id).status_code == 200


def test_an_approval_for_another_environment_or_past_its_day_is_refused(
    people: People, project: str
) -> None:
    """A staging approval does not open production; an approval older than its 24 hours
    reads as expired and is refused."""
    staging = approved_export(people, people.ada, people.ben, f"{project}/staging")
    other = export(people, people.ada, project, staging)
    refused(other, project, f"is for env.export of {project}/staging")
    approval_id = approved_export(people, people.ada, people.ben, f"{project}/production")
    update_approval(people, approval_id, expires_at=time.time() - 1)
    late = export(people, people.ada, project, approval_id)
    refused(late, project, "is expired, not approved")
    assert people.get(f"{APPROVALS}/{approval_id}", people.ada).json()["status"] == "expired"


def test_promoting_out_of_the_environment_needs_an_approval_too(
    people: People, project: str
) -> None:
    """Copying production's values elsewhere is an export by another name: refused without
    an approval (a dry run is not), allowed once with one."""
    promote = f"{API}/projects/{project}/promote"
    body = {"from": "production", "to": "development", "overwrite": True}
    refused(people.post(promote, people.ada, body), project, "needs a second person's approval")
    dry = people.post(promote, people.ada, {**body, "dry_run": True})
    assert dry.status_code == 200, dry.text
    approval_id = approved_export(people, people.ada, people.ben, f"{project}/production")
    done = people.post(promote, people.ada, body, params={"approval": approval_id})
    assert (done.status_code, done.json()["created"]) == (200, ["db/password"])


def test_a_denied_approval_keeps_its_note_in_the_log(people: People, project: str) -> None:
    """Ben denies with a note (kept in ``approval.denied``); it cannot be approved then."""
    approval_id = ask(people, people.ada, f"{project}/production")["id"]
    no_note = people.post(f"{APPROVALS}/{approval_id}/deny", people.ben, {})
    assert (no_note.status_code, no_note.json()["error"]["field"]) == (400, "note")
    seq = last_audit_seq(people.team.services.engine)
    denied = people.post(f"{APPROVALS}/{approval_id}/deny", people.ben, {"note": "not today"})
    assert (denied.status_code, denied.json()["status"]) == (200, "denied")
    entry = audit_entries(people.team.services.engine, seq)[0]
    assert entry["action"] == "approval.denied"
    assert entry["metadata"]["note"] == "not today"
    assert people.post(f"{APPROVALS}/{approval_id}/approve", people.ben).status_code == 409


def test_members_see_their_own_approvals_and_admins_all(people: People, project: str) -> None:
    """Vic (viewer) may ask for an export approval of what Vic reads and sees only Vic's;
    a viewer may not ask for a root rotation."""
    mine = ask(people, people.vic, f"{project}/staging")
    theirs = approved_export(people, people.ada, people.ben, f"{project}/production")

    def listed(token: str, **params: str) -> list[str]:
        found = people.get(APPROVALS, token, params=params).json()["approvals"]
        return [a["id"] for a in found if a["target"].startswith(f"{project}/")]

    assert listed(people.vic) == [mine["id"]]
    assert listed(people.ben) == [theirs, mine["id"]]
    assert listed(people.ben, status="approved") == [theirs]
    assert listed(people.ben, status="used") == []
    root = people.post(APPROVALS, people.vic, {"operation": "root.rotate", "reason": "x"})
    assert root.status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"operation": "env.delete", "target": "app/production"}, 400, "operation"),
        ({"operation": "env.export"}, 400, "target"),
        ({"operation": "env.export", "target": "app"}, 400, "target"),
        ({"operation": "env.export", "target": "nope/production"}, 404, "project"),
        ({"operation": "env.export", "target": "app/nope"}, 404, "environment"),
        ({"operation": "root.rotate", "target": "app/production"}, 400, "target"),
        ({"operation": "root.rotate", "reason": ""}, 400, "reason"),
    ],
)
def test_bad_approval_requests_change_nothing(
    people: People, body: dict[str, Any], status: int, field: str
) -> None:
    """Each bad field is named; nothing is stored or logged."""
    before = row_counts(people.team.services.engine)
    answer = people.post(APPROVALS, people.ada, {"reason": "why", **body})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field
    assert row_counts(people.team.services.engine) == before


def test_a_malformed_approval_id_on_an_export_names_the_parameter(
    people: People, project: str
) -> None:
    """``approval=`` that is not an id is 400 naming ``approval``."""
    answer = export(people, people.ada, project, "x" * 300)
    assert (answer.status_code, answer.json()["error"]["field"]) == (400, "approval")


def _generations(people: People) -> list[tuple[int, str]]:
    with people.team.services.engine.connect() as conn:
        rows = conn.execute(
            sa.select(root_keys.c.generation, root_keys.c.state).order_by(root_keys.c.generation)
        )
        return [(int(row[0]), str(row[1])) for row in rows]


def test_a_root_rotation_needs_a_second_persons_approval(people: People, project: str) -> None:
    """With root_rotation_approvals 2 the operator's rotation is refused without an
    approval, with a pending one and with an env.export one (nothing changed); Ada's
    root.rotate approval granted by Ben starts it once (``approval.used``)."""
    require_root_approval(people)
    root = people.post(APPROVALS, people.ada, {"operation": "root.rotate", "reason": "yearly"})
    assert root.status_code == 201, root.text
    root_id = root.json()["id"]
    export_id = approved_export(people, people.ada, people.ben, f"{project}/production")
    before = _generations(people)
    with operator_vault(people.team.settings) as vault:
        rotation = RootRotation(
            vault.engine, vault.opened.keks, vault.providers, vault.opened.audit_keys
        )
        for given, phrase in (
            ((), "needs a second person's approval in organization acme"),
            ((root_id,), "is pending, not approved"),
            ((export_id,), f"is for env.export of {project}/production"),
        ):
            with pytest.raises(ApprovalRequired) as missing:
                rotation.start(given)
            assert phrase in missing.value.message
            assert "coffer approvals request root.rotate" in missing.value.message
        assert _generations(people) == before
        assert people.post(f"{APPROVALS}/{root_id}/approve", people.ben).status_code == 200
        seq = last_audit_seq(people.team.services.engine)

        pending = rotation.start([root_id])

        assert _generations(people) == [*before, (pending.generation, "pending")]
        entries = audit_entries(people.team.services.engine, seq)
        assert [(e["action"], e["actor_kind"]) for e in entries] == [("approval.used", "system")]
        assert entries[0]["org_id"] == people.org_id
        rotation.run(pending, 100, lambda _count: None)
        with pytest.raises(ApprovalRequired):
            rotation.start([root_id])
    assert people.get(f"{APPROVALS}/{root_id}", people.ada).json()["status"] == "used"
