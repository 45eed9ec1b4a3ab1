"""Credentials over their life, on both backends: token lifetimes, API-key limits, machine
windows and allow-lists, revocation that takes effect at once, and the audit trail of it all
(with no credential in the audit log, the logs or a ``repr``)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coffer.api.app import create_app
from coffer.crypto.totp import current_code
from coffer.domain.errors import Conflict, RateLimited, Unauthenticated
from coffer.domain.models import CallContext
from tests.integration.api_helpers import all_rows_text, audit_entries, last_audit_seq
from tests.integration.team_helpers import (
    API,
    OWNER_EMAIL,
    PASSWORD,
    SECRET,
    Team,
    TeamFactory,
    bearer,
    client_for,
    create_second_org,
    invite,
    join,
    login,
    member_token,
)

DAY = 86400


def _lifetime(issued: dict[str, Any]) -> float:
    """Seconds between a token's creation and expiry, from its JSON."""
    created = datetime.fromisoformat(issued["created_at"])
    expires = datetime.fromisoformat(issued["expires_at"])
    return (expires - created).total_seconds()


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat()


def _machine_token(team: Team, name: str, scopes: list[str], **extra: Any) -> str:
    """Creates a machine and returns a token of it."""
    made = team.client.post(
        f"{API}/machines",
        json={"name": name, "scopes": scopes, **extra},
        headers=bearer(team.owner),
    )
    assert made.status_code == 201, made.text
    issued = team.client.post(f"{API}/machines/{name}/tokens", json={}, headers=bearer(team.owner))
    assert issued.status_code == 201, issued.text
    token: str = issued.json()["token"]
    return token


# --- lifetimes and limits -----------------------------------------------------------------


def test_cli_token_lasts_ninety_days_unless_asked_otherwise(open_team: TeamFactory) -> None:
    """A login token expires after 90 days by default, after ``expires_in`` when given (at
    most a year), and after COFFER_CLI_TOKEN_TTL when the server sets another default."""
    team = open_team()
    assert abs(_lifetime(login(team.client, OWNER_EMAIL)) - 90 * DAY) < 1
    assert abs(_lifetime(login(team.client, OWNER_EMAIL, expires_in="30d")) - 30 * DAY) < 1
    too_long = team.client.post(
        f"{API}/auth/login",
        json={"email": OWNER_EMAIL, "password": PASSWORD, "expires_in": "400d"},
    )
    assert too_long.status_code == 400
    assert too_long.json()["error"]["field"] == "expires_in"
    week = open_team(cli_token_ttl=7 * DAY)
    assert abs(_lifetime(login(week.client, OWNER_EMAIL)) - 7 * DAY) < 1


def test_sixth_api_key_is_refused_until_one_is_revoked(team: Team) -> None:
    """A person holds at most 5 active API keys: the 6th gets 409 with a message saying so
    and how to fix it; after revoking one, a new key can be made."""
    token = member_token(team.client, team.owner, "dev@acme.test")
    keys = []
    for i in range(5):
        made = team.client.post(f"{API}/keys", json={"name": f"k{i}"}, headers=bearer(token))
        assert made.status_code == 201
        keys.append(made.json())
    sixth = team.client.post(f"{API}/keys", json={"name": "k5"}, headers=bearer(token))
    assert sixth.status_code == 409
    message = sixth.json()["error"]["message"]
    assert "5 active API keys" in message and "revoke" in message
    revoked = team.client.delete(f"{API}/keys/{keys[0]['id']}", headers=bearer(token))
    assert revoked.status_code == 200
    assert team.get(f"{API}/whoami", keys[0]["token"]).status_code == 401
    again = team.client.post(f"{API}/keys", json={"name": "k5"}, headers=bearer(token))
    assert again.status_code == 201
    listed = team.get(f"{API}/keys", token).json()["keys"]
    assert len(listed) == 5 and all("token" not in k for k in listed)


def test_session_in_use_does_not_expire_as_idle(open_team: TeamFactory) -> None:
    """A session used every half second stays valid beyond COFFER_SESSION_IDLE (2 s): idle
    expiry counts from the last use, not from the login."""
    team = open_team(session_idle=2)
    login_response = team.client.post(
        f"{API}/auth/login",
        json={"email": OWNER_EMAIL, "password": PASSWORD, "mode": "session"},
    )
    cookie = login_response.cookies["coffer_session"]
    with client_for(team.services, team.settings, base_url="http://127.0.0.1") as browser:
        browser.cookies.set("coffer_session", cookie)
        statuses = []
        for _ in range(7):
            statuses.append(browser.get(f"{API}/whoami").status_code)
            time.sleep(0.5)
    assert statuses == [200] * 7


