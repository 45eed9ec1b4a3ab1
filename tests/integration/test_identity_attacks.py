"""Attacks on identity, on both backends: guessing accounts and passwords, spelling tricks,
reserved roles, brute force, MFA replay, cross-site requests, stolen or stale sessions."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coffer import bootstrap
from coffer.config import Settings
from coffer.crypto.passwords import PasswordHasher
from coffer.crypto.totp import current_code
from tests.integration.api_helpers import row_counts
from tests.integration.team_helpers import (
    API,
    OWNER_EMAIL,
    PASSWORD,
    SECRET,
    CountingHasher,
    Team,
    TeamFactory,
    audit_actions,
    bearer,
    client_for,
    invite,
    join,
    login,
    member_token,
)


def _fullwidth(text: str) -> str:
    """``text`` in Unicode full-width forms (which NFKC folds back to ASCII)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _login_attempt(team: Team, email: str, password: str, **fields: Any) -> Any:
    return team.client.post(
        f"{API}/auth/login", json={"email": email, "password": password, **fields}
    )


# --- guessing accounts and passwords ------------------------------------------------------


def test_unknown_user_and_wrong_password_are_indistinguishable(
    open_team: TeamFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown address and a wrong password get the same 401 and body, and each costs
    exactly one Argon2 verification (as does a right password)."""
    hashers: list[CountingHasher] = []
    real = bootstrap.password_hasher

    def counting(settings: Settings) -> PasswordHasher:
        hashers.append(CountingHasher(real(settings)))
        return hashers[-1]

    monkeypatch.setattr(bootstrap, "password_hasher", counting)
    team = open_team()
    (hasher,) = hashers
    answers = []
    for email, password in (
        ("nobody@acme.test", PASSWORD),
        (OWNER_EMAIL, "wrong password entirely"),
    ):
        before = hasher.verifications
        answers.append(_login_attempt(team, email, password))
        assert hasher.verifications - before == 1
    unknown, wrong = answers
    assert unknown.status_code == wrong.status_code == 401
    assert (
        unknown.json()
        == wrong.json()
        == {"error": {"code": "unauthenticated", "message": "invalid e-mail or password"}}
    )
    assert unknown.headers.get("www-authenticate") == wrong.headers.get("www-authenticate")
    before = hasher.verifications
    assert _login_attempt(team, OWNER_EMAIL, PASSWORD).status_code == 200
    assert hasher.verifications - before == 1
    assert audit_actions(team.services.engine).count("auth.login_failed") == 2


def test_account_locks_after_five_failures_even_for_the_right_password(team: Team) -> None:
    """After 5 failed logins the account answers 429 with Retry-After, even to its password;
    other accounts are not affected."""
    join(team.client, team.owner, "dev@acme.test")
    for _ in range(5):
        assert _login_attempt(team, "dev@acme.test", "not the password").status_code == 401
    locked = _login_attempt(team, "dev@acme.test", PASSWORD)
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "rate_limited"
    # The 15-minute window opened at the first failure, seconds ago: nearly all of it is left.
    assert 14 * 60 <= int(locked.headers["retry-after"]) <= 15 * 60 + 1
    assert _login_attempt(team, OWNER_EMAIL, PASSWORD).status_code == 200


def test_lockout_counts_every_spelling_of_one_address(team: Team) -> None:
    """Failures under variant spellings of an address lock the one account they name."""
    join(team.client, team.owner, "dev@acme.test")
    spellings = ["DEV@acme.test", " dev@ACME.test ", _fullwidth("dev@acme.test"), "Dev@Acme.Test"]
    for spelling in [*spellings, "dev@acme.test"]:
        assert _login_attempt(team, spelling, "not the password").status_code == 401
    assert _login_attempt(team, "dev@acme.test", PASSWORD).status_code == 429


def test_lockout_does_not_reveal_whether_an_account_exists(team: Team) -> None:
    """Five failures lock an unknown address exactly as they lock a real account."""
    join(team.client, team.owner, "dev@acme.test")
    answers = []
    for email in ("dev@acme.test", "ghost@acme.test"):
        for _ in range(5):
            _login_attempt(team, email, "not the password")
        answers.append(_login_attempt(team, email, PASSWORD))
    real, ghost = answers
    assert real.status_code == ghost.status_code == 429
    assert real.json() == ghost.json()


def test_wrong_totp_codes_count_towards_the_lockout(team: Team) -> None:
    """Guessing TOTP codes with the right password locks the account like wrong passwords."""
    token = member_token(team.client, team.owner, "dev@acme.test")
    good = current_code(_enrol(team, token).seed, time.time() + 30)
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert _login_attempt(team, "dev@acme.test", PASSWORD, totp=wrong).status_code == 401
    assert _login_attempt(team, "dev@acme.test", PASSWORD, totp=good).status_code == 429


def test_forged_forwarded_for_does_not_dodge_the_address_limit(open_team: TeamFactory) -> None:
    """Without trusted proxies, a new X-Forwarded-For on each attempt is still one address."""
    team = open_team(login_rate_limit="3/minute")
    with client_for(team.services, team.settings, address="198.51.100.21") as flood:
        statuses = [
            flood.post(
                f"{API}/auth/login",
                json={"email": "guess@acme.test", "password": PASSWORD},
                headers={"X-Forwarded-For": f"192.0.2.{i}"},
            ).status_code
            for i in range(4)
        ]
    assert statuses == [401, 401, 401, 429]


def test_per_address_login_limit(open_team: TeamFactory) -> None:
    """One client address gets COFFER_LOGIN_RATE_LIMIT attempts a minute, then 429 with
    Retry-After even for a right password; another address still logs in."""
    team = open_team(login_rate_limit="4/minute")
    with client_for(team.services, team.settings, address="198.51.100.20") as flood:
        for i in range(4):
            response = flood.post(
                f"{API}/auth/login", json={"email": f"guess{i}@acme.test", "password": PASSWORD}
            )
            assert response.status_code == 401
        limited = flood.post(f"{API}/auth/login", json={"email": OWNER_EMAIL, "password": PASSWORD})
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
    assert _login_attempt(team, OWNER_EMAIL, PASSWORD).status_code == 200


# --- one person, many spellings -----------------------------------------------------------


def test_email_spellings_name_one_account(team: Team) -> None:
    """Case, surrounding spaces and full-width forms of an address reach the same account for
    invitations, logins, role changes and grants."""
    invitation = invite(team.client, team.owner, "  Dev.Person@Example.COM ", "viewer")
    accepted = team.client.post(
        f"{API}/invitations/accept", json={"token": invitation, "password": PASSWORD}
    )
    assert accepted.status_code == 201
    assert accepted.json()["email"] == "dev.person@example.com"
    ids = set()
    for spelling in (
        "dev.person@example.com",
        "DEV.PERSON@EXAMPLE.COM",
        _fullwidth("dev.person@example.com"),
    ):
        token = login(team.client, spelling)["token"]
        ids.add(team.get(f"{API}/whoami", token).json()["id"])
    assert len(ids) == 1
    again = team.client.post(
        f"{API}/members/invite",
        json={"email": _fullwidth("DEV.person@example.com"), "role": "admin"},
        headers=bearer(team.owner),
    )
    assert again.status_code == 409
    changed = team.client.patch(
        f"{API}/members/ DEV.Person@example.com ",
        json={"role": "admin"},
        headers=bearer(team.owner),
    )
    assert changed.status_code == 200, changed.text
    granted = team.client.post(
        f"{API}/grants",
        json={"member": "Dev.Person@EXAMPLE.com", "scope": "app:production:none"},
        headers=bearer(team.owner),
    )
    assert granted.status_code == 201, granted.text
    members = team.get(f"{API}/members", team.owner).json()["members"]
    assert [(m["email"], m["role"]) for m in members if "example" in m["email"]] == [
        ("dev.person@example.com", "admin")
    ]


@pytest.mark.parametrize(
    "spelling",
    [
        "owner",
        "OWNER",
        " Owner ",
        _fullwidth("owner"),
        _fullwidth("Owner"),
        "o w n e r",
        "\towner\n",
    ],
)
def test_reserved_owner_role_is_refused_in_every_spelling(team: Team, spelling: str) -> None:
    """Neither an invitation nor a role change can hand out the owner role, however it is
    spelt; the refusal names the field and changes nothing."""
    join(team.client, team.owner, "dev@acme.test")
    before = row_counts(team.services.engine)
    invited = team.client.post(
        f"{API}/members/invite",
        json={"email": "new@acme.test", "role": spelling},
        headers=bearer(team.owner),
    )
    promoted = team.client.patch(
        f"{API}/members/dev@acme.test", json={"role": spelling}, headers=bearer(team.owner)
    )
    for response in (invited, promoted):
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["field"] == "role"
        assert "transfer" in error["message"]
    after = row_counts(team.services.engine)
    assert {k: v for k, v in after.items() if k != "audit_log"} == {
        k: v for k, v in before.items() if k != "audit_log"
    }
    roles = {
        m["email"]: m["role"] for m in team.get(f"{API}/members", team.owner).json()["members"]
    }
    assert roles == {OWNER_EMAIL: "owner", "dev@acme.test": "viewer"}


# --- MFA ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    """A person's MFA: the seed, the code that enabled it, and the recovery codes."""

    seed: str
    enabling_code: str
    recovery_codes: list[str]


def _enrol(team: Team, token: str) -> Enrolment:
    """Turns MFA on for the token's person."""
    seed = team.client.post(f"{API}/mfa/setup", headers=bearer(token)).json()["secret"]
    code = current_code(seed)
    enabled = team.client.post(f"{API}/mfa/enable", json={"code": code}, headers=bearer(token))
    assert enabled.status_code == 200, enabled.text
    return Enrolment(seed, code, enabled.json()["recovery_codes"])


def test_totp_code_is_accepted_once(team: Team) -> None:
    """A TOTP code logs in once; the same code again (or the one used to enable MFA) is
    refused as a replay."""
    token = member_token(team.client, team.owner, "dev@acme.test")
    enrolment = _enrol(team, token)
    enabling_code = enrolment.enabling_code
    next_code = current_code(enrolment.seed, time.time() + 30)
    assert _login_attempt(team, "dev@acme.test", PASSWORD).json()["error"]["code"] == "mfa_required"
    replayed = _login_attempt(team, "dev@acme.test", PASSWORD, totp=enabling_code)
    assert replayed.status_code == 401
    assert _login_attempt(team, "dev@acme.test", PASSWORD, totp=next_code).status_code == 200
    again = _login_attempt(team, "dev@acme.test", PASSWORD, totp=next_code)
    assert again.status_code == 401
    assert again.json()["error"]["message"] == "invalid MFA code"


def test_recovery_code_works_once(team: Team) -> None:
    """Each recovery code logs in exactly once; another code still works afterwards."""
    token = member_token(team.client, team.owner, "dev@acme.test")
    codes = _enrol(team, token).recovery_codes
    assert len(set(codes)) == 10
    assert _login_attempt(team, "dev@acme.test", PASSWORD, totp=codes[0]).status_code == 200
    assert _login_attempt(team, "dev@acme.test", PASSWORD, totp=codes[0]).status_code == 401
    assert _login_attempt(team, "dev@acme.test", PASSWORD, totp=codes[1].upper()).status_code == 200


def test_mfa_disable_refuses_a_replayed_code_and_old_recovery_codes_die(team: Team) -> None:
    """Disabling MFA refuses the code that enabled it (a replay); after disabling and
    enrolling again, the first enrolment's recovery codes no longer work."""
    token = member_token(team.client, team.owner, "dev@acme.test")
    first = _enrol(team, token)
    old_codes = first.recovery_codes
    replay = team.client.post(
        f"{API}/mfa/disable", json={"code": first.enabling_code}, headers=bearer(token)
    )
    assert replay.status_code == 400
    assert replay.json()["error"]["field"] == "code"
    disabled = team.client.post(
        f"{API}/mfa/disable", json={"code": old_codes[0]}, headers=bearer(token)
    )
    assert disabled.status_code == 200
    assert _login_attempt(team, "dev@acme.test", PASSWORD).status_code == 200  # no MFA now
    _enrol(team, token)
    stale = _login_attempt(team, "dev@acme.test", PASSWORD, totp=old_codes[1])
    assert stale.status_code == 401


def test_totp_code_in_other_digits_is_refused_not_a_crash(team: Team) -> None:
    """A code typed in full-width digits is refused like any wrong code, at login and at
    enrolment, instead of crashing the server."""
    token = member_token(team.client, team.owner, "dev@acme.test")
    seed = _enrol(team, token).seed
    wide = "".join(chr(0xFF10 + int(d)) for d in current_code(seed, time.time() + 30))
    other = member_token(team.client, team.owner, "other@acme.test")
    team.client.post(f"{API}/mfa/setup", headers=bearer(other))
    with client_for(team.services, team.settings, raise_server_exceptions=False) as client:
        at_login = client.post(
            f"{API}/auth/login", json={"email": "dev@acme.test", "password": PASSWORD, "totp": wide}
        )
        at_enrolment = client.post(f"{API}/mfa/enable", json={"code": wide}, headers=bearer(other))
    assert at_login.status_code == 401
    assert at_enrolment.status_code == 400


def test_org_requiring_mfa_blocks_members_without_it_until_they_enrol(team: Team) -> None:
    """With require_mfa on, a member without MFA can do nothing but enrol, see who they are
    and log out (reads on the hot path are refused too); after enrolling everything works
    again and MFA cannot be turned off."""
    token = member_token(team.client, team.owner, "dev@acme.test")
    assert team.get(SECRET, token).status_code == 200
    required = team.client.patch(
        f"{API}/org", json={"require_mfa": True}, headers=bearer(team.owner)
    )
    assert required.status_code == 200
    blocked = [
        team.get(SECRET, token),
        team.get(f"{API}/projects", token),
        team.client.post(f"{API}/keys", json={"name": "k"}, headers=bearer(token)),
        team.get(f"{API}/tokens", token),
    ]
    for response in blocked:
        assert response.status_code == 403
        assert "requires MFA" in response.json()["error"]["message"]
    assert team.get(SECRET, team.owner).status_code == 403  # the owner has no MFA either
    me = team.get(f"{API}/whoami", token)
    assert me.status_code == 200 and me.json()["mfa_enrolment_required"] is True
    spare = login(team.client, "dev@acme.test")["token"]
    assert team.client.post(f"{API}/auth/logout", headers=bearer(spare)).status_code == 200
    codes = _enrol(team, token).recovery_codes
    assert team.get(SECRET, token).json()["value"] == "s3cret-value"
    kept = team.client.post(f"{API}/mfa/disable", json={"code": codes[0]}, headers=bearer(token))
    assert kept.status_code == 409


# --- passwords and sessions ---------------------------------------------------------------


def _session(team: Team, email: str, password: str = PASSWORD) -> str:
    """Logs in for a browser session; returns the session cookie's value."""
    response = _login_attempt(team, email, password, mode="session")
    assert response.status_code == 200, response.text
    assert "token" not in response.json()
    cookie: str = response.cookies["coffer_session"]
    return cookie


def _cookie_client(team: Team, cookie: str) -> TestClient:
    """A second client on the same app that sends only the session cookie."""
    client = TestClient(team.client.app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000))
    client.cookies.set("coffer_session", cookie)
    return client


