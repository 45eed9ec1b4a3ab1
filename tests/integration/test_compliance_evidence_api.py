"""``GET /api/v1/compliance/evidence`` on SQLite and PostgreSQL: bad dates refused naming the
parameter (nothing recorded), a backdated period's evidence holding only what happened in it
(versions, requests, reviews, offboardings, people and their roles at the period's end), and
the evidence of a period that ends today (key rotations, reads per week, the export recorded)
holding no secret value.

History is backdated by moving the times of rows, as the demo seeding of issue 9 will.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from coffer.storage.compliance_tables import access_requests, access_reviews, offboardings
from coffer.storage.compliance_tables import access_review_items as review_items
from coffer.storage.ids import new_id
from coffer.storage.tables import audit_log, organizations, secret_versions, users
from tests.integration.team_helpers import (
    API,
    OWNER_EMAIL,
    SECRET,
    Team,
    bearer,
    member_token,
)

EVIDENCE = f"{API}/compliance/evidence"
DAY = 86400.0
VALUE = "evidence-seeded-value-5c1f"


def day(offset_days: float) -> str:
    """The UTC date ``offset_days`` from now (negative: in the past)."""
    return datetime.fromtimestamp(time.time() + offset_days * DAY, tz=UTC).date().isoformat()


def evidence(team: Team, start: str, end: str) -> dict[str, Any]:
    """The evidence of ``start``..``end`` as acme's owner, asserting 200."""
    response = team.get(EVIDENCE, team.owner, params={"from": start, "to": end})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def exported(team: Team) -> list[dict[str, Any]]:
    """The metadata of every ``compliance.evidence_exported`` entry."""
    with team.services.engine.connect() as conn:
        return [
            row[0]
            for row in conn.execute(
                sa.select(audit_log.c.metadata).where(
                    audit_log.c.action == "compliance.evidence_exported"
                )
            )
        ]


def test_bad_periods_are_refused_naming_the_parameter(team: Team) -> None:
    """Unparsable dates, a backwards period, a future end, over three years, or a missing
    bound answer 422 naming the parameter, and no export is recorded."""
    cases = [
        ({"from": "2026-02-30", "to": day(0)}, "from", "must be a date YYYY-MM-DD"),
        ({"from": day(-1), "to": "soon"}, "to", "got 'soon'"),
        ({"from": day(-1), "to": day(-3)}, "from", "must be on or before to"),
        ({"from": day(-10), "to": day(2)}, "to", "must not be later than today"),
        ({"from": day(-4 * 365), "to": day(0)}, "from", "at most 3 years"),
        ({"to": day(0)}, "from", "must be a date"),
    ]
    for params, field, rule in cases:
        response = team.get(EVIDENCE, team.owner, params=params)
        assert response.status_code == 422, (params, response.text)
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_query", field), params
        assert rule in error["message"], (params, error)
    assert exported(team) == []


def test_a_viewer_may_not_export_evidence(team: Team) -> None:
    """Evidence needs the admin role: a viewer gets 403 and nothing is exported."""
    viewer = member_token(team.client, team.owner, "vic@acme.test", "viewer")
    response = team.get(EVIDENCE, viewer, params={"from": day(-7), "to": day(0)})
    assert response.status_code == 403
    assert exported(team) == []


def backdate(team: Team) -> dict[str, str]:
    """Builds two months of history: version 1 written 60 days ago (version 2 today), a
    member who joined 80 days ago as viewer and became admin today, a request decided and a
    review signed off 40 days ago, one member offboarded 45 days ago and one 10 days ago."""
    engine = team.services.engine
    now = time.time()
    member_token(team.client, team.owner, "mia@acme.test", "viewer")
    member_token(team.client, team.owner, "ola@acme.test", "viewer")
    written = team.client.put(SECRET, json={"value": VALUE}, headers=bearer(team.owner))
    assert written.status_code in (200, 201), written.text
    promoted = team.client.patch(
        f"{API}/members/mia@acme.test", json={"role": "admin"}, headers=bearer(team.owner)
    )
    assert promoted.status_code == 200, promoted.text
    with engine.begin() as conn:
        org_id = conn.execute(sa.select(organizations.c.id)).scalar_one()
        ids = dict(conn.execute(sa.select(users.c.email, users.c.id)).all())
        conn.execute(sa.update(users).values(created_at=now - 80 * DAY))
        conn.execute(
            sa.update(secret_versions)
            .where(secret_versions.c.version == 1)
            .values(created_at=now - 60 * DAY)
        )
        request_id = new_id()
        conn.execute(
            sa.insert(access_requests).values(
                id=request_id,
                org_id=org_id,
                requester_id=ids["ola@acme.test"],
                requester_kind="user",
                project="app",
                environment="production",
                access="read",
                reason="quarterly close <b>",
                duration_seconds=3600,
                status="approved",
                created_at=now - 41 * DAY,
                decided_by=ids[OWNER_EMAIL],
                decided_at=now - 40 * DAY,
                expires_at=now - 40 * DAY + 3600,
            )
        )
        review_id = new_id()
        conn.execute(
            sa.insert(access_reviews).values(
                id=review_id,
                org_id=org_id,
                name="Q2 access review",
                status="signed_off",
                created_by=ids[OWNER_EMAIL],
                created_at=now - 42 * DAY,
                signed_off_by=ids[OWNER_EMAIL],
                signed_off_at=now - 40 * DAY,
                digest="c0ffee" * 10 + "abcd",
            )
        )
        conn.execute(
            sa.insert(review_items).values(
                review_id=review_id,
                identity_id=ids["ola@acme.test"],
                identity_kind="user",
                identity_name="ola@acme.test",
                role="viewer",
                access=[{"project": "app", "access": "read"}],
                decision="keep",
                decided_by=ids[OWNER_EMAIL],
                decided_at=now - 40 * DAY,
            )
        )
        for email, days_ago in (("ned@acme.test", 45), ("ola@acme.test", 10)):
            conn.execute(
                sa.insert(offboardings).values(
                    id=new_id(),
                    org_id=org_id,
                    user_id=ids.get(email, new_id()),
                    email=email,
                    offboarded_by=ids[OWNER_EMAIL],
                    offboarded_at=now - days_ago * DAY,
                    summary={"tokens_revoked": 1},
                )
            )
        conn.execute(sa.delete(users).where(users.c.email == "ola@acme.test"))
    return {"request": request_id, "review": review_id}