# --- machines -----------------------------------------------------------------------------


def test_machine_validity_window(team: Team) -> None:
    """A machine not yet valid, or no longer valid, is refused with 403 naming why (on the
    hot read path too); one inside its window reads."""
    now = time.time()
    early = _machine_token(team, "early", ["app:production:read"], valid_after=_iso(now + 3600))
    late = _machine_token(team, "late", ["app:production:read"], valid_before=_iso(now - 60))
    current = _machine_token(
        team,
        "current",
        ["app:production:read"],
        valid_after=_iso(now - 60),
        valid_before=_iso(now + 3600),
    )
    for token, why in ((early, "not valid yet"), (late, "no longer valid")):
        for url in (SECRET, f"{API}/projects/app/environments/production/secrets"):
            refused = team.get(url, token)
            assert refused.status_code == 403
            assert why in refused.json()["error"]["message"]
    assert team.get(SECRET, current).json()["value"] == "s3cret-value"


def test_machine_ip_allow_list(team: Team) -> None:
    """A machine reads only from its allowed networks; a forged X-Forwarded-For from an
    untrusted peer does not get it in."""
    inside = _machine_token(
        team, "inside", ["app:production:read"], allowed_ips=["203.0.113.0/24", "2001:db8::/32"]
    )
    outside = _machine_token(team, "outside", ["app:production:read"], allowed_ips=["10.0.0.0/8"])
    assert team.get(SECRET, inside).status_code == 200  # the client is 203.0.113.10
    forged = {**bearer(outside), "X-Forwarded-For": "10.1.2.3"}
    refused = team.client.get(SECRET, headers=forged)
    assert refused.status_code == 403
    assert "not allowed" in refused.json()["error"]["message"]
    with client_for(team.services, team.settings, address="2001:db8::7") as v6:
        assert v6.get(SECRET, headers=bearer(inside)).status_code == 200
        assert v6.get(SECRET, headers=bearer(outside)).status_code == 403


def test_allow_list_sees_the_real_client_behind_a_trusted_proxy(team: Team) -> None:
    """Behind a trusted proxy the allow-list judges the address in X-Forwarded-For."""
    token = _machine_token(team, "ci", ["app:production:read"], allowed_ips=["198.51.100.0/24"])
    app = create_app(
        team.services, max_body_bytes=team.settings.max_body_bytes, trusted_proxies=("10.0.0.0/8",)
    )
    with TestClient(app, client=("10.0.0.5", 50000)) as proxied:
        inside = {**bearer(token), "X-Forwarded-For": "198.51.100.7"}
        outside = {**bearer(token), "X-Forwarded-For": "192.0.2.7"}
        assert proxied.get(SECRET, headers=inside).status_code == 200
        assert proxied.get(SECRET, headers=outside).status_code == 403
        assert proxied.get(SECRET, headers=bearer(token)).status_code == 403  # the proxy itself


def test_bad_allow_list_entry_is_refused(team: Team) -> None:
    """An allow-list entry that is not an address or network is refused, naming it."""
    made = team.client.post(
        f"{API}/machines",
        json={"name": "ci", "scopes": ["app:read"], "allowed_ips": ["10.0.0.0/8", "intranet"]},
        headers=bearer(team.owner),
    )
    assert made.status_code == 400
    assert made.json()["error"]["field"] == "allowed_ips"
    assert "intranet" in made.json()["error"]["message"]
    assert team.get(f"{API}/machines", team.owner).json()["machines"] == []


# --- revocation takes effect at once ------------------------------------------------------


def test_removed_members_credentials_stop_at_once(team: Team) -> None:
    """Removing a member ends their CLI tokens, sessions and API keys on the next request,
    hot read path included."""
    token = member_token(team.client, team.owner, "dev@acme.test")
    key = team.client.post(f"{API}/keys", json={"name": "ci"}, headers=bearer(token)).json()
    assert team.get(SECRET, key["token"]).status_code == 200
    removed = team.client.delete(f"{API}/members/dev@acme.test", headers=bearer(team.owner))
    assert removed.status_code == 204
    for credential in (token, key["token"]):
        assert team.get(SECRET, credential).status_code == 401
        assert team.get(f"{API}/whoami", credential).status_code == 401
    entry = audit_entries(team.services.engine)[-1]
    assert entry["action"] == "member.removed"
    assert entry["metadata"]["tokens_revoked"] == 2
    relogin = team.client.post(
        f"{API}/auth/login", json={"email": "dev@acme.test", "password": PASSWORD}
    )
    assert relogin.status_code == 401