def test_password_change_revokes_other_logins_but_keeps_the_current_one(team: Team) -> None:
    """Changing a password ends every other session and CLI token at once, keeps the token
    used for the change (and API keys), and only the new password logs in afterwards."""
    current = member_token(team.client, team.owner, "dev@acme.test")
    other = login(team.client, "dev@acme.test")["token"]
    cookie = _session(team, "dev@acme.test")
    key = team.client.post(f"{API}/keys", json={"name": "ci"}, headers=bearer(current)).json()
    new_password = "a much better passphrase"
    changed = team.client.post(
        f"{API}/auth/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=bearer(current),
    )
    assert changed.status_code == 200
    assert changed.json() == {"changed": True, "sessions_revoked": 2}
    assert team.get(f"{API}/whoami", current).status_code == 200
    assert team.get(f"{API}/whoami", key["token"]).status_code == 200
    assert team.get(f"{API}/whoami", other).status_code == 401
    assert team.get(SECRET, other).status_code == 401
    with _cookie_client(team, cookie) as browser:
        assert browser.get(f"{API}/whoami").status_code == 401
    assert _login_attempt(team, "dev@acme.test", PASSWORD).status_code == 401
    assert _login_attempt(team, "dev@acme.test", new_password).status_code == 200
    assert "auth.password_changed" in audit_actions(team.services.engine)