def test_a_backdated_period_holds_only_what_happened_in_it(team: Team) -> None:
    """For a period 70 to 30 days ago: version 1 (not today's 2), the request, the review
    with its items and digest, the offboarding 45 days ago, and the people as they were at
    its end (mia still a viewer; ola, offboarded since, still listed)."""
    made = backdate(team)
    body = evidence(team, day(-70), day(-30))
    history = [(v["key"], v["version"], v["author"]) for v in body["rotation_history"]]
    assert history == [("db/password", 1, OWNER_EMAIL)]
    assert body["rotation_history"][0]["change"] == "created"
    assert [r["id"] for r in body["access_requests"]] == [made["request"]]
    request = body["access_requests"][0]
    assert (request["requester_name"], request["decided_by_name"]) == (
        "ola@acme.test",
        OWNER_EMAIL,
    )
    [review] = body["access_reviews"]
    assert review["id"] == made["review"] and review["digest"].startswith("c0ffee")
    assert [i["identity_name"] for i in review["items"]] == ["ola@acme.test"]
    assert [o["email"] for o in body["offboardings"]] == ["ned@acme.test"]
    people = {p["name"]: p for p in body["people"] if p["kind"] == "person"}
    assert people["mia@acme.test"]["role"] == "viewer"
    assert people[OWNER_EMAIL]["role"] == "owner"
    assert people["ola@acme.test"]["status"].startswith("offboarded ")
    assert "ned@acme.test" not in people
    today = evidence(team, day(-12), day(0))
    assert [(v["key"], v["version"]) for v in today["rotation_history"]] == [("db/password", 2)]
    assert {p["name"]: p["role"] for p in today["people"]}["mia@acme.test"] == "admin"
    assert today["access_requests"] == []
    assert [o["email"] for o in today["offboardings"]] == ["ola@acme.test"]


def test_evidence_of_today_counts_reads_and_key_rotations_without_any_value(
    team: Team,
) -> None:
    """A period ending today shows the inventory, reads per week, a data key rotation and
    its key versions, the matrix, grants and retention policy; the export is recorded and
    no secret value appears anywhere in the answer."""
    owner = bearer(team.owner)
    team.client.put(SECRET, json={"value": VALUE}, headers=owner)
    for _ in range(2):
        assert team.client.get(SECRET, headers=owner).status_code == 200
    rotation = f"{API}/projects/app/key-rotation"
    assert team.client.post(rotation, headers=owner).status_code == 200
    for _ in range(10):
        step = team.client.post(f"{rotation}/steps", json={"batch": 100}, headers=owner)
        assert step.status_code == 200, step.text
        if step.json()["done"]:
            break
    response = team.get(EVIDENCE, team.owner, params={"from": day(-14), "to": day(0)})
    assert response.status_code == 200, response.text
    assert VALUE not in response.text and "s3cret-value" not in response.text
    body = response.json()
    assert [s["key"] for s in body["inventory"]] == ["db/password"]
    assert body["inventory"][0]["current_version"] == 2
    assert sum(body["charts"]["reads_per_week"]) == 2
    assert len(body["charts"]["weeks"]) == 3
    assert body["charts"]["audit_events_per_week"]["secret"]
    assert [e["action"] for e in body["key_rotations"]["events"]] == ["key.rotated"]
    assert [(k["version"], k["current"]) for k in body["key_rotations"]["data_keys"]] == [(2, True)]
    assert {row["action"] for row in body["permission_matrix"]} >= {"secret.read", "audit.view"}
    assert "kept without limit" in body["retention"]["policy"]
    assert len(body["controls"]) == 8
    assert body["period"]["from"] == day(-14)
    assert_rendered_escaped(body)
    [record] = exported(team)
    assert record["from"].startswith(day(-14)) and record["secrets"] == 1
    assert json.loads(json.dumps(record))["controls_failing"] == body["summary"]["failing"]


def assert_rendered_escaped(body: dict[str, Any]) -> None:
    """Rendering the evidence with a key name and a chart label holding HTML (as a hostile
    server or a future rule change could send) shows them as escaped text, never markup."""
    from coffer.cli.evidence.report import render_index

    hostile = "<script>alert(1)</script>"
    body["inventory"][0]["key"] = hostile
    body["overdue"] = [body["inventory"][0]]
    body["charts"]["secrets_by_sensitivity"][hostile] = 1
    body["charts"]["audit_events_per_week"][hostile] = [1] * len(body["charts"]["weeks"])
    verify = {"ok": True, "command": "coffer audit verify", "lines": [hostile]}
    html = render_index(body, verify, [(hostile, hostile)])
    assert "<script" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6
