"""The rotation schedule, flags, reminders and the random rotator over the HTTP API, on SQLite
and PostgreSQL.

Organization acme (``team``) has project ``app`` with ``db/password`` in production; each test
adds what it needs and ages versions in the database instead of waiting for days to pass.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from coffer.config import Settings
from coffer.domain.models import CallContext
from coffer.storage.compliance_tables import rotation_flags, rotation_notices, secret_rotators
from coffer.storage.tables import audit_log
from tests.integration.api_helpers import row_counts
from tests.integration.rotation_helpers import (
    ROTATION,
    age,
    by_key,
    expose,
    put,
    secret_row,
    secret_url,
    set_period,
    set_policy,
)
from tests.integration.team_helpers import (
    API,
    Team,
    bearer,
    create_second_org,
    login,
    member_token,
)
from tests.integration.test_webhooks import Receiver, acme_opener, add_hook

DB = "app/production/db/password"


def entries(team: Team, token: str, since: int = 0, action: str | None = None) -> list[Any]:
    """Audit entries after ``since`` (of ``action`` only, when given), oldest first."""
    query = sa.select(audit_log).where(audit_log.c.seq > since).order_by(audit_log.c.seq)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    with team.services.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def last_seq(team: Team) -> int:
    """The newest audit entry's sequence number."""
    with team.services.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar_one() or 0)


def org_of(team: Team, token: str) -> str:
    """The organization id of ``token``'s identity."""
    return team.services.auth.authenticate(token).org_id