def test_refused_password_change_changes_nothing(team: Team) -> None:
    """A weak new password or a wrong current one is refused and revokes no session."""
    current = member_token(team.client, team.owner, "dev@acme.test")
    other = login(team.client, "dev@acme.test")["token"]
    weak = team.client.post(
        f"{API}/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=bearer(current),
    )
    assert weak.status_code == 400
    assert weak.json()["error"]["field"] == "new_password"
    wrong = team.client.post(
        f"{API}/auth/password",
        json={"current_password": "not it at all", "new_password": "a fine new passphrase"},
        headers=bearer(current),
    )
    assert wrong.status_code == 401
    assert team.get(f"{API}/whoami", other).status_code == 200
    assert _login_attempt(team, "dev@acme.test", PASSWORD).status_code == 200


@pytest.mark.parametrize(
    ("base_url", "secure"),
    [
        ("http://127.0.0.1", False),
        ("http://localhost:8390", False),
        ("http://[::1]:8390", False),
        ("http://coffer.example.com", True),
        ("https://coffer.example.com", True),
        ("https://127.0.0.1", True),
    ],
)
def test_session_cookie_flags(open_team: TeamFactory, base_url: str, secure: bool) -> None:
    """The session cookie is HttpOnly, SameSite=Lax, Path=/, and Secure unless the server is
    reached over plain HTTP on a loopback address."""
    team = open_team(base_url=base_url)
    response = _login_attempt(team, OWNER_EMAIL, PASSWORD, mode="session")
    assert response.status_code == 200
    header = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert header.startswith("coffer_session=coffer_sess_")
    assert {"httponly", "path", "max-age"} <= attributes
    assert "samesite=lax" in header.lower()
    assert "max-age=43200" in header.lower()  # COFFER_SESSION_MAX, 12 h
    assert ("secure" in attributes) is secure


