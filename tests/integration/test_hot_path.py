"""The hot path answers plain reads and writes exactly as the FastAPI routes would: same
status, same body, same headers, same audit entries, the same refusals."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from coffer.api.context import BlockingRunner
from coffer.api.write_batch import WriteBatcher
from coffer.bootstrap import build_services
from coffer.config import Settings
from coffer.domain.errors import InvalidInput, NotFound
from coffer.domain.secret_value import SecretValue
from coffer.services.secrets import SecretWrite
from tests.conftest import Vault
from tests.integration.api_helpers import audit_entries, secret_path
from tests.integration.team_helpers import bearer, client_for

API = "/api/v1"
PATH = secret_path("web", "development", "K")
PROTECTIVE = ("content-security-policy", "x-content-type-options", "cache-control")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """On PostgreSQL the node caches need Redis for their invalidation channel."""
    if settings.is_sqlite:
        return settings
    redis_url = os.environ.get("COFFER_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("the hot write path on PostgreSQL needs COFFER_TEST_REDIS_URL")
    return settings.with_overrides(redis_url=redis_url)


@pytest.fixture
def client(vault: Vault) -> Iterator[TestClient]:
    with client_for(vault.services, vault.settings) as api:
        api.headers.update(bearer(vault.token))
        assert api.post(f"{API}/projects", json={"name": "web"}).status_code == 201
        assert api.put(PATH, json={"value": "first"}).status_code == 200
        assert api.get(PATH).status_code == 200  # the token's holder is cached from here on
        yield api


def _full_path(client: TestClient, body: dict[str, object]) -> dict[str, object]:
    """A write the hot path passes on (a field it does not handle), so the route answers."""
    answer = client.put(PATH, json={**body, "max_reads": None})
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def test_a_plain_write_answers_what_the_route_answers(
    client: TestClient, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hot and full path give the same body shape and headers, and each records one
    ``secret.updated`` entry with the same metadata; only the full path authenticates
    through FastAPI's dependency."""
    routed: list[str] = []
    authenticate = vault.services.auth.authenticate
    monkeypatch.setattr(
        vault.services.auth,
        "authenticate",
        lambda *args, **kwargs: routed.append("route") or authenticate(*args, **kwargs),
    )
    hot = client.put(PATH, json={"value": "second", "comment": "why"})
    assert routed == []
    assert hot.status_code == 200, hot.text
    full = _full_path(client, {"value": "third", "comment": "why"})
    assert routed == ["route"]
    assert hot.json() == {**full, "version": 2}
    assert full["version"] == 3
    for name in PROTECTIVE:
        assert name in hot.headers, name
    updates = [e for e in audit_entries(vault.services.engine) if e["action"] == "secret.updated"]
    assert len(updates) == 2
    assert updates[0]["metadata"] == updates[1]["metadata"] | {"version": 2}
    assert client.get(PATH).json()["value"] == "third"


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (secret_path("web", "nowhere", "K"), {"value": "x"}, 404, "not_found"),
        (secret_path("nothing", "development", "K"), {"value": "x"}, 404, "not_found"),
        (secret_path("web", "development", "bad key!"), {"value": "x"}, 400, "invalid_input"),
        (PATH, {"value": "x" * 70_000}, 413, "too_large"),
        (PATH, {"value": 5}, 400, "invalid_input"),
        (PATH, {"value": "x", "colour": "red"}, 400, "invalid_input"),
    ],
)
def test_a_refused_write_is_refused_alike_and_changes_nothing(
    client: TestClient, vault: Vault, path: str, body: dict[str, object], status: int, code: str
) -> None:
    """Whatever path answers, bad input gets the route's status and error code and leaves
    the secret as it was."""
    answer = client.put(path, json=body)
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text
    assert client.get(PATH).json() | {"created_at": None} == {
        "key": "K",
        "version": 1,
        "value": "first",
        "created_at": None,
        "comment": None,
    }


