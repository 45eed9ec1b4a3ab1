"""Matching a scan's keyed fingerprints with the vault, recording exposures and the rotation
report, on SQLite and PostgreSQL: services, the HTTP API, and a backup's round trip.

Organization acme (``team``) has project ``app`` with ``db/password`` in production; each
test adds what it needs. Fingerprints are made the way the CLI makes them."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.api.app import create_app
from coffer.bootstrap import build_services
from coffer.bootstrap.operator import backup_vault, restore_vault
from coffer.config import Settings
from coffer.crypto.scan_fingerprints import encode_nonce, keyed_fingerprint, new_nonce
from coffer.domain.errors import InvalidInput, NotFound, TooLarge
from coffer.domain.exposures import (
    MAX_FINDINGS,
    MAX_LOCATION_BYTES,
    VERSIONS_COMPARED,
    MatchRequest,
)
from coffer.domain.models import CallContext
from coffer.domain.read_limits import ReadLimits
from coffer.domain.secret_value import SecretValue
from coffer.services.exposures import parse_match_request
from coffer.services.secret_cipher import SecretCipher
from coffer.storage.tables import audit_log, secret_exposures, secret_versions, secrets
from tests.integration.api_helpers import all_rows_text, row_counts
from tests.integration.team_helpers import API, CLIENT_ADDRESS, Team, bearer

LEAKED = "sk_live_4eC39HqLyjWDarjtT1zdp7dcLEAKED"  # fake, Stripe-shaped
UNRELATED = "ghp_notInTheVault0000000000000000000000"  # fake, never stored
MATCH = f"{API}/exposures/match"
REPORT = f"{API}/reports/rotation"


def ctx_of(team: Team, token: str) -> CallContext:
    """The call context of ``token``'s identity, connecting from the test address."""
    return CallContext(
        actor=team.services.auth.authenticate(token), source_ip=CLIENT_ADDRESS, user_agent="t"
    )


def request_for(
    secrets: Sequence[str],
    location: str = "src/settings.py:12",
    *,
    nonce: bytes | None = None,
    project: str | None = None,
) -> MatchRequest:
    """A match request for ``secrets`` as the CLI builds it, under ``nonce`` (a fresh one
    by default)."""
    nonce = new_nonce() if nonce is None else nonce
    return parse_match_request(
        encode_nonce(nonce),
        [
            {
                "fingerprint": keyed_fingerprint(nonce, secret),
                "rule_id": "stripe-secret-key",
                "location": location,
            }
            for secret in secrets
        ],
        project,
    )