def get(team: Team, path: str, token: str | None = None, **params: Any) -> dict[str, Any]:
    """A GET on the rotation API asserting 200."""
    response = team.client.get(
        f"{ROTATION}/{path}", params=params, headers=bearer(token or team.owner)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def post(team: Team, path: str, body: Any = None, token: str | None = None) -> Any:
    """A POST on the rotation API (the response)."""
    return team.client.post(f"{ROTATION}/{path}", json=body, headers=bearer(token or team.owner))


@pytest.fixture
def seeded(team: Team) -> Team:
    """acme with four secrets in every state a schedule can give:

    * ``app/production/db/password``: its own 30-day period, 40 days old: overdue;
    * ``app/production/API_KEY``: production's 90-day policy, 85 days old: due (7-day window);
    * ``app/production/FRESH``: production's policy, new: ok;
    * ``app/staging/NO_PERIOD``: no period, a year old: ok.
    """
    engine, owner = team.services.engine, team.owner
    put(team.client, owner, "app", "production", "API_KEY", "api-key-v1")
    put(team.client, owner, "app", "production", "FRESH", "fresh-v1")
    put(team.client, owner, "app", "staging", "NO_PERIOD", "no-period-v1")
    set_period(engine, "app", "production", "db/password", 30)
    set_policy(engine, org_of(team, owner), "production", 90)
    age(engine, "app", "production", "db/password", 40)
    age(engine, "app", "production", "API_KEY", 85)
    age(engine, "app", "staging", "NO_PERIOD", 365)
    return team


def test_schedule_gives_each_secret_its_period_source_next_due_and_state(seeded: Team) -> None:
    """The schedule lists every secret with the period (the secret's own before the
    policy's), when it is next due and its state, most urgent first; reading it records
    no secret.read. ``due`` keeps the secrets due, overdue or to rotate now; ``overdue=true``
    drops the merely due; ``project`` limits both to one project."""
    since = last_seq(seeded)
    body = get(seeded, "schedule")
    assert body["reminder_days"] == 7 and body["generated_at"].endswith("Z")
    keys = [f"{s['project']}/{s['environment']}/{s['key']}" for s in body["secrets"]]
    assert keys == [DB, "app/production/API_KEY", "app/production/FRESH", "app/staging/NO_PERIOD"]
    found = by_key(body)
    overdue = found[DB]
    assert (overdue["state"], overdue["period_days"], overdue["period_source"]) == (
        "overdue",
        30,
        "secret",
    )
    assert overdue["days_left"] == -10 and overdue["version"] == 1
    assert overdue["why"].startswith("overdue since ") and overdue["why"].endswith("(10 days)")
    assert overdue["exposures"] == [] and overdue["flags"] == [] and overdue["rotator"] is None
    due = found["app/production/API_KEY"]
    assert (due["state"], due["period_days"], due["period_source"], due["days_left"]) == (
        "due",
        90,
        "policy",
        4,
    )
    fresh = found["app/production/FRESH"]
    assert (fresh["state"], fresh["period_source"], fresh["why"]) == ("ok", "policy", "")
    none = found["app/staging/NO_PERIOD"]
    assert (none["state"], none["period_days"], none["next_due"]) == ("ok", None, None)
    assert "secret.read" not in [e["action"] for e in entries(seeded, seeded.owner, since)]
    assert list(by_key(get(seeded, "due"))) == [DB, "app/production/API_KEY"]
    assert list(by_key(get(seeded, "due", overdue="true"))) == [DB]
    put(seeded.client, seeded.owner, "app", "staging", "LATE", "late")
    set_period(seeded.services.engine, "app", "staging", "LATE", 1)
    age(seeded.services.engine, "app", "staging", "LATE", 2)
    seeded.client.post(f"{API}/projects", json={"name": "other"}, headers=bearer(seeded.owner))
    assert list(by_key(get(seeded, "due", project="app", overdue="1"))) == [
        DB,
        "app/staging/LATE",
    ]
    assert get(seeded, "due", project="other")["secrets"] == []


def test_exposed_and_flagged_secrets_are_rotate_now_until_a_new_version(seeded: Team) -> None:
    """A scan's exposure of the current version and an admin's flag make a secret ``rotate
    now`` with the location and the note; an exposure of an older version does not count,
    and writing a new version resolves both."""
    engine, owner = seeded.services.engine, seeded.owner
    put(seeded.client, owner, "app", "staging", "TOKEN", "token-v1")
    put(seeded.client, owner, "app", "staging", "TOKEN", "token-v2")
    expose(engine, "app", "staging", "TOKEN", "old/leak.py:3", version=1)
    expose(engine, "app", "staging", "NO_PERIOD", "src/settings.py:12")
    since = last_seq(seeded)
    flagged = post(
        seeded,
        "flags",
        {"project": "app", "environment": "staging", "key": "TOKEN", "note": "pasted in chat"},
    )
    assert flagged.status_code == 201, flagged.text
    flag = flagged.json()
    assert (flag["key"], flag["version"], flag["reason"], flag["detail"]) == (
        "TOKEN",
        2,
        "manual",
        "pasted in chat",
    )
    [audited] = entries(seeded, owner, since, "rotation.flagged")
    assert (audited["key"], audited["metadata"]) == (
        "TOKEN",
        {"version": 2, "flag": "manual", "note": "pasted in chat"},
    )
    found = by_key(get(seeded, "due", overdue="true"))
    token, leaked = found["app/staging/TOKEN"], found["app/staging/NO_PERIOD"]
    assert token["state"] == "rotate now" and token["exposures"] == []
    assert [(f["reason"], f["detail"], f["version"]) for f in token["flags"]] == [
        ("manual", "pasted in chat", 2)
    ]
    assert token["why"] == "flagged for rotation (manual: pasted in chat)"
    assert leaked["state"] == "rotate now" and leaked["schedule_state"] == "ok"
    assert [e["location"] for e in leaked["exposures"]] == ["src/settings.py:12"]
    assert leaked["why"].startswith("exposed at src/settings.py:12 (generic-password, ")
    assert list(found)[:2] == ["app/staging/NO_PERIOD", "app/staging/TOKEN"]
    put(seeded.client, owner, "app", "staging", "TOKEN", "token-v3")
    put(seeded.client, owner, "app", "staging", "NO_PERIOD", "no-period-v2")
    after = by_key(get(seeded, "schedule"))
    assert after["app/staging/TOKEN"]["state"] == "ok"
    assert after["app/staging/NO_PERIOD"]["state"] == "ok"


def test_viewers_see_what_they_may_read_and_bad_input_is_refused(seeded: Team) -> None:
    """A viewer may neither flag nor send reminders, and kept out of production sees only
    the other environments; an unknown project is 404 naming it, a project none of whose
    environments the caller may read is 403. A missing or bad note, an unknown secret and a
    bad ``overdue`` value are refused naming the field; nothing is flagged."""
    viewer = member_token(seeded.client, seeded.owner, "v@acme.test", "viewer")
    target = {"project": "app", "environment": "production", "key": "db/password"}
    assert post(seeded, "flags", {**target, "note": "x"}, token=viewer).status_code == 403
    assert post(seeded, "notify", token=viewer).status_code == 403
    for note in (None, "", "  ", "n" * 301, "two\nlines"):
        response = post(seeded, "flags", {**target, "note": note})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] == "note"
    unknown = post(seeded, "flags", {**target, "key": "NOPE", "note": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "key"
    bad_key = post(seeded, "flags", {**target, "key": "../x", "note": "x"})
    assert bad_key.status_code == 400 and bad_key.json()["error"]["field"] == "key"
    bad = seeded.client.get(
        f"{ROTATION}/due", params={"overdue": "maybe"}, headers=bearer(seeded.owner)
    )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "overdue"
    with seeded.services.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(rotation_flags)).scalar_one() == 0
        )
    grant = {"member": "v@acme.test", "scope": "app:production:none"}
    response = seeded.client.post(f"{API}/grants", json=grant, headers=bearer(seeded.owner))
    assert response.status_code == 201, response.text
    seen = by_key(get(seeded, "schedule", token=viewer))
    assert list(seen) == ["app/staging/NO_PERIOD"]
    assert get(seeded, "due", token=viewer)["secrets"] == []
    missing = seeded.client.get(
        f"{ROTATION}/schedule", params={"project": "nosuch"}, headers=bearer(viewer)
    )
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "project"
    closed = {"member": "v@acme.test", "scope": "app:none"}
    seeded.client.post(f"{API}/grants", json=closed, headers=bearer(seeded.owner))
    denied = seeded.client.get(f"{ROTATION}/due", params={"project": "app"}, headers=bearer(viewer))
    assert denied.status_code == 403, denied.text


