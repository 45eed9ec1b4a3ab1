"""Offboarding over the HTTP API, on both backends: one call ends every credential of the
member, flags for rotation exactly the secrets they could read (a ``none`` grant keeps a
secret out), lists the secrets they read, keeps a record for the evidence pack, and refuses
the owner, oneself and unknown addresses without changing anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from coffer.storage.compliance_tables import rotation_flags
from coffer.storage.tables import environments, projects, secrets
from tests.integration.api_helpers import audit_entries, last_audit_seq, row_counts
from tests.integration.team_helpers import (
    API,
    OWNER_EMAIL,
    PASSWORD,
    SECRET,
    Team,
    bearer,
    client_for,
    member_token,
)

DEV, LEAD = "dev@acme.test", "lead@acme.test"
PROJECTS = f"{API}/projects"


def _put(team: Team, project: str, environment: str, key: str) -> None:
    url = f"{PROJECTS}/{project}/environments/{environment}/secrets/{key}"
    written = team.client.put(url, json={"value": f"{key}-value"}, headers=bearer(team.owner))
    assert written.status_code == 200, written.text


def _read(team: Team, token: str, project: str, environment: str, key: str) -> int:
    url = f"{PROJECTS}/{project}/environments/{environment}/secrets/{key}"
    status: int = team.get(url, token).status_code
    return status


def _grant(team: Team, scope: str) -> None:
    granted = team.client.post(
        f"{API}/grants", json={"member": DEV, "scope": scope}, headers=bearer(team.owner)
    )
    assert granted.status_code == 201, granted.text


def _flagged(team: Team) -> set[tuple[Any, ...]]:
    """(project, environment, key, reason, detail) of every rotation flag."""
    query = sa.select(
        projects.c.name,
        environments.c.name,
        secrets.c.key,
        rotation_flags.c.reason,
        rotation_flags.c.detail,
    ).select_from(
        rotation_flags.join(secrets, secrets.c.id == rotation_flags.c.secret_id)
        .join(environments, environments.c.id == secrets.c.environment_id)
        .join(projects, projects.c.id == environments.c.project_id)
    )
    with team.services.engine.connect() as conn:
        return {tuple(row) for row in conn.execute(query).all()}


def _session_cookie(team: Team) -> str:
    answer = team.client.post(
        f"{API}/auth/login", json={"email": DEV, "password": PASSWORD, "mode": "session"}
    )
    assert answer.status_code == 200, answer.text
    cookie: str = answer.cookies["coffer_session"]
    team.client.cookies.clear()
    return cookie


def test_offboarding_ends_every_credential_and_flags_what_they_could_read(team: Team) -> None:
    """A viewer with a CLI token, an API key and a browser session, shut out of
    app/production (``none``) and of project ``other`` except its staging: offboarding
    revokes all three (each gets 401), removes her, flags exactly the secrets she could
    read, lists what she did read, and records it all."""
    token = member_token(team.client, team.owner, DEV)
    key = team.client.post(f"{API}/keys", json={"name": "laptop"}, headers=bearer(token)).json()
    cookie = _session_cookie(team)
    assert team.client.post(PROJECTS, json={"name": "other"}, headers=bearer(team.owner)).is_success
    for project, environment, name in (
        ("app", "staging", "API_KEY"),
        ("app", "development", "DEBUG_TOKEN"),
        ("other", "staging", "S3_KEY"),
        ("other", "production", "STRIPE_KEY"),
    ):
        _put(team, project, environment, name)
    _grant(team, "app:production:none")
    _grant(team, "other:none")
    _grant(team, "other:staging:read")
    assert _read(team, token, "app", "staging", "API_KEY") == 200
    assert _read(team, key["token"], "app", "staging", "API_KEY") == 200
    assert _read(team, token, "other", "staging", "S3_KEY") == 200
    assert team.get(SECRET, token).status_code == 403  # app/production: none

    answer = team.client.post(f"{API}/members/{DEV}/offboard", headers=bearer(team.owner))
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    counts = {k: summary[k] for k in summary if k.endswith(("_revoked", "_flagged", "_read"))}
    assert counts == {
        "sessions_revoked": 1,
        "tokens_revoked": 1,
        "api_keys_revoked": 1,
        "grants_revoked": 3,
        "secrets_flagged": 3,
        "secrets_read": 2,
    }
    assert (summary["email"], summary["role"], summary["via"]) == (DEV, "viewer", "offboarding")
    assert summary["offboarded_by_name"] == OWNER_EMAIL
    could_read = {
        ("app", "development", "DEBUG_TOKEN"),
        ("app", "staging", "API_KEY"),
        ("other", "staging", "S3_KEY"),
    }
    assert {(s["project"], s["environment"], s["key"]) for s in summary["flagged"]} == could_read
    assert _flagged(team) == {(*s, "offboarding", DEV) for s in could_read}
    read = {(s["project"], s["environment"], s["key"]): s for s in summary["read"]}
    assert set(read) == {("app", "staging", "API_KEY"), ("other", "staging", "S3_KEY")}
    assert read[("app", "staging", "API_KEY")]["reads"] == 2
    assert read[("app", "staging", "API_KEY")]["last_read_at"].endswith("Z")

    for credential in (token, key["token"]):
        assert team.get(f"{API}/whoami", credential).status_code == 401
        assert _read(team, credential, "app", "staging", "API_KEY") == 401
    with client_for(team.services, team.settings, base_url="http://127.0.0.1") as browser:
        browser.cookies.set("coffer_session", cookie)
        assert browser.get(f"{API}/whoami").status_code == 401
    relogin = team.client.post(f"{API}/auth/login", json={"email": DEV, "password": PASSWORD})
    assert relogin.status_code == 401
    members = team.get(f"{API}/members", team.owner).json()["members"]
    assert DEV not in {m["email"] for m in members}
    assert team.get(f"{API}/grants", team.owner).json()["grants"] == []

    entries = audit_entries(team.services.engine)
    [entry] = [e for e in entries if e["action"] == "member.offboarded"]
    assert entry["metadata"]["email"] == DEV
    assert entry["metadata"]["secrets_flagged"] == 3 and entry["metadata"]["secrets_read"] == 2
    listed = team.get(f"{API}/offboardings", team.owner).json()["offboardings"]
    assert listed == [summary]


def test_offboardings_are_listed_by_period(team: Team) -> None:
    """The list keeps to ``from``/``to`` (a ``to`` date covers its day), refuses a period
    running backwards or a date that does not parse (422 naming it), and is for admins."""
    viewer = member_token(team.client, team.owner, DEV)
    member_token(team.client, team.owner, "gone@acme.test")
    offboarded = team.client.post(
        f"{API}/members/gone@acme.test/offboard", headers=bearer(team.owner)
    )
    assert offboarded.status_code == 200
    today = datetime.now(UTC).date()
    yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)

    def emails(**params: str) -> list[str]:
        answer = team.get(f"{API}/offboardings", team.owner, params=params)
        assert answer.status_code == 200, answer.text
        return [o["email"] for o in answer.json()["offboardings"]]

    assert emails(**{"from": str(today), "to": str(today)}) == ["gone@acme.test"]
    assert emails(to=str(yesterday)) == []
    assert emails(**{"from": str(tomorrow)}) == []
    for params, field in (
        ({"from": "soon"}, "from"),
        ({"from": str(today), "to": "2000-01-01"}, "to"),
    ):
        refused = team.get(f"{API}/offboardings", team.owner, params=params)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field
    assert team.get(f"{API}/offboardings", viewer).status_code == 403


def _refusal(team: Team, email: str, token: str) -> Any:
    return team.client.post(f"{API}/members/{email}/offboard", headers=bearer(token))


def test_owner_self_and_strangers_cannot_be_offboarded_and_nothing_changes(team: Team) -> None:
    """The owner (409: transfer ownership first), oneself (403), an unknown address (404), a
    malformed one (400) and a viewer offboarding someone (403) are refused; no credential,
    grant, member, flag or record changes."""
    lead = member_token(team.client, team.owner, LEAD, role="admin")
    viewer = member_token(team.client, team.owner, DEV)
    before, seq = row_counts(team.services.engine), last_audit_seq(team.services.engine)
    cases = [
        (OWNER_EMAIL, lead, 409, "transfer ownership first"),
        (LEAD, lead, 403, "nobody offboards themselves"),
        ("nobody@acme.test", lead, 404, "no member nobody@acme.test"),
        ("not-an-address", lead, 400, "e-mail address"),
        (LEAD, viewer, 403, "team.manage needs the admin role"),
    ]
    for email, token, status, message in cases:
        refused = _refusal(team, email, token)
        assert refused.status_code == status, (email, refused.text)
        assert message in refused.json()["error"]["message"], email
    after = row_counts(team.services.engine)
    written = [e["action"] for e in audit_entries(team.services.engine, seq)]
    assert written == ["access.denied", "access.denied"]  # oneself, and the viewer
    assert after.pop("audit_log") == before.pop("audit_log") + 2
    assert after == before
    for token in (lead, viewer):
        assert team.get(f"{API}/whoami", token).status_code == 200