@pytest.fixture
def decryptions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The keys of every version the secret cipher opens from now on (the real cipher
    still opens them)."""
    opened: list[str] = []
    real_open = SecretCipher.open_with

    def counting_open(self: SecretCipher, *args: Any) -> SecretValue:
        opened.append(args[3])
        return real_open(self, *args)

    monkeypatch.setattr(SecretCipher, "open_with", counting_open)
    yield opened


def store(team: Team, env: str, key: str, value: str) -> int:
    """Writes ``value`` as the owner and returns the new version."""
    owner = ctx_of(team, team.owner)
    return team.services.secrets.set(owner, "app", env, key, SecretValue(value)).version


def exposed_entries(team: Team) -> list[dict[str, Any]]:
    """The ``secret.exposed`` audit entries, oldest first."""
    with team.services.engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log)
            .where(audit_log.c.action == "secret.exposed")
            .order_by(audit_log.c.seq)
        )
        return [dict(row._mapping) for row in rows]


def exposure_rows(team: Team) -> list[dict[str, Any]]:
    """Every row of ``secret_exposures``."""
    with team.services.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(secret_exposures))]


def machine_token(team: Team, name: str, scope: str) -> str:
    """Creates a machine identity with ``scope`` and returns a token of it."""
    owner = bearer(team.owner)
    made = team.client.post(
        f"{API}/machines", json={"name": name, "scopes": [scope]}, headers=owner
    )
    assert made.status_code == 201, made.text
    issued = team.client.post(f"{API}/machines/{name}/tokens", json={}, headers=owner)
    assert issued.status_code == 201, issued.text
    token: str = issued.json()["token"]
    return token


def report(team: Team, token: str, **params: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The rotation report over HTTP, keyed by (environment, key) of project app."""
    response = team.client.get(REPORT, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return {
        (s["environment"], s["key"]): s for s in response.json()["secrets"] if s["project"] == "app"
    }


def test_a_stored_value_is_named_and_recorded_as_exposed(team: Team) -> None:
    """A finding equal to a stored value matches its project, environment, key and version
    (current); an unrelated finding does not; one exposure row and one secret.exposed entry
    name where it leaked, and neither holds the value or a fingerprint."""
    version = store(team, "production", "STRIPE_KEY", LEAKED)
    request = request_for([UNRELATED, LEAKED])
    matches = team.services.exposures.match(ctx_of(team, team.owner), request)
    assert [(m.index, m.project, m.environment, m.key, m.version, m.current) for m in matches] == [
        (1, "app", "production", "STRIPE_KEY", version, True)
    ]
    [row] = exposure_rows(team)
    assert (row["version"], row["rule_id"], row["location"]) == (
        version,
        "stripe-secret-key",
        "src/settings.py:12",
    )
    [entry] = exposed_entries(team)
    assert (entry["project"], entry["environment"], entry["key"]) == (
        "app",
        "production",
        "STRIPE_KEY",
    )
    assert entry["metadata"] == {
        "version": version,
        "current": True,
        "rule_id": "stripe-secret-key",
        "location": "src/settings.py:12",
    }
    stored = all_rows_text(team.services.engine)
    assert LEAKED not in stored
    for finding in request.findings:
        assert finding.fingerprint not in stored


def test_the_same_leak_reported_again_is_recorded_once(team: Team) -> None:
    """Scanning the same place twice (each time under a new nonce) matches both times but
    records one exposure and one audit entry; another place is a second exposure."""
    store(team, "production", "STRIPE_KEY", LEAKED)
    owner = ctx_of(team, team.owner)
    for _ in range(2):
        assert len(team.services.exposures.match(owner, request_for([LEAKED]))) == 1
    assert len(exposure_rows(team)) == len(exposed_entries(team)) == 1
    team.services.exposures.match(owner, request_for([LEAKED], location="README.md:3"))
    assert len(exposure_rows(team)) == len(exposed_entries(team)) == 2


def test_an_old_version_matches_as_not_current(team: Team) -> None:
    """A value replaced since matches its own version with current false, and the report
    does not ask to rotate the secret."""
    old = store(team, "staging", "API_TOKEN", LEAKED)
    store(team, "staging", "API_TOKEN", "a-newer-value-0000")
    [match] = team.services.exposures.match(ctx_of(team, team.owner), request_for([LEAKED]))
    assert (match.key, match.version, match.current) == ("API_TOKEN", old, False)
    entry = report(team, team.owner)[("staging", "API_TOKEN")]
    assert entry["status"] == "ok"
    assert [(e["version"], e["current"]) for e in entry["exposures"]] == [(old, False)]


def test_only_the_newest_versions_are_compared(team: Team) -> None:
    """A value older than the newest ``VERSIONS_COMPARED`` versions is not matched (the
    documented bound); the oldest one inside the bound is."""
    for number in range(VERSIONS_COMPARED + 1):
        store(team, "development", "ROLLING", f"rolling-value-{number:04d}")
    owner = ctx_of(team, team.owner)
    assert team.services.exposures.match(owner, request_for(["rolling-value-0000"])) == []
    [match] = team.services.exposures.match(owner, request_for(["rolling-value-0001"]))
    assert (match.version, match.current) == (2, False)


def test_a_sealed_secret_gives_no_match(team: Team) -> None:
    """A secret sealed by its last allowed read (delete=false) answers no match, in any
    version, and records nothing: a reader cannot confirm guesses about a value it can no
    longer read."""
    owner = ctx_of(team, team.owner)
    store(team, "production", "ONE_READ", "an-older-sealed-value-01")
    team.services.secrets.set(
        owner,
        "app",
        "production",
        "ONE_READ",
        SecretValue(LEAKED),
        limits=ReadLimits(max_reads=1, burn=False),
    )
    assert team.services.exposures.match(owner, request_for([LEAKED])) != []
    team.services.secrets.get(owner, "app", "production", "ONE_READ")
    for value in (LEAKED, "an-older-sealed-value-01"):
        assert team.services.exposures.match(owner, request_for([value], "b.py:1")) == []
    assert [row["location"] for row in exposure_rows(team)] == ["src/settings.py:12"]


def test_a_secret_out_of_reads_gives_no_match(team: Team) -> None:
    """A read-limited secret whose count has reached its limit (a row every read refuses)
    answers no match; one with reads left matches, and the comparison counts no read."""
    owner = ctx_of(team, team.owner)
    for key in ("SPENT", "LEFT"):
        team.services.secrets.set(
            owner,
            "app",
            "staging",
            key,
            SecretValue(f"{key}-{LEAKED}"),
            limits=ReadLimits(max_reads=3),
        )
    with team.services.engine.begin() as conn:
        conn.execute(sa.update(secrets).where(secrets.c.key == "SPENT").values(read_count=3))
    assert team.services.exposures.match(owner, request_for([f"SPENT-{LEAKED}"])) == []
    [match] = team.services.exposures.match(owner, request_for([f"LEFT-{LEAKED}"]))
    assert match.key == "LEFT"
    left = team.services.secrets.info(owner, "app", "staging", "LEFT")
    assert left.limits.read_count == 0


def test_later_batches_under_the_same_nonce_decrypt_nothing(
    team: Team, decryptions: list[str]
) -> None:
    """The first batch of a scan opens each readable version once; a second batch under the
    same nonce opens none yet still matches and records its leak; a new scan (new nonce)
    and another caller under the same nonce compute afresh."""
    store(team, "production", "STRIPE_KEY", LEAKED)
    store(team, "development", "DEV_KEY", "dev-only-value-123456")
    owner = ctx_of(team, team.owner)
    nonce = new_nonce()
    assert team.services.exposures.match(owner, request_for([UNRELATED], nonce=nonce)) == []
    first = len(decryptions)
    assert first == 3  # db/password, STRIPE_KEY, DEV_KEY
    [match] = team.services.exposures.match(owner, request_for([LEAKED], "later.py:9", nonce=nonce))
    assert (match.key, match.current) == ("STRIPE_KEY", True)
    assert len(decryptions) == first
    assert [row["location"] for row in exposure_rows(team)] == ["later.py:9"]
    team.services.exposures.match(owner, request_for([LEAKED]))
    assert len(decryptions) == 2 * first
    robot = ctx_of(team, machine_token(team, "dev-robot", "app:development:read"))
    assert team.services.exposures.match(robot, request_for([LEAKED], nonce=nonce)) == []
    assert decryptions[2 * first :] == ["DEV_KEY"]


def test_a_version_sealed_after_the_first_batch_is_not_recorded(team: Team) -> None:
    """A secret sealed between two batches of one scan is neither matched nor recorded by
    the second, although its fingerprint was computed for the first."""
    owner = ctx_of(team, team.owner)
    team.services.secrets.set(
        owner,
        "app",
        "production",
        "ONE_READ",
        SecretValue(LEAKED),
        limits=ReadLimits(max_reads=1, burn=False),
    )
    nonce = new_nonce()
    assert team.services.exposures.match(owner, request_for([UNRELATED], nonce=nonce)) == []
    team.services.secrets.get(owner, "app", "production", "ONE_READ")
    assert team.services.exposures.match(owner, request_for([LEAKED], nonce=nonce)) == []
    assert exposure_rows(team) == [] and exposed_entries(team) == []


def test_the_project_field_limits_the_comparison(team: Team, decryptions: list[str]) -> None:
    """With ``project`` only that project's secrets are opened and matched; an unknown
    project is NotFound and a malformed name InvalidInput, both naming ``project``."""
    store(team, "production", "STRIPE_KEY", LEAKED)
    owner_token = bearer(team.owner)
    made = team.client.post(f"{API}/projects", json={"name": "other"}, headers=owner_token)
    assert made.status_code == 201, made.text
    owner = ctx_of(team, team.owner)
    team.services.secrets.set(owner, "other", "production", "ELSEWHERE", SecretValue(LEAKED))
    matches = team.services.exposures.match(owner, request_for([LEAKED], project="other"))
    assert [(m.project, m.key) for m in matches] == [("other", "ELSEWHERE")]
    assert decryptions == ["ELSEWHERE"]
    with pytest.raises(NotFound) as missing:
        team.services.exposures.match(owner, request_for([LEAKED], project="nosuch"))
    assert missing.value.field == "project"
    with pytest.raises(InvalidInput) as malformed:
        request_for([LEAKED], project="no such/project")
    assert malformed.value.field == "project"


def test_more_versions_than_the_bound_answer_413_naming_project(team: Team) -> None:
    """A service bound to 2 versions per request refuses a caller whose readable secrets
    hold 3 (413 ``too_large`` naming ``project``, nothing recorded) and matches when the
    request names a project within the bound."""
    store(team, "production", "STRIPE_KEY", LEAKED)  # with db/password: 2 versions in app
    owner_token = bearer(team.owner)
    team.client.post(f"{API}/projects", json={"name": "other"}, headers=owner_token)
    team.services.secrets.set(
        ctx_of(team, team.owner), "other", "production", "X", SecretValue("x-value-000001")
    )
    bounded = team.services.exposures.with_max_versions(2)
    with pytest.raises(TooLarge) as refused:
        bounded.match(ctx_of(team, team.owner), request_for([LEAKED]))
    assert refused.value.field == "project"
    assert "3 versions" in refused.value.message and "2" in refused.value.message
    app = create_app(dataclasses.replace(team.services, exposures=bounded), max_body_bytes=1 << 20)
    nonce = new_nonce()
    body = {
        "nonce": encode_nonce(nonce),
        "findings": [
            {"fingerprint": keyed_fingerprint(nonce, LEAKED), "rule_id": "st", "location": "a:1"}
        ],
    }
    with TestClient(app) as client:
        response = client.post(MATCH, json=body, headers=owner_token)
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("too_large", "project")
        assert exposure_rows(team) == []
        fits = client.post(MATCH, json=body | {"project": "app"}, headers=owner_token)
    assert fits.status_code == 200, fits.text
    assert [m["key"] for m in fits.json()["matches"]] == ["STRIPE_KEY"]


def test_a_value_stored_twice_matches_both_secrets(team: Team) -> None:
    """One finding whose value is stored under two keys gets a match for each."""
    store(team, "production", "STRIPE_KEY", LEAKED)
    store(team, "development", "STRIPE_KEY_COPY", LEAKED)
    matches = team.services.exposures.match(ctx_of(team, team.owner), request_for([LEAKED]))
    assert {(m.index, m.environment, m.key) for m in matches} == {
        (0, "production", "STRIPE_KEY"),
        (0, "development", "STRIPE_KEY_COPY"),
    }


def test_an_identity_without_read_access_gets_no_match(team: Team) -> None:
    """A machine that may read only development gets no match for a production value (and
    records nothing), but does for a development one."""
    store(team, "production", "STRIPE_KEY", LEAKED)
    store(team, "development", "DEV_KEY", "dev-only-value-123456")
    robot = ctx_of(team, machine_token(team, "ci-robot", "app:development:read"))
    assert team.services.exposures.match(robot, request_for([LEAKED])) == []
    assert exposure_rows(team) == [] and exposed_entries(team) == []
    [match] = team.services.exposures.match(robot, request_for(["dev-only-value-123456"]))
    assert (match.environment, match.key) == ("development", "DEV_KEY")
    [entry] = exposed_entries(team)
    assert entry["actor_kind"] == "machine"


def test_writing_a_new_version_resolves_the_exposure(team: Team) -> None:
    """After a match the report says rotate now, listing the secret first with where it
    leaked; writing a new version makes it ok while the exposure stays as history."""
    version = store(team, "production", "STRIPE_KEY", LEAKED)
    team.services.exposures.match(ctx_of(team, team.owner), request_for([LEAKED]))
    response = team.client.get(REPORT, headers=bearer(team.owner))
    first = response.json()["secrets"][0]
    assert (first["key"], first["status"], first["current_version"]) == (
        "STRIPE_KEY",
        "rotate now",
        version,
    )
    assert first["age_days"] == 0
    [exposure] = first["exposures"]
    assert exposure["location"] == "src/settings.py:12"
    assert exposure["rule_id"] == "stripe-secret-key"
    assert (exposure["version"], exposure["current"]) == (version, True)
    assert report(team, team.owner)[("production", "db/password")]["status"] == "ok"
    store(team, "production", "STRIPE_KEY", "rotated-value-0001")
    after = report(team, team.owner)[("production", "STRIPE_KEY")]
    assert (after["status"], after["current_version"]) == ("ok", version + 1)
    assert [(e["version"], e["current"]) for e in after["exposures"]] == [(version, False)]


def test_report_shows_only_readable_secrets_and_filters_by_project(team: Team) -> None:
    """A machine reading development sees only development's secrets; ``project`` filters,
    an unknown project is NotFound, and a project it cannot read is refused."""
    store(team, "development", "DEV_KEY", "dev-only-value-123456")
    robot = machine_token(team, "reporter", "app:development:read")
    assert set(report(team, robot)) == {("development", "DEV_KEY")}
    assert set(report(team, robot, project="app")) == {("development", "DEV_KEY")}
    team.client.post(f"{API}/projects", json={"name": "other"}, headers=bearer(team.owner))
    refused = team.client.get(REPORT, params={"project": "other"}, headers=bearer(robot))
    assert refused.status_code == 403, refused.text
    with pytest.raises(NotFound) as missing:
        team.services.rotation_report.report(ctx_of(team, robot), "nosuchproject")
    assert missing.value.field == "project"


def test_deleting_the_secret_deletes_its_exposures(team: Team) -> None:
    """Exposures go with their secret (they describe its versions)."""
    store(team, "production", "STRIPE_KEY", LEAKED)
    owner = ctx_of(team, team.owner)
    team.services.exposures.match(owner, request_for([LEAKED]))
    assert len(exposure_rows(team)) == 1
    team.services.secrets.delete(owner, "app", "production", "STRIPE_KEY")
    assert exposure_rows(team) == []
    assert ("production", "STRIPE_KEY") not in report(team, team.owner)


@pytest.mark.parametrize(
    ("nonce", "rule"),
    [
        (encode_nonce(b"x" * 15), "16 to 64 bytes"),
        (encode_nonce(b"x" * 65), "16 to 64 bytes"),
        ("not base64url!", "base64url"),
        ("", "16 to 64 bytes"),
    ],
)
def test_a_bad_nonce_is_refused_naming_it(team: Team, nonce: str, rule: str) -> None:
    """A nonce shorter than 16 bytes, longer than 64 or not base64url answers 400 naming
    ``nonce`` and the rule, and changes nothing."""
    store(team, "production", "STRIPE_KEY", LEAKED)
    before = row_counts(team.services.engine)
    body = {
        "nonce": nonce,
        "findings": [{"fingerprint": "0" * 64, "rule_id": "r", "location": "a:1"}],
    }
    response = team.client.post(MATCH, json=body, headers=bearer(team.owner))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_input", "nonce")
    assert rule in error["message"]
    assert row_counts(team.services.engine) == before


def test_bad_findings_are_refused_naming_the_field() -> None:
    """No findings, more than 10,000, a fingerprint that is not 64 lowercase hex characters,
    or a location with a control character: InvalidInput naming the field, without echoing
    the fingerprint."""
    nonce = encode_nonce(new_nonce())
    good = {"fingerprint": "a" * 64, "rule_id": "r", "location": "a.py:1"}
    cases: list[tuple[list[dict[str, Any]], str]] = [
        ([], "findings"),
        ([good] * (MAX_FINDINGS + 1), "findings"),
        ([good, {**good, "fingerprint": "A" * 64}], "findings.1.fingerprint"),
        ([{**good, "fingerprint": "ab" * 16}], "findings.0.fingerprint"),
        ([{**good, "location": "a.py:1\x1b[2J"}], "findings.0.location"),
        ([{**good, "rule_id": ""}], "findings.0.rule_id"),
    ]
    for findings, field in cases:
        with pytest.raises(InvalidInput) as refused:
            parse_match_request(nonce, findings)
        assert refused.value.field == field, refused.value.message
        assert "AAAA" not in refused.value.message and "abab" not in refused.value.message


def test_a_long_non_ascii_location_is_recorded_up_to_the_byte_limit(team: Team) -> None:
    """A location of ``MAX_LOCATION_BYTES`` bytes of two-byte characters is recorded whole
    (PostgreSQL indexes it); one of 1000 four-byte characters (4000 bytes) answers 400
    naming ``findings.0.location`` and the byte rule, and changes nothing (PostgreSQL
    cannot index it: it once answered 500)."""
    store(team, "production", "STRIPE_KEY", LEAKED)
    longest = "\u00e9" * ((MAX_LOCATION_BYTES - 2) // 2) + ":1"
    assert len(longest.encode("utf-8")) == MAX_LOCATION_BYTES
    nonce = new_nonce()
    finding = {"fingerprint": keyed_fingerprint(nonce, LEAKED), "rule_id": "st"}
    body = {"nonce": encode_nonce(nonce), "findings": [{**finding, "location": longest}]}
    response = team.client.post(MATCH, json=body, headers=bearer(team.owner))
    assert response.status_code == 200, response.text
    assert len(response.json()["matches"]) == 1
    assert [row["location"] for row in exposure_rows(team)] == [longest]
    before = row_counts(team.services.engine)
    # Random, so that PostgreSQL cannot compress the index entry below its size limit.
    pick = random.Random(8)
    too_long = "".join(chr(pick.randrange(0x20000, 0x2A6E0)) for _ in range(1000))
    body = {"nonce": encode_nonce(nonce), "findings": [{**finding, "location": too_long}]}
    response = team.client.post(MATCH, json=body, headers=bearer(team.owner))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == "findings.0.location"
    assert f"{MAX_LOCATION_BYTES} bytes" in error["message"]
    assert row_counts(team.services.engine) == before


def test_the_api_answers_matches_by_index(team: Team) -> None:
    """``POST /exposures/match`` answers the documented shape for a body built by hand."""
    version = store(team, "production", "STRIPE_KEY", LEAKED)
    nonce = new_nonce()
    body = {
        "nonce": encode_nonce(nonce),
        "findings": [
            {
                "fingerprint": keyed_fingerprint(nonce, UNRELATED),
                "rule_id": "gh",
                "location": "x:1",
            },
            {"fingerprint": keyed_fingerprint(nonce, LEAKED), "rule_id": "st", "location": "y:2"},
        ],
    }
    response = team.client.post(MATCH, json=body, headers=bearer(team.owner))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "matches": [
            {
                "index": 1,
                "project": "app",
                "environment": "production",
                "key": "STRIPE_KEY",
                "version": version,
                "current": True,
            }
        ]
    }
    anonymous = team.client.post(MATCH, json=body)
    assert anonymous.status_code == 401


def test_exposures_survive_a_backup_and_restore(
    team: Team, settings: Settings, tmp_path: Path
) -> None:
    """A backup holds the exposures; restored into an empty SQLite vault, the rotation
    report still says rotate now for the leaked secret."""
    store(team, "production", "STRIPE_KEY", LEAKED)
    team.services.exposures.match(ctx_of(team, team.owner), request_for([LEAKED]))
    archive = tmp_path / "vault.backup"
    backup_vault(settings, archive)
    target_dir = tmp_path / "restored"
    target = Settings(
        directory=target_dir,
        database_url=f"sqlite:///{target_dir / 'coffer.db'}",
        root_key_file=target_dir / "root.key",
        argon2_memory_kib=1024,
        argon2_time_cost=1,
    )
    restore_vault(target, archive, root_key_file=settings.root_key_file)
    services = build_services(target)
    try:
        ctx = CallContext(actor=services.auth.authenticate(team.owner))
        [entry] = [e for e in services.rotation_report.report(ctx, "app") if e.key == "STRIPE_KEY"]
        assert entry.status.value == "rotate now"
        assert [e.location for e in entry.exposures] == ["src/settings.py:12"]
    finally:
        services.close()


def test_age_in_days_counts_from_the_current_version(team: Team) -> None:
    """A current version written ten days ago is reported ten days old."""
    store(team, "production", "OLD_KEY", "an-old-value-000001")
    ten_days_ago = time.time() - 10 * 86_400 - 60
    with team.services.engine.begin() as conn:
        secret_id = conn.execute(
            sa.select(secrets.c.id).where(secrets.c.key == "OLD_KEY")
        ).scalar_one()
        conn.execute(
            sa.update(secret_versions)
            .where(secret_versions.c.secret_id == secret_id)
            .values(created_at=ten_days_ago)
        )
    assert report(team, team.owner)[("production", "OLD_KEY")]["age_days"] == 10