def _notices(team: Team, since: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, project/env/key, metadata) of the reminders written after ``since``."""
    return [
        (e["action"], f"{e['project']}/{e['environment']}/{e['key']}", e["metadata"])
        for e in entries(team, team.owner, since)
        if e["action"] in ("rotation.due", "rotation.overdue")
    ]


def test_reminders_are_sent_once_per_version_and_state(seeded: Team) -> None:
    """``notify`` writes one rotation.overdue for an overdue secret and for one to rotate now
    (at once), one rotation.due for a due one, each once; a new version that falls overdue
    again is reminded again."""
    engine = seeded.services.engine
    expose(engine, "app", "staging", "NO_PERIOD", "src/settings.py:12")
    since = last_seq(seeded)
    response = post(seeded, "notify")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["due"], body["overdue"]) == (1, 2)
    assert sorted((n["event"], n["key"], n["state"]) for n in body["notices"]) == [
        ("rotation.due", "API_KEY", "due"),
        ("rotation.overdue", "NO_PERIOD", "rotate now"),
        ("rotation.overdue", "db/password", "overdue"),
    ]
    sent = {where: (action, meta) for action, where, meta in _notices(seeded, since)}
    action, meta = sent[DB]
    assert action == "rotation.overdue"
    assert (meta["version"], meta["state"], meta["period_days"], meta["period_source"]) == (
        1,
        "overdue",
        30,
        "secret",
    )
    assert meta["why"].startswith("overdue since ") and isinstance(meta["next_due"], int)
    assert sent["app/staging/NO_PERIOD"][1]["why"].startswith("exposed at src/settings.py:12")
    assert sent["app/production/API_KEY"][0] == "rotation.due"
    again = last_seq(seeded)
    assert post(seeded, "notify").json() == {"due": 0, "overdue": 0, "notices": []}
    assert _notices(seeded, again) == []
    put(seeded.client, seeded.owner, "app", "staging", "NO_PERIOD", "no-period-v2")
    set_period(engine, "app", "staging", "NO_PERIOD", 10)
    age(engine, "app", "staging", "NO_PERIOD", 11)
    later = post(seeded, "notify").json()
    assert [(n["key"], n["version"], n["event"]) for n in later["notices"]] == [
        ("NO_PERIOD", 2, "rotation.overdue")
    ]
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(rotation_notices)).scalar_one() == 4
        )


def test_the_reminder_job_covers_every_organization(seeded: Team) -> None:
    """Without a caller (the server's job) reminders go to every organization, recorded by
    the system in each one's log; the job is registered unless its interval is 0."""
    services, settings = seeded.services, seeded.settings
    create_second_org(services, settings, "rival", "owner@rival.test")
    rival = login(seeded.client, "owner@rival.test")["token"]
    seeded.client.post(f"{API}/projects", json={"name": "app"}, headers=bearer(rival))
    put(seeded.client, rival, "app", "staging", "RIVAL_KEY", "rival")
    rival_org = org_of(seeded, rival)
    set_period(services.engine, "app", "staging", "RIVAL_KEY", 5, rival_org)
    age(services.engine, "app", "staging", "RIVAL_KEY", 6, rival_org)
    since = last_seq(seeded)
    sent = services.rotation.notify(None)
    assert sorted((n.key, n.state.value) for n in sent) == [
        ("API_KEY", "due"),
        ("RIVAL_KEY", "overdue"),
        ("db/password", "overdue"),
    ]
    written = entries(seeded, seeded.owner, since)
    assert {(e["key"], e["org_id"], e["actor_kind"], e["actor_id"]) for e in written} == {
        ("API_KEY", org_of(seeded, seeded.owner), "system", None),
        ("db/password", org_of(seeded, seeded.owner), "system", None),
        ("RIVAL_KEY", rival_org, "system", None),
    }
    assert "rotation-reminders" in services.background.names
    from coffer.bootstrap import background_jobs

    quiet = settings.with_overrides(rotation_check_seconds=0)
    jobs = background_jobs(quiet, services.audit, services.audit.sealer, rotation=services.rotation)
    assert "rotation-reminders" not in jobs.names


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A recording HTTP receiver on 127.0.0.1."""
    made = Receiver()
    yield made
    made.close()


def test_a_webhook_subscribed_to_rotation_events_receives_the_reminder(
    settings: Settings, receiver: Receiver
) -> None:
    """A webhook subscribed to ``rotation.*`` is sent the rotation.overdue reminder of an
    overdue secret (names and dates, never the value)."""
    with acme_opener(settings) as open_acme:
        acme = open_acme()
        hook = add_hook(acme, f"{receiver.url}/rotation", ["rotation.*"])
        engine = acme.services.engine
        set_period(engine, "app", "production", "db/password", 30)
        age(engine, "app", "production", "db/password", 31)
        ctx = CallContext(actor=acme.services.auth.authenticate(acme.owner), source_ip="127.0.0.1")
        [notice] = acme.services.rotation.notify(ctx)
        assert notice.state.value == "overdue"
        acme.deliver()
        [request] = receiver.wait_for(1)
    body = json.loads(request.body)
    assert request.path == "/rotation" and body["event"] == "rotation.overdue"
    entry = body["entry"]
    assert (entry["project"], entry["environment"], entry["key"]) == (
        "app",
        "production",
        "db/password",
    )
    assert entry["metadata"]["state"] == "overdue" and entry["metadata"]["version"] == 1
    assert "s3cret-value" not in request.body.decode()
    assert hook["events"] == ["rotation.*"]


ROTATOR = f"{ROTATION}/rotators/app/staging/svc/TOKEN"


def test_random_rotator_configures_rotates_and_is_removed(team: Team) -> None:
    """A random rotator is configured (rotation.configured), shown, run (a new version of
    the configured length and alphabet, commented, with rotation.completed naming it; the
    answer never holds the value), then removed."""
    put(team.client, team.owner, "app", "staging", "svc/TOKEN", "token-v1")
    since = last_seq(team)
    spec = {"kind": "random", "length": 40, "alphabet": "hex"}
    response = team.client.put(ROTATOR, json=spec, headers=bearer(team.owner))
    assert response.status_code == 200, response.text
    configured = response.json()
    assert (configured["kind"], configured["config"]) == (
        "random",
        {"length": 40, "alphabet": "hex"},
    )
    assert configured["last_run_at"] is None and configured["key"] == "svc/TOKEN"
    ran = post(team, "rotate/app/staging/svc/TOKEN")
    assert ran.status_code == 200, ran.text
    outcome = ran.json()
    assert (outcome["kind"], outcome["version"]) == ("random", 2)
    value_response = team.client.get(
        secret_url("app", "staging", "svc/TOKEN"), headers=bearer(team.owner)
    )
    value = value_response.json()
    assert value["version"] == 2 and value["comment"] == "rotated by the random rotator"
    new = value["value"]
    assert len(new) == 40 and set(new) <= set(string.hexdigits.lower())
    assert new not in ran.text
    shown = team.client.get(ROTATOR, headers=bearer(team.owner)).json()
    assert (shown["last_status"], shown["last_error"]) == ("succeeded", None)
    assert shown["last_run_at"] is not None
    actions = [(e["action"], e["metadata"]) for e in entries(team, team.owner, since)]
    assert ("rotation.configured", {"kind": "random", "length": 40, "alphabet": "hex"}) in actions
    assert (
        "rotation.completed",
        {"kind": "random", "version": 2, "previous_version": 1},
    ) in actions
    assert ("secret.updated", {"version": 2, "rotator": "random"}) in actions
    assert new not in str(actions)
    schedule = by_key(get(team, "schedule"))["app/staging/svc/TOKEN"]
    assert (
        schedule["rotator"]["kind"] == "random"
        and schedule["rotator"]["last_status"] == "succeeded"
    )
    removed = team.client.delete(ROTATOR, headers=bearer(team.owner))
    assert removed.status_code == 200 and removed.json()["removed"] is True
    assert team.client.get(ROTATOR, headers=bearer(team.owner)).status_code == 404
    gone = post(team, "rotate/app/staging/svc/TOKEN")
    assert gone.status_code == 404 and gone.json()["error"]["field"] == "key"


BAD_SPECS = [
    ({"kind": "vault"}, "kind"),
    ({}, "kind"),
    ({"kind": "random", "length": 8}, "length"),
    ({"kind": "random", "length": 1000}, "length"),
    ({"kind": "random", "alphabet": "klingon"}, "alphabet"),
    ({"kind": "random", "colour": "red"}, "colour"),
    ({"kind": "postgresql", "role": "app user", "connection": "ops/production/PG"}, "role"),
    ({"kind": "postgresql", "role": "a'b", "connection": "ops/production/PG"}, "role"),
    (
        {"kind": "postgresql", "role": "app_user", "connection": "postgresql://u:pw@h/d"},
        "connection",
    ),
    ({"kind": "postgresql", "role": "app_user", "connection": "ops/production/NOPE"}, "connection"),
    (
        {"kind": "postgresql", "role": "app_user", "connection": "nosuch/production/PG"},
        "connection",
    ),
    (
        {"kind": "postgresql", "role": "app_user", "connection": "app/staging/svc/TOKEN"},
        "connection",
    ),
]


def test_bad_rotator_input_and_callers_without_the_right_are_refused(team: Team) -> None:
    """Unknown kinds and fields, lengths outside 16..256, bad alphabets and roles, and a
    connection that is not project/env/KEY, does not exist, is the rotated secret itself or
    lies where the admin may not read, are each refused naming the field; nothing is
    stored and no rotation.configured is written. Configuring takes an admin, running write
    access: a viewer with a write grant may run it but not configure it, a plain viewer may
    do neither (and the version stays)."""
    put(team.client, team.owner, "app", "staging", "svc/TOKEN", "token-v1")
    team.client.post(f"{API}/projects", json={"name": "ops"}, headers=bearer(team.owner))
    put(team.client, team.owner, "ops", "production", "PG", "postgresql://postgres@127.0.0.1/test")
    admin = member_token(team.client, team.owner, "a@acme.test", "admin")
    grant = {"member": "a@acme.test", "scope": "ops:production:none"}
    assert (
        team.client.post(f"{API}/grants", json=grant, headers=bearer(team.owner)).status_code == 201
    )
    before = row_counts(team.services.engine)
    for spec, field in BAD_SPECS:
        response = team.client.put(ROTATOR, json=spec, headers=bearer(team.owner))
        assert response.status_code == 400, (spec, response.text)
        assert response.json()["error"]["field"] == field, (spec, response.text)
        assert "pw@" not in response.text
    hidden = {"kind": "postgresql", "role": "app_user", "connection": "ops/production/PG"}
    refused = team.client.put(ROTATOR, json=hidden, headers=bearer(admin))
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "connection"
    missing = team.client.put(
        f"{ROTATION}/rotators/app/staging/NOPE", json={"kind": "random"}, headers=bearer(team.owner)
    )
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "key"
    after = row_counts(team.services.engine)
    assert after["secret_rotators"] == before["secret_rotators"] == 0
    assert {name for name in after if after[name] != before[name]} == set()
    assert not entries(team, team.owner, 0, "rotation.configured")
    writer = member_token(team.client, team.owner, "w@acme.test", "viewer")
    grant = {"member": "w@acme.test", "scope": "app:staging:write"}
    assert (
        team.client.post(f"{API}/grants", json=grant, headers=bearer(team.owner)).status_code == 201
    )
    viewer = member_token(team.client, team.owner, "v@acme.test", "viewer")
    spec = {"kind": "random"}
    assert team.client.put(ROTATOR, json=spec, headers=bearer(writer)).status_code == 403
    assert team.client.put(ROTATOR, json=spec, headers=bearer(team.owner)).status_code == 200
    assert team.client.get(ROTATOR, headers=bearer(viewer)).status_code == 200
    assert post(team, "rotate/app/staging/svc/TOKEN", token=viewer).status_code == 403
    assert team.client.delete(ROTATOR, headers=bearer(writer)).status_code == 403
    assert secret_row(team.services.engine, "app", "staging", "svc/TOKEN")[1] == 1
    ran = post(team, "rotate/app/staging/svc/TOKEN", token=writer)
    assert ran.status_code == 200 and ran.json()["version"] == 2
    with team.services.engine.connect() as conn:
        assert conn.execute(sa.select(secret_rotators.c.last_status)).scalar_one() == "succeeded"
