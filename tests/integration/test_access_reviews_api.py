"""Access review campaigns over the HTTP API, on both backends: the snapshot of every person
and machine with its access and last use, decisions that take effect at once, the refusals
(one's own line, identities removed since the start, undecided lines, a signed-off review),
and a sign-off digest that matches the audit log and a recomputation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from coffer.domain.access_reviews import review_digest
from coffer.storage import review_store
from coffer.storage.tables import audit_log
from tests.integration.api_helpers import audit_entries, last_audit_seq, row_counts
from tests.integration.team_helpers import (
    API,
    OWNER_EMAIL,
    SECRET,
    Team,
    bearer,
    member_token,
)

REVIEWS = f"{API}/access-reviews"
LEAD, DEV = "lead@acme.test", "dev@acme.test"


@dataclass
class World:
    """acme with an admin (``lead``), a viewer (``dev``) with two grants, a machine ``ci``
    that has read a secret, and a machine ``idle`` that never did anything."""

    team: Team
    lead: str
    dev: str
    ci_token: str

    def post(self, url: str, token: str, body: Any = None) -> Any:
        """A POST with ``token`` as bearer."""
        return self.team.client.post(url, json=body, headers=bearer(token))

    def review(self, review_id: str, token: str | None = None) -> dict[str, Any]:
        """The campaign's JSON (asserting 200)."""
        shown = self.team.get(f"{REVIEWS}/{review_id}", token or self.team.owner)
        assert shown.status_code == 200, shown.text
        body: dict[str, Any] = shown.json()
        return body

    def start(self, name: str = "Q1 review", **extra: Any) -> dict[str, Any]:
        """Starts a campaign as the owner (asserting 201)."""
        started = self.post(REVIEWS, self.team.owner, {"name": name, **extra})
        assert started.status_code == 201, started.text
        body: dict[str, Any] = started.json()
        return body

    def decide(self, review_id: str, identity: str, decision: str, token: str) -> Any:
        """POSTs a decision for one line."""
        return self.post(f"{REVIEWS}/{review_id}/items/{identity}", token, {"decision": decision})


def _machine(team: Team, name: str, **extra: Any) -> None:
    made = team.client.post(
        f"{API}/machines",
        json={"name": name, "scopes": ["app:production:read"], **extra},
        headers=bearer(team.owner),
    )
    assert made.status_code == 201, made.text


@pytest.fixture
def world(team: Team) -> World:
    """The team of ``World``."""
    lead = member_token(team.client, team.owner, LEAD, role="admin")
    dev = member_token(team.client, team.owner, DEV)
    for scope, extra in (("app:production:none", {}), ("app:staging:write", {"expires_in": "7d"})):
        granted = team.client.post(
            f"{API}/grants", json={"member": DEV, "scope": scope, **extra}, headers=bearer(lead)
        )
        assert granted.status_code == 201, granted.text
    _machine(team, "ci", allowed_ips=["203.0.113.0/24"], valid_before="2099-01-01T00:00:00Z")
    _machine(team, "idle")
    issued = team.client.post(f"{API}/machines/ci/tokens", json={}, headers=bearer(team.owner))
    ci_token: str = issued.json()["token"]
    assert team.get(SECRET, ci_token).status_code == 200
    return World(team, lead, dev, ci_token)


def _items(review: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["identity_name"]: item for item in review["items"]}


def _time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_campaign_lists_every_person_and_machine_with_access_and_last_use(world: World) -> None:
    """A campaign snapshots the owner, the admin, the viewer with her grants, and both
    machines with grants, allowed IPs, validity and last use (null for one never used)."""
    seq = last_audit_seq(world.team.services.engine)
    review = world.start("Q1 2026", due="2099-12-31")
    assert review["status"] == "open" and review["digest"] is None
    assert review["due_at"] == "2099-12-31T23:59:59.999Z" and review["overdue"] is False
    assert review["created_by_name"] == OWNER_EMAIL
    assert (review["items_total"], review["items_decided"]) == (5, 0)
    items = _items(review)
    assert list(items) == [DEV, LEAD, OWNER_EMAIL, "ci", "idle"]
    assert [items[n]["role"] for n in (OWNER_EMAIL, LEAD, DEV)] == ["owner", "admin", "viewer"]
    dev_grants = {(g["environment"], g["access"]): g for g in items[DEV]["grants"]}
    assert set(dev_grants) == {("production", "none"), ("staging", "write")}
    assert dev_grants[("production", "none")]["expires_at"] is None
    assert dev_grants[("staging", "write")]["expires_at"] is not None
    assert items[DEV]["mfa_enabled"] is False and items[DEV]["identity_kind"] == "user"
    ci = items["ci"]
    assert ci["identity_kind"] == "machine" and ci["role"] is None
    assert ci["grants"] == [
        {"project": "app", "environment": "production", "access": "read", "expires_at": None}
    ]
    assert ci["allowed_ips"] == ["203.0.113.0/24"]
    assert ci["valid_before"] == "2099-01-01T00:00:00.000Z"
    with world.team.services.engine.connect() as conn:
        ci_read_at = conn.execute(
            audit_log.select()
            .with_only_columns(audit_log.c.timestamp)
            .where(audit_log.c.actor_id == ci["identity_id"], audit_log.c.action == "secret.read")
        ).scalar_one()
    assert _time(ci["last_used_at"]) == pytest.approx(ci_read_at, abs=0.001)
    assert items["idle"]["last_used_at"] is None
    assert all(items[n]["last_used_at"] for n in (OWNER_EMAIL, LEAD, DEV))
    assert all(item["exists"] and item["decision"] is None for item in items.values())
    started = audit_entries(world.team.services.engine, seq)
    assert [e["action"] for e in started] == ["review.started"]
    metadata = dict(started[0]["metadata"])
    assert metadata.pop("due_at") == pytest.approx(_time(review["due_at"]), abs=0.001)
    assert metadata == {"review_id": review["id"], "name": "Q1 2026", "people": 3, "machines": 2}
    listed = world.team.get(REVIEWS, world.team.owner).json()["reviews"]
    assert [(r["id"], r["items_total"]) for r in listed] == [(review["id"], 5)]