def test_deleted_machines_tokens_stop_at_once(team: Team) -> None:
    """Deleting a machine ends its tokens on the next request, hot read path included."""
    token = _machine_token(team, "ci", ["app:production:read"])
    assert team.get(SECRET, token).status_code == 200
    deleted = team.client.delete(f"{API}/machines/ci", headers=bearer(team.owner))
    assert deleted.status_code == 200
    assert deleted.json()["tokens_revoked"] == 1
    assert team.get(SECRET, token).status_code == 401
    assert team.get(f"{API}/projects", token).status_code == 401


def test_role_and_grant_changes_apply_to_live_tokens(team: Team) -> None:
    """A demotion, a new grant and a revoked grant change what an existing token may do on
    its very next request."""
    token = member_token(team.client, team.owner, "dev@acme.test", role="admin")
    dev_secret = f"{API}/projects/app/environments/development/secrets/k"
    assert team.client.put(dev_secret, json={"value": "1"}, headers=bearer(token)).is_success
    demoted = team.client.patch(
        f"{API}/members/dev@acme.test", json={"role": "viewer"}, headers=bearer(team.owner)
    )
    assert demoted.status_code == 200
    assert (
        team.client.put(dev_secret, json={"value": "2"}, headers=bearer(token)).status_code == 403
    )
    grant = team.client.post(
        f"{API}/grants",
        json={"member": "dev@acme.test", "scope": "app:development:write"},
        headers=bearer(team.owner),
    ).json()
    assert (
        team.client.put(dev_secret, json={"value": "3"}, headers=bearer(token)).status_code == 200
    )
    team.client.delete(f"{API}/grants/{grant['id']}", headers=bearer(team.owner))
    assert (
        team.client.put(dev_secret, json={"value": "4"}, headers=bearer(token)).status_code == 403
    )
    team.client.post(
        f"{API}/grants",
        json={"member": "dev@acme.test", "scope": "app:production:none"},
        headers=bearer(team.owner),
    )
    assert team.get(SECRET, token).status_code == 403


def test_invitations_are_single_use_and_replaced_by_a_new_one(team: Team) -> None:
    """An invitation works once; inviting the same address again cancels the earlier
    invitation; an expired invitation is refused."""
    first = invite(team.client, team.owner, "dev@acme.test")
    second = invite(team.client, team.owner, "dev@acme.test")
    accept = f"{API}/invitations/accept"
    assert team.client.post(accept, json={"token": first, "password": PASSWORD}).status_code == 401
    assert team.client.post(accept, json={"token": second, "password": PASSWORD}).status_code == 201
    assert team.client.post(accept, json={"token": second, "password": PASSWORD}).status_code == 401
    short = team.client.post(
        f"{API}/members/invite",
        json={"email": "late@acme.test", "role": "viewer", "expires_in": "1s"},
        headers=bearer(team.owner),
    ).json()["token"]
    time.sleep(1.2)
    late = team.client.post(accept, json={"token": short, "password": PASSWORD})
    assert late.status_code == 401
    assert late.json()["error"]["message"].startswith("the invitation is not valid")


def test_invitation_does_not_reveal_accounts_of_other_organizations(team: Team) -> None:
    """Inviting an address that has an account in another organization answers exactly like
    inviting a new address."""
    create_second_org(team.services, team.settings, "rival", "owner@rival.test")
    known = team.client.post(
        f"{API}/members/invite",
        json={"email": "owner@rival.test", "role": "viewer"},
        headers=bearer(team.owner),
    )
    unknown = team.client.post(
        f"{API}/members/invite",
        json={"email": "nobody@rival.test", "role": "viewer"},
        headers=bearer(team.owner),
    )
    assert known.status_code == unknown.status_code == 201


# --- the audit trail ----------------------------------------------------------------------


@dataclass
class Story:
    """Every credential an identity story handed out or typed."""

    secrets: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)


