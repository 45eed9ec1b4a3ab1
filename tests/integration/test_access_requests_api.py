"""Access requests over the HTTP API on every backend: a member asks for time-bound access,
an admin who is not the requester approves (a grant that works, then stops at its expiry)
or denies it, the requester may cancel it; self-approval, bad input and machines are
refused with nothing changed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.api_helpers import audit_entries, last_audit_seq, row_counts
from tests.integration.request_helpers import (
    ADA,
    REQUESTS,
    VALUE,
    VIC,
    People,
    age_request,
    expire_grant,
    grant,
    new_project,
    people_on,
    secret_url,
)
from tests.integration.team_helpers import API


@pytest.fixture(scope="module")
def people(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[People]:
    """acme with Ada and Ben (admins) and Vic (viewer), shared by this module's tests."""
    with people_on(module_database_url, tmp_path_factory.mktemp("requests")) as found:
        yield found


@pytest.fixture
def project(people: People) -> str:
    """A project of this test's own, which Vic's standing grant shuts Vic out of."""
    name = new_project(people)
    grant(people, VIC, f"{name}:none")
    return name


def ask(people: People, token: str, project: str, **fields: Any) -> dict[str, Any]:
    """Asks for read access to ``project``/production for 5 minutes (``fields``
    override); asserts 201 and returns the request."""
    body = {
        "project": project,
        "environment": "production",
        "access": "read",
        "reason": "incident 4711: checking the database password",
        "duration": "5m",
        **fields,
    }
    answer = people.post(REQUESTS, token, body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_another_admin_approves_and_the_access_ends_by_itself(people: People, project: str) -> None:
    """Vic reads nothing; after Ada approves Vic reads production (not staging); once the
    grant's time has passed Vic reads nothing again and the request reads as expired."""
    production = secret_url(project, "production")
    assert people.get(production, people.vic).status_code == 403
    request = ask(people, people.vic, project)
    assert request["status"] == "pending"
    assert request["requester"] == {"id": request["requester"]["id"], "name": VIC, "kind": "user"}
    assert people.get(production, people.vic).status_code == 403
    seq = last_audit_seq(people.team.services.engine)

    approved = people.post(f"{REQUESTS}/{request['id']}/approve", people.ada, {"note": "ok"})

    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["status"], body["decided_by"]["name"], body["note"]) == ("approved", ADA, "ok")
    assert body["grant_id"] and body["expires_at"]
    entries = audit_entries(people.team.services.engine, seq)
    assert [e["action"] for e in entries] == ["request.approved", "grant.created"]
    assert (entries[1]["project"], entries[1]["environment"]) == (project, "production")
    read = people.get(production, people.vic)
    assert (read.status_code, read.json()["value"]) == (200, VALUE)
    assert people.get(secret_url(project, "staging"), people.vic).status_code == 403
    grants = people.get(f"{API}/grants", people.owner).json()["grants"]
    assert [g["id"] for g in grants if g["project"] == project and g["expires_at"]] == [
        body["grant_id"]
    ]

    expire_grant(people, request["id"])

    assert people.get(production, people.vic).status_code == 403
    shown = people.get(f"{REQUESTS}/{request['id']}", people.vic).json()
    assert shown["status"] == "expired"
    listed = people.get(REQUESTS, people.ada, params={"status": "expired"}).json()
    assert request["id"] in [r["id"] for r in listed["requests"]]


def test_write_access_lets_the_requester_write_until_it_ends(people: People, project: str) -> None:
    """An approved write request lets a viewer write where their role would not."""
    production = secret_url(project, "production")
    request = ask(people, people.vic, project, access="write", duration="1h")
    assert people.post(f"{REQUESTS}/{request['id']}/approve", people.ben).status_code == 200
    written = people.put(production, people.vic, {"value": "rotated"})
    assert written.status_code == 200, written.text
    expire_grant(people, request["id"])
    assert people.put(production, people.vic, {"value": "again"}).status_code == 403


@pytest.mark.parametrize("requester", ["ada", "owner"])
def test_nobody_approves_their_own_request(people: People, project: str, requester: str) -> None:
    """An admin, and even the owner, who asked gets 403 with a clear message; the request
    stays pending, no grant is made, and the refusal is in the log."""
    token = getattr(people, requester)
    request = ask(people, token, project)
    before = row_counts(people.team.services.engine)
    seq = last_audit_seq(people.team.services.engine)

    answer = people.post(f"{REQUESTS}/{request['id']}/approve", token)

    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "access_denied"
    assert "you asked for this access request yourself" in error["message"]
    after = row_counts(people.team.services.engine)
    assert after == {**before, "audit_log": before["audit_log"] + 1}
    assert [e["action"] for e in audit_entries(people.team.services.engine, seq)] == [
        "access.denied"
    ]
    assert people.get(f"{REQUESTS}/{request['id']}", token).json()["status"] == "pending"
    denied = people.post(f"{REQUESTS}/{request['id']}/deny", token, {"note": "no"})
    assert denied.status_code == 403