def test_a_viewer_may_not_start_or_see_reviews(world: World) -> None:
    """Reviews are for admins and owners: a viewer gets 403 for starting and listing."""
    assert world.post(REVIEWS, world.dev, {"name": "mine"}).status_code == 403
    assert world.team.get(REVIEWS, world.dev).status_code == 403


def test_revoke_takes_effect_at_once_for_people_and_machines(world: World) -> None:
    """Revoking the owner is refused (409); revoking the viewer offboards her (her token
    stops working, an offboarding record says it came from the review); revoking the
    machine deletes it (its token stops); keep records the reviewer by id and name."""
    review = world.start()
    rid = review["id"]
    owner = world.decide(rid, OWNER_EMAIL, "revoke", world.lead)
    assert owner.status_code == 409
    assert "owner and cannot be offboarded" in owner.json()["error"]["message"]
    assert _items(world.review(rid))[OWNER_EMAIL]["decision"] is None
    revoked = world.decide(rid, DEV, "revoke", world.lead)
    assert revoked.status_code == 200, revoked.text
    body = revoked.json()
    assert body["effect"] == "offboarded"
    assert body["offboarding"]["via"] == "access_review"
    assert body["offboarding"]["review_id"] == rid
    assert body["offboarding"]["tokens_revoked"] == 1
    assert world.team.get(f"{API}/whoami", world.dev).status_code == 401
    assert world.team.get(SECRET, world.dev).status_code == 401
    members = world.team.get(f"{API}/members", world.team.owner).json()["members"]
    assert DEV not in {m["email"] for m in members}

    machine = world.decide(rid, "ci", "revoke", world.lead)
    assert machine.status_code == 200, machine.text
    assert (machine.json()["effect"], machine.json()["tokens_revoked"]) == ("machine_deleted", 1)
    assert world.team.get(SECRET, world.ci_token).status_code == 401

    kept = world.post(f"{REVIEWS}/{rid}/items/idle", world.lead, {"decision": "keep", "note": "x"})
    assert kept.status_code == 200 and kept.json()["effect"] == "kept"
    lines = _items(world.review(rid))
    assert lines["idle"]["decided_by_name"] == LEAD and lines["idle"]["note"] == "x"
    assert lines[DEV]["decision"] == "revoke" and lines[DEV]["exists"] is False
    assert world.review(rid)["revoked"] == 2
    again = world.decide(rid, DEV, "keep", world.lead)
    assert again.status_code == 409 and "revocation is final" in again.json()["error"]["message"]
    actions = [e["action"] for e in audit_entries(world.team.services.engine)]
    assert actions.count("review.decided") == 3
    assert "member.offboarded" in actions and "machine.deleted" in actions


def test_nobody_decides_their_own_line(world: World) -> None:
    """The admin deciding her own line gets 403 saying another admin must; the line stays
    undecided and the refusal is recorded as access.denied."""
    rid = world.start()["id"]
    refused = world.decide(rid, LEAD, "keep", world.lead)
    assert refused.status_code == 403
    assert "nobody decides their own line" in refused.json()["error"]["message"]
    assert _items(world.review(rid))[LEAD]["decision"] is None
    last = audit_entries(world.team.services.engine)[-1]
    assert (last["action"], last["result"]) == ("access.denied", "failure")
    revoke_self = world.decide(rid, LEAD, "revoke", world.lead)
    assert revoke_self.status_code == 403
    assert world.team.get(f"{API}/whoami", world.lead).status_code == 200