def _identity_story(team: Team) -> Story:
    """Runs logins, MFA, tokens, keys, members, grants, machines and ownership through the
    API; returns every credential involved and the ids of the people."""
    story = Story(secrets=[PASSWORD, team.owner])
    client, owner = team.client, bearer(team.owner)
    wrong = "wrong-password-9f3b2c"
    client.post(f"{API}/auth/login", json={"email": OWNER_EMAIL, "password": wrong})
    story.secrets.append(wrong)
    invitation = invite(client, team.owner, "dev@acme.test", "viewer")
    story.secrets.append(invitation)
    client.post(f"{API}/invitations/accept", json={"token": invitation, "password": PASSWORD})
    dev = login(client, "dev@acme.test")["token"]
    seed = client.post(f"{API}/mfa/setup", headers=bearer(dev)).json()["secret"]
    enabled = client.post(
        f"{API}/mfa/enable", json={"code": current_code(seed)}, headers=bearer(dev)
    )
    story.secrets += [dev, seed, *enabled.json()["recovery_codes"]]
    spare = login(client, "dev@acme.test", totp=enabled.json()["recovery_codes"][0])
    client.delete(f"{API}/tokens/{spare['id']}", headers=bearer(dev))
    key = client.post(f"{API}/keys", json={"name": "ci"}, headers=bearer(dev)).json()
    client.delete(f"{API}/keys/{key['id']}", headers=bearer(dev))
    client.put(SECRET, json={"value": "denied"}, headers=bearer(dev))  # access.denied
    client.patch(f"{API}/members/dev@acme.test", json={"role": "admin"}, headers=owner)
    grant = client.post(
        f"{API}/grants", json={"member": "dev@acme.test", "scope": "app:read"}, headers=owner
    ).json()
    client.delete(f"{API}/grants/{grant['id']}", headers=owner)
    machine = _machine_token(team, "ci", ["app:production:read"])
    client.post(f"{API}/members/transfer-ownership", json={"email": "dev@acme.test"}, headers=owner)
    client.post(
        f"{API}/members/transfer-ownership", json={"email": OWNER_EMAIL}, headers=bearer(dev)
    )
    join(client, team.owner, "temp@acme.test")
    client.delete(f"{API}/members/temp@acme.test", headers=owner)
    session = client.post(
        f"{API}/auth/login", json={"email": OWNER_EMAIL, "password": PASSWORD, "mode": "session"}
    ).cookies["coffer_session"]
    with client_for(team.services, team.settings, base_url="http://127.0.0.1") as browser:
        browser.cookies.set("coffer_session", session)
        browser.post(f"{API}/auth/logout", headers={"X-Requested-With": "coffer"})
    story.secrets += [spare["token"], key["token"], machine, session]
    whoami = client.get(f"{API}/whoami", headers=bearer(dev)).json()
    story.ids = {
        "dev": whoami["id"],
        "owner": client.get(f"{API}/whoami", headers=owner).json()["id"],
    }
    return story


EXPECTED_EVENTS = {
    # action: (who acts, result)
    "auth.login": ("owner", "success"),
    "auth.login_failed": ("owner", "failure"),
    "auth.logout": ("owner", "success"),
    "auth.mfa_enabled": ("dev", "success"),
    "token.created": ("owner", "success"),
    "token.revoked": ("dev", "success"),
    "apikey.created": ("dev", "success"),
    "apikey.revoked": ("dev", "success"),
    "member.invited": ("owner", "success"),
    "member.joined": ("dev", "success"),
    "member.removed": ("owner", "success"),
    "role.changed": ("owner", "success"),
    "grant.created": ("owner", "success"),
    "grant.revoked": ("owner", "success"),
    "ownership.transferred": ("owner", "success"),
    "access.denied": ("dev", "failure"),
}


def test_every_identity_event_is_audited_with_its_actor(team: Team) -> None:
    """Each identity event lands in the audit log under its action, with the person who did
    it and the right result."""
    start = last_audit_seq(team.services.engine)
    story = _identity_story(team)
    entries = audit_entries(team.services.engine, start)
    seen = {(e["action"], e["actor_id"], e["result"]) for e in entries}
    for action, (who, result) in EXPECTED_EVENTS.items():
        assert (action, story.ids[who], result) in seen, action
    transfers = [e["metadata"] for e in entries if e["action"] == "ownership.transferred"]
    assert [t["to"] for t in transfers] == ["dev@acme.test", OWNER_EMAIL]
    failed = next(e for e in entries if e["action"] == "auth.login_failed")
    assert failed["metadata"]["email"] == OWNER_EMAIL