def test_a_denied_request_grants_nothing(people: People, project: str) -> None:
    """Ben denies with a note; Vic still reads nothing, and the request cannot be approved
    afterwards (409)."""
    request = ask(people, people.vic, project)
    denied = people.post(f"{REQUESTS}/{request['id']}/deny", people.ben, {"note": "use staging"})
    assert denied.status_code == 200, denied.text
    assert (denied.json()["status"], denied.json()["note"]) == ("denied", "use staging")
    assert denied.json()["grant_id"] is None
    assert people.get(secret_url(project, "production"), people.vic).status_code == 403
    again = people.post(f"{REQUESTS}/{request['id']}/approve", people.ada)
    assert again.status_code == 409
    assert "is denied, not pending" in again.json()["error"]["message"]


def test_a_denial_must_say_why_and_only_admins_decide(people: People, project: str) -> None:
    """Denying without a note is 400 naming ``note``; a viewer may not decide at all; the
    request stays pending."""
    request = ask(people, people.vic, project)
    for body in ({}, {"note": ""}, {"note": "a\nb"}):
        answer = people.post(f"{REQUESTS}/{request['id']}/deny", people.ben, body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["field"] == "note"
    hers = ask(people, people.ada, project)
    by_viewer = people.post(f"{REQUESTS}/{hers['id']}/approve", people.vic)
    assert by_viewer.status_code == 403
    assert "needs the admin role" in by_viewer.json()["error"]["message"]
    for found in (request, hers):
        shown = people.get(f"{REQUESTS}/{found['id']}", people.ada).json()
        assert shown["status"] == "pending"


def test_the_requester_cancels_and_nobody_else_does(people: People, project: str) -> None:
    """Ada (an admin) may not cancel Vic's request (she denies instead; the refusal is
    logged as access.denied); Vic may; a cancelled request cannot be approved."""
    request = ask(people, people.vic, project)
    seq = last_audit_seq(people.team.services.engine)
    assert people.post(f"{REQUESTS}/{request['id']}/cancel", people.ada).status_code == 403
    cancelled = people.post(f"{REQUESTS}/{request['id']}/cancel", people.vic)
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    assert people.post(f"{REQUESTS}/{request['id']}/approve", people.ada).status_code == 409
    assert people.post(f"{REQUESTS}/{request['id']}/cancel", people.vic).status_code == 409
    actions = [e["action"] for e in audit_entries(people.team.services.engine, seq)]
    assert actions == ["access.denied", "request.cancelled"]


def test_a_pending_request_older_than_a_week_expires(people: People, project: str) -> None:
    """Seven days on, a pending request lists as expired and cannot be approved."""
    request = ask(people, people.vic, project)
    age_request(people, request["id"], 7 * 86400 + 1)
    assert people.get(f"{REQUESTS}/{request['id']}", people.vic).json()["status"] == "expired"
    pending = people.get(REQUESTS, people.ada, params={"status": "pending"}).json()
    assert request["id"] not in [r["id"] for r in pending["requests"]]
    answer = people.post(f"{REQUESTS}/{request['id']}/approve", people.ada)
    assert answer.status_code == 409
    assert "expired" in answer.json()["error"]["message"]
    assert people.get(secret_url(project, "production"), people.vic).status_code == 403


def test_members_see_their_own_requests_and_admins_all(people: People, project: str) -> None:
    """Vic lists and opens only Vic's requests; Ada lists everyone's; filters work."""
    mine = ask(people, people.vic, project)
    hers = ask(people, people.ada, project, environment=None, access="write")
    assert hers["environment"] is None

    def listed(token: str, **params: str) -> list[str]:
        found = people.get(REQUESTS, token, params=params).json()["requests"]
        return [r["id"] for r in found if r["project"] == project]

    assert listed(people.vic) == [mine["id"]]
    assert all(
        r["requester"]["name"] == VIC for r in people.get(REQUESTS, people.vic).json()["requests"]
    )
    assert people.get(f"{REQUESTS}/{hers['id']}", people.vic).status_code == 404
    assert listed(people.ada) == [hers["id"], mine["id"]]
    assert listed(people.ada, status="denied") == []
    assert listed(people.ada, status="pending") == [hers["id"], mine["id"]]
    bad = people.get(REQUESTS, people.ada, params={"status": "maybe"})
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "status")


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"project": "nope"}, 404, "project"),
        ({"environment": "nope"}, 404, "environment"),
        ({"project": "../x"}, 400, "project"),
        ({"reason": ""}, 400, "reason"),
        ({"reason": "x" * 501}, 400, "reason"),
        ({"reason": "two\nlines"}, 400, "reason"),
        ({"duration": "1m"}, 400, "duration"),
        ({"duration": "31d"}, 400, "duration"),
        ({"duration": "forever"}, 400, "duration"),
        ({"access": "none"}, 400, "access"),
        ({"access": "owner"}, 400, "access"),
    ],
)
def test_bad_requests_change_nothing(
    people: People, fields: dict[str, Any], status: int, field: str
) -> None:
    """Unknown places are 404 and bad fields 400, each naming the field; nothing is
    stored or logged."""
    before = row_counts(people.team.services.engine)
    body = {
        "project": "app",
        "environment": "production",
        "access": "read",
        "reason": "why not",
        "duration": "1h",
        **fields,
    }
    answer = people.post(REQUESTS, people.vic, body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field
    assert row_counts(people.team.services.engine) == before


def test_a_machine_cannot_ask_for_access(people: People, project: str) -> None:
    """Machine identities get their access from an admin, never by request."""
    name = f"ci-{uuid.uuid4().hex[:8]}"
    created = people.post(
        f"{API}/machines", people.owner, {"name": name, "scopes": [f"{project}:staging:read"]}
    )
    assert created.status_code == 201, created.text
    token = people.post(f"{API}/machines/{name}/tokens", people.owner, {}).json()["token"]
    body = {"project": project, "environment": "production", "reason": "deploy", "duration": "1h"}
    answer = people.post(REQUESTS, token, body)
    assert answer.status_code == 403
    assert "only people may request access" in answer.json()["error"]["message"]


def test_a_standing_grant_on_the_same_place_is_not_replaced(people: People, project: str) -> None:
    """Approving over Vic's standing ``none`` on production would erase it for good: 409,
    and Vic still reads nothing."""
    grant(people, VIC, f"{project}:production:none")
    request = ask(people, people.vic, project)
    answer = people.post(f"{REQUESTS}/{request['id']}/approve", people.ada)
    assert answer.status_code == 409
    message = answer.json()["error"]["message"]
    assert f"standing none grant on {project}/production" in message
    assert people.get(f"{REQUESTS}/{request['id']}", people.vic).json()["status"] == "pending"
    assert people.get(secret_url(project, "production"), people.vic).status_code == 403


def test_a_time_bound_grant_on_the_same_place_is_not_replaced(people: People, project: str) -> None:
    """Approving over Vic's time-bound ``none`` on production would replace it (and its
    end): 409 naming it, the grant unchanged, the request pending, no audit entry."""
    answer = people.post(
        f"{API}/grants",
        people.owner,
        {"member": VIC, "scope": f"{project}:production:none", "expires_in": "1h"},
    )
    assert answer.status_code == 201, answer.text
    before = answer.json()
    request = ask(people, people.vic, project)
    seq = last_audit_seq(people.team.services.engine)
    refused = people.post(f"{REQUESTS}/{request['id']}/approve", people.ada)
    assert refused.status_code == 409
    message = refused.json()["error"]["message"]
    assert f"time-bound none grant on {project}/production (until " in message
    assert audit_entries(people.team.services.engine, seq) == []
    grants = people.get(f"{API}/grants", people.owner).json()["grants"]
    assert before in grants
    assert people.get(f"{REQUESTS}/{request['id']}", people.vic).json()["status"] == "pending"
    assert people.get(secret_url(project, "production"), people.vic).status_code == 403


def test_an_expired_grant_on_the_same_place_does_not_block(people: People, project: str) -> None:
    """A grant on that place that has already ended is no reason to refuse: approved."""
    first = ask(people, people.vic, project)
    assert people.post(f"{REQUESTS}/{first['id']}/approve", people.ada).status_code == 200
    expire_grant(people, first["id"])
    second = ask(people, people.vic, project)
    answer = people.post(f"{REQUESTS}/{second['id']}/approve", people.ada)
    assert answer.status_code == 200, answer.text
    assert people.get(secret_url(project, "production"), people.vic).status_code == 200


def test_unknown_and_malformed_ids_are_refused(people: People) -> None:
    """A well-formed unknown id is 404, a malformed one 400 naming ``id``."""
    unknown = people.get(f"{REQUESTS}/01ARZ3NDEKTSV4RRFFQ69G5FAV", people.ada)
    assert unknown.status_code == 404
    malformed = people.post(f"{REQUESTS}/not-an-id/approve", people.ada)
    assert (malformed.status_code, malformed.json()["error"]["field"]) == (400, "id")