def test_cookie_changes_need_the_csrf_header_and_a_same_site_origin(team: Team) -> None:
    """A cookie-authenticated POST without X-Requested-With: coffer, or marked
    Sec-Fetch-Site: cross-site, is refused with 403 and changes nothing."""
    cookie = _session(team, OWNER_EMAIL)
    before = row_counts(team.services.engine)
    with _cookie_client(team, cookie) as browser:
        assert browser.get(f"{API}/projects").status_code == 200
        plain = browser.post(f"{API}/projects", json={"name": "csrf"})
        cross = browser.post(
            f"{API}/projects",
            json={"name": "csrf"},
            headers={"X-Requested-With": "coffer", "Sec-Fetch-Site": "cross-site"},
        )
        for refused in (plain, cross):
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "access_denied"
        assert row_counts(team.services.engine) == before
        other_methods = [
            browser.put(SECRET, json={"value": "csrf"}),
            browser.delete(f"{API}/projects/app"),
            browser.patch(f"{API}/org", json={"require_mfa": True}),
            browser.post(f"{API}/auth/logout"),
        ]
        assert [r.status_code for r in other_methods] == [403] * 4
        assert row_counts(team.services.engine) == before
        assert browser.get(f"{API}/whoami").status_code == 200
        made = browser.post(
            f"{API}/projects",
            json={"name": "csrf"},
            headers={"X-Requested-With": "coffer", "Sec-Fetch-Site": "same-origin"},
        )
        assert made.status_code == 201