def test_a_reader_cannot_write_through_the_hot_path(client: TestClient, vault: Vault) -> None:
    """A machine token scoped to read gets 403 for a write, its holder cached or not."""
    made = client.post(f"{API}/machines", json={"name": "ci", "scopes": ["web:development:read"]})
    assert made.status_code == 201, made.text
    token = client.post(f"{API}/machines/ci/tokens", json={}).json()["token"]
    for _ in range(2):  # first uncached, then cached by the read
        refused = client.put(PATH, json={"value": "stolen"}, headers=bearer(token))
        assert refused.status_code == 403, refused.text
        assert client.get(PATH, headers=bearer(token)).json()["value"] == "first"


def test_the_identity_rate_limit_applies_to_hot_writes(vault: Vault, settings: Settings) -> None:
    """With COFFER_RATE_LIMIT_IDENTITY at 5/minute the sixth request of a token is 429
    with Retry-After, on the hot path as on any route."""
    limited = settings.with_overrides(rate_limit_identity="5/minute")
    services = build_services(limited)
    try:
        with client_for(services, limited) as api:
            api.headers.update(bearer(vault.token))
            assert api.post(f"{API}/projects", json={"name": "web"}).status_code == 201
            answers = [api.put(PATH, json={"value": f"v{n}"}).status_code for n in range(5)]
            last = api.put(PATH, json={"value": "over"})
    finally:
        services.close()
    assert answers == [200] * 4 + [429]
    assert last.status_code == 429 and int(last.headers["retry-after"]) > 0


def test_writes_committed_together_keep_their_own_results(client: TestClient, vault: Vault) -> None:
    """Twenty writes arriving at once share one transaction: each gets its own version or
    its own error, a refused one (unknown environment, too long a comment) changes nothing,
    and every accepted one is audited."""
    batcher = WriteBatcher(vault.services.secrets, BlockingRunner(inline=vault.settings.is_sqlite))
    writes = [
        SecretWrite(vault.ctx, "web", "development", "K", SecretValue(f"v{n}")) for n in range(18)
    ]
    writes.insert(5, SecretWrite(vault.ctx, "web", "nowhere", "K", SecretValue("x")))
    writes.insert(
        9, SecretWrite(vault.ctx, "web", "development", "K", SecretValue("x"), "c" * 5000)
    )

    async def all_at_once() -> list[object]:
        return await asyncio.gather(*(batcher.write(w) for w in writes), return_exceptions=True)

    outcomes = asyncio.run(all_at_once())
    assert isinstance(outcomes[5], NotFound) and isinstance(outcomes[9], InvalidInput)
    versions = [o.version for o in outcomes if not isinstance(o, Exception)]  # type: ignore[attr-defined]
    assert versions == list(range(2, 20))
    assert client.get(PATH).json()["value"] == "v17"
    updates = [e for e in audit_entries(vault.services.engine) if e["action"] == "secret.updated"]
    assert len(updates) == 18


@pytest.mark.parametrize("rule", ["rate_limit_identity", "rate_limit_ip"])
def test_a_request_the_hot_path_passes_on_is_counted_once(
    vault: Vault, settings: Settings, rule: str
) -> None:
    """A read the hot path hands to the full stack (a read-limited secret) counts once
    against the per-identity and per-address limits: with 6/minute, the project, the write
    and four such reads pass, and the seventh request is refused."""
    limited = settings.with_overrides(**{rule: "6/minute"})
    services = build_services(limited)
    try:
        with client_for(services, limited) as api:
            api.headers.update(bearer(vault.token))
            assert api.post(f"{API}/projects", json={"name": "web"}).status_code == 201
            assert api.put(PATH, json={"value": "x", "max_reads": 10}).status_code == 200
            reads = [api.get(PATH).status_code for _ in range(5)]
    finally:
        services.close()
    assert reads == [200] * 4 + [429]