def test_no_credential_reaches_the_database_logs_or_reprs(
    open_team: TeamFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """No password, TOTP seed, recovery code or token appears in any table (audit log
    included), in any log record at DEBUG, or in the repr of what the services return."""
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "httpx", "coffer"):
        caplog.set_level(logging.DEBUG, logger=name)
    team = open_team()
    story = _identity_story(team)
    services = team.services
    owner = services.auth.authenticate(team.owner)
    ctx = CallContext(actor=owner, source_ip="127.0.0.1", user_agent="pytest")
    invited = services.team.invite(ctx, "repr@acme.test", "viewer")
    joined = services.login.accept_invitation(invited.token, "repr password 123")
    logged_in = services.login.login("repr@acme.test", "repr password 123")
    repr_ctx = CallContext(actor=services.auth.authenticate(logged_in.issued.token))
    enrolment = services.mfa.setup(repr_ctx)
    key = services.tokens.create_api_key(repr_ctx, "repr key")
    story.secrets += [invited.token, "repr password 123", logged_in.issued.token, enrolment.secret]
    story.secrets.append(key.token)
    for obj in (invited, joined, logged_in, enrolment, key):
        for text in (repr(obj), str(obj)):
            for secret in (invited.token, logged_in.issued.token, enrolment.secret, key.token):
                assert secret not in text, type(obj).__name__
            assert joined.password_hash not in text
    database = all_rows_text(services.engine)
    logs = caplog.text + "\n".join(repr(r.args) for r in caplog.records)
    assert "INSERT INTO audit_log" in logs  # the capture works
    for secret in story.secrets:
        assert secret not in database
        assert secret not in logs


# --- races --------------------------------------------------------------------------------

RACERS = 8


def _race(attempt: Callable[[], object]) -> tuple[list[object], list[BaseException]]:
    """Runs ``attempt`` in RACERS threads released at once; returns results and errors."""
    results: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(RACERS)

    def racer() -> None:
        start.wait()
        try:
            result = attempt()
        except BaseException as error:  # noqa: BLE001 - every failure is part of the finding
            with lock:
                errors.append(error)
        else:
            with lock:
                results.append(result)

    threads = [threading.Thread(target=racer) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    return results, errors


def test_one_totp_code_raced_from_many_logins_signs_in_once(team: Team) -> None:
    """Eight logins sent at once with the same TOTP code yield exactly one token; the rest
    are refused as replays (or, past five failures, by the lockout)."""
    token = member_token(team.client, team.owner, "dev@acme.test")
    seed = team.client.post(f"{API}/mfa/setup", headers=bearer(token)).json()["secret"]
    team.client.post(f"{API}/mfa/enable", json={"code": current_code(seed)}, headers=bearer(token))
    code = current_code(seed, time.time() + 30)
    results, errors = _race(
        lambda: team.services.login.login("dev@acme.test", PASSWORD, totp_code=code)
    )
    assert len(results) == 1
    assert len(errors) == RACERS - 1
    assert all(isinstance(e, Unauthenticated | RateLimited) for e in errors), errors


def test_one_recovery_code_raced_from_many_logins_signs_in_once(team: Team) -> None:
    """Eight logins sent at once with the same recovery code yield exactly one token."""
    token = member_token(team.client, team.owner, "dev@acme.test")
    seed = team.client.post(f"{API}/mfa/setup", headers=bearer(token)).json()["secret"]
    enabled = team.client.post(
        f"{API}/mfa/enable", json={"code": current_code(seed)}, headers=bearer(token)
    )
    code = enabled.json()["recovery_codes"][0]
    results, errors = _race(
        lambda: team.services.login.login("dev@acme.test", PASSWORD, totp_code=code)
    )
    assert len(results) == 1
    assert all(isinstance(e, Unauthenticated | RateLimited) for e in errors), errors


def test_one_invitation_raced_from_many_acceptances_makes_one_account(team: Team) -> None:
    """Eight acceptances of one invitation at once create exactly one account."""
    invitation = invite(team.client, team.owner, "dev@acme.test")
    results, errors = _race(lambda: team.services.login.accept_invitation(invitation, PASSWORD))
    assert len(results) == 1
    assert all(isinstance(e, Unauthenticated | Conflict) for e in errors), errors
    members = team.get(f"{API}/members", team.owner).json()["members"]
    assert [m["email"] for m in members].count("dev@acme.test") == 1


def test_api_key_limit_holds_under_a_race(team: Team) -> None:
    """Eight key creations at once by one person create exactly five keys."""
    token = member_token(team.client, team.owner, "dev@acme.test")
    ctx = CallContext(actor=team.services.auth.authenticate(token), source_ip="127.0.0.1")
    results, errors = _race(lambda: team.services.tokens.create_api_key(ctx, "raced"))
    assert len(results) == 5
    assert len(errors) == RACERS - 5
    assert all(isinstance(e, Conflict) for e in errors), errors
    assert len(team.get(f"{API}/keys", token).json()["keys"]) == 5