def test_session_token_is_refused_as_a_bearer_token(team: Team) -> None:
    """A session token works only as the cookie: sent as Bearer (hot read path included) it
    gets 401, and a CLI token sent as the cookie gets 401 too."""
    cookie = _session(team, OWNER_EMAIL)
    for url in (f"{API}/whoami", SECRET):
        assert team.get(url, cookie).status_code == 401
    with _cookie_client(team, team.owner) as browser:
        assert browser.get(f"{API}/whoami").status_code == 401
    with _cookie_client(team, cookie) as browser:
        assert browser.get(f"{API}/whoami").status_code == 200


def test_idle_session_expires(open_team: TeamFactory) -> None:
    """A session unused for COFFER_SESSION_IDLE stops working; CLI tokens are not idle-bound."""
    team = open_team(session_idle=1)
    cookie = _session(team, OWNER_EMAIL)
    with _cookie_client(team, cookie) as browser:
        assert browser.get(f"{API}/whoami").status_code == 200
        time.sleep(1.5)
        assert browser.get(f"{API}/whoami").status_code == 401
    assert team.get(f"{API}/whoami", team.owner).status_code == 200


def test_session_expires_at_its_maximum_age_even_in_use(open_team: TeamFactory) -> None:
    """A session ends COFFER_SESSION_MAX after the login however busy it is."""
    team = open_team(session_max=2)
    cookie = _session(team, OWNER_EMAIL)
    with _cookie_client(team, cookie) as browser:
        statuses = []
        for _ in range(6):
            statuses.append(browser.get(f"{API}/whoami").status_code)
            time.sleep(0.5)
    assert statuses[:3] == [200, 200, 200]
    assert statuses[-1] == 401


def test_logout_ends_the_session_and_clears_the_cookie(team: Team) -> None:
    """Logging out of a browser session revokes it (the old cookie gets 401) and tells the
    browser to drop the cookie."""
    cookie = _session(team, OWNER_EMAIL)
    with _cookie_client(team, cookie) as browser:
        out = browser.post(f"{API}/auth/logout", headers={"X-Requested-With": "coffer"})
        assert out.status_code == 200
        cleared = out.headers["set-cookie"].lower()
        assert cleared.startswith("coffer_session=") and "max-age=0" in cleared
    with _cookie_client(team, cookie) as replay:
        assert replay.get(f"{API}/whoami").status_code == 401


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_login_refuses_bodies_a_cross_site_form_can_send(team: Team, content_type: str) -> None:
    """A login posted as a form or plain text (what another site can send without a
    preflight) is refused, so no site can sign a browser into an account (login CSRF)."""
    body = f'{{"email": "{OWNER_EMAIL}", "password": "{PASSWORD}", "mode": "session"}}'
    for url in (f"{API}/auth/login", f"{API}/invitations/accept"):
        response = team.client.post(url, content=body, headers={"Content-Type": content_type})
        assert response.status_code == 400
        assert "set-cookie" not in response.headers