def test_an_identity_removed_since_the_start_cannot_be_kept(world: World) -> None:
    """After the viewer was removed, keeping her line is refused (409 naming her and saying
    she no longer exists) with nothing changed; revoke closes the line as already removed,
    offboarding nobody."""
    rid = world.start()["id"]
    removed = world.team.client.delete(f"{API}/members/{DEV}", headers=bearer(world.team.owner))
    assert removed.status_code == 204
    before, review_before = row_counts(world.team.services.engine), world.review(rid)
    refused = world.decide(rid, DEV, "keep", world.lead)
    assert refused.status_code == 409
    message = refused.json()["error"]["message"]
    assert DEV in message and "no longer exists" in message
    assert row_counts(world.team.services.engine) == before
    assert world.review(rid) == review_before
    closed = world.decide(rid, DEV, "revoke", world.lead)
    assert closed.status_code == 200 and closed.json()["effect"] == "already_removed"
    assert closed.json()["offboarding"] is None
    after = row_counts(world.team.services.engine)
    assert after["offboardings"] == before["offboardings"]
    assert after["audit_log"] == before["audit_log"] + 1


def test_sign_off_needs_every_line_and_its_digest_matches_the_log(world: World) -> None:
    """Sign-off is refused while lines are undecided (409 naming how many); once all are
    decided it stores a digest equal to the review.signed_off entry's, to a recomputation
    from the stored rows and to the SHA-256 of the evidence; afterwards nothing changes."""
    rid = world.start()["id"]
    world.decide(rid, LEAD, "keep", world.team.owner)
    early = world.post(f"{REVIEWS}/{rid}/sign-off", world.lead)
    assert early.status_code == 409
    assert "4 of 5 lines" in early.json()["error"]["message"]
    assert world.review(rid)["status"] == "open"
    assert world.team.get(f"{REVIEWS}/{rid}/evidence", world.team.owner).status_code == 409
    for name in (OWNER_EMAIL, DEV, "ci", "idle"):
        decision = "revoke" if name == "idle" else "keep"
        assert world.decide(rid, name, decision, world.lead).status_code == 200, name
    signed = world.post(f"{REVIEWS}/{rid}/sign-off", world.lead)
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert body["status"] == "signed_off" and body["signed_off_by_name"] == LEAD
    digest = body["digest"]
    assert len(digest) == 64

    engine = world.team.services.engine
    entry = audit_entries(engine)[-1]
    assert entry["action"] == "review.signed_off"
    assert entry["metadata"]["digest"] == digest
    assert (entry["metadata"]["kept"], entry["metadata"]["revoked"]) == (4, 1)
    with engine.connect() as conn:
        stored = review_store.find_review(conn, entry["org_id"], rid)
        assert stored is not None and stored.digest == digest
        assert review_digest(stored, review_store.review_items(conn, rid)) == digest
    evidence = world.team.get(f"{REVIEWS}/{rid}/evidence", world.team.owner)
    assert evidence.status_code == 200
    assert hashlib.sha256(evidence.content).hexdigest() == digest
    assert evidence.headers["x-coffer-digest"] == digest

    for late in (
        world.decide(rid, OWNER_EMAIL, "revoke", world.lead),
        world.post(f"{REVIEWS}/{rid}/sign-off", world.team.owner),
    ):
        assert late.status_code == 409
        assert "signed off; it cannot change" in late.json()["error"]["message"]
    assert world.review(rid)["digest"] == digest


def test_bad_input_is_refused_naming_the_field_and_changes_nothing(world: World) -> None:
    """An empty name, a past or unparsable due date, an unknown decision, an unknown review
    or line: clear errors naming the field, and no row written."""
    rid = world.start()["id"]
    before = row_counts(world.team.services.engine)
    cases = [
        (REVIEWS, {"name": " "}, 400, "name"),
        (REVIEWS, {"name": "x", "due": "2020-01-01"}, 400, "due"),
        (REVIEWS, {"name": "x", "due": "next week"}, 400, "due"),
        (f"{REVIEWS}/{rid}/items/{DEV}", {"decision": "maybe"}, 400, "decision"),
        (f"{REVIEWS}/{rid}/items/{DEV}", {"decision": "keep", "note": "a\x00b"}, 400, "note"),
        (f"{REVIEWS}/{rid}/items/nobody@acme.test", {"decision": "keep"}, 404, "identity"),
        (f"{REVIEWS}/01NOSUCHREVIEW/items/{DEV}", {"decision": "keep"}, 404, "id"),
        (f"{REVIEWS}/01NOSUCHREVIEW/sign-off", None, 404, "id"),
    ]
    for url, body, status, field in cases:
        answer = world.post(url, world.lead, body)
        assert answer.status_code == status, (url, body, answer.text)
        assert answer.json()["error"]["field"] == field, (url, body)
    assert row_counts(world.team.services.engine) == before
    listed = world.team.get(REVIEWS, world.lead, params={"from": "2026-02-01", "to": "2026-01-01"})
    assert listed.status_code == 422 and listed.json()["error"]["field"] == "to"
