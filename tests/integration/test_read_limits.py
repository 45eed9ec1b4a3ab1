"""Vault secrets with a TTL or a read limit, over the HTTP API as a user sees them: exact
counting, burning and sealing, expiry, HEAD, limit changes, export, references, promotion,
the fast read path, the pruner, and refused input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.api.app import create_app
from coffer.bootstrap import build_services
from coffer.crypto.tokens import token_kind
from coffer.storage.tables import secret_versions, secrets
from tests.conftest import Vault
from tests.integration.api_helpers import (
    PROJECTS,
    env_path,
    get_value,
    last_audit_seq,
    listed_versions,
    put_secret,
    row_counts,
    secret_path,
)
from tests.integration.team_helpers import bearer, member_token

DEV = "development"
STG = "staging"
AUDIT = "/api/v1/audit"
MARK = "LIMITLEAK-3d9a61"  # a distinctive value that must never come back in an error


# -- helpers -------------------------------------------------------------------------------


def _fast_read(vault: Any, token: str, project: str, key: str) -> Any:
    """The hot read path's answer for ``key`` in DEV, run on its own event loop."""

    async def inline(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return asyncio.run(
        vault.services.fast_reader.read(
            inline, token, project, DEV, key, source_ip=None, user_agent=None
        )
    )


def _put(api: TestClient, project: str, key: str, **body: Any) -> dict[str, Any]:
    """PUT a secret with ``body`` (value defaults to "v-<key>"), asserting 200."""
    response = api.put(secret_path(project, DEV, key), json={"value": f"v-{key}", **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _limits(
    *,
    max_reads: int | None = None,
    read_count: int = 0,
    expires_at: str | None = None,
    delete: bool = True,
    status: str = "active",
) -> dict[str, Any]:
    """The ``limits`` object the API shows."""
    remaining = None if max_reads is None else max(0, max_reads - read_count)
    return {
        "status": status,
        "expires_at": expires_at,
        "max_reads": max_reads,
        "read_count": read_count,
        "reads_remaining": remaining,
        "delete": delete,
    }


def _trail(api: TestClient, key: str) -> list[tuple[str, dict[str, Any]]]:
    """(action, metadata) of the audit entries about ``key``, oldest first, read through
    GET /api/v1/audit."""
    response = api.get(AUDIT, params={"key": key, "limit": "1000"})
    assert response.status_code == 200, response.text
    entries = response.json()["entries"]
    return [(e["action"], e["metadata"]) for e in reversed(entries)]


def _all_audit_ids(api: TestClient) -> list[str]:
    response = api.get(AUDIT, params={"limit": "1000"})
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["entries"]]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _wait_until_past(iso: str) -> None:
    """Sleeps until just after the RFC 3339 instant ``iso``."""
    time.sleep(max(0.0, _epoch(iso) + 0.05 - time.time()))


def _never_existed(api: TestClient, project: str, key: str, method: str = "GET") -> Any:
    """The answer for a key that never existed, with its name replaced by ``key``, to
    compare a burned or expired secret's answer with."""
    response = api.request(method, secret_path(project, DEV, "NEVER_EXISTED"))
    assert response.status_code == 404
    return response.status_code, response.text.replace("NEVER_EXISTED", key)


def _secret_id(vault: Vault, key: str) -> str:
    """The id of the development secret ``key`` (the only environment these tests use)."""
    with vault.services.engine.connect() as conn:
        return str(conn.execute(sa.select(secrets.c.id).where(secrets.c.key == key)).scalar_one())


def _rows_left(vault: Vault, secret_id: str) -> tuple[int, int]:
    """How many secrets rows and secret_versions rows the secret ``secret_id`` still has."""
    with vault.services.engine.connect() as conn:

        def count(table: sa.Table, where: sa.ColumnElement[bool]) -> int:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(table).where(where)
                ).scalar_one()
            )

        return (
            count(secrets, secrets.c.id == secret_id),
            count(secret_versions, secret_versions.c.secret_id == secret_id),
        )


@pytest.fixture
def viewer(api: TestClient, vault: Vault) -> str:
    """A CLI token of a person with the viewer role (may read, may not write)."""
    return member_token(api, vault.token, "viewer@acme.test", "viewer")


@pytest.fixture
def quiet_api(vault: Vault) -> Iterator[TestClient]:
    """An owner's client on a server whose background pruner never runs (so expired secrets
    stay until touched or pruned on request)."""
    services = build_services(vault.settings.with_overrides(prune_interval=0))
    app = create_app(services, max_body_bytes=vault.settings.max_body_bytes)
    try:
        with TestClient(app, headers=bearer(vault.token)) as client:
            yield client
    finally:
        services.close()


# -- counting, burning -----------------------------------------------------------------------


def test_max_reads_allows_exactly_n_reads_then_the_secret_never_existed(
    api: TestClient, vault: Vault, project: str
) -> None:
    """With max_reads 3, three GETs return the value and count down; the fourth, HEAD,
    history, delete and list answer exactly as for a key that never existed, and no version
    row is left."""
    written = _put(api, project, "K", max_reads=3)
    assert written == {
        "key": "K",
        "outcome": "created",
        "version": 1,
        "limits": _limits(max_reads=3),
    }
    secret_id = _secret_id(vault, "K")
    for count in (1, 2, 3):
        response = api.get(secret_path(project, DEV, "K"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["key"], body["version"], body["value"], body["comment"]) == (
            "K",
            1,
            "v-K",
            None,
        )
        assert body["limits"] == _limits(max_reads=3, read_count=count)
    gone = api.get(secret_path(project, DEV, "K"))
    assert (gone.status_code, gone.text) == _never_existed(api, project, "K")
    assert gone.json() == {
        "error": {
            "code": "not_found",
            "message": "secret 'K' not found in environment 'development'",
            "field": "key",
        }
    }
    head = api.head(secret_path(project, DEV, "K"))
    assert head.status_code == 404
    assert not [h for h in head.headers if h.lower().startswith("x-coffer-")]
    history = api.get(f"{env_path(project, DEV)}/history/K")
    never_history = api.get(f"{env_path(project, DEV)}/history/NEVER_EXISTED")
    assert (history.status_code, history.text) == (
        404,
        never_history.text.replace("NEVER_EXISTED", "K"),
    )
    deleted = api.delete(secret_path(project, DEV, "K"))
    assert (deleted.status_code, deleted.text) == _never_existed(api, project, "K", "DELETE")
    assert api.get(secret_path(project, DEV, "K"), params={"version": 1}).status_code == 404
    assert listed_versions(api, project, DEV) == {}
    assert _rows_left(vault, secret_id) == (0, 0)


def test_limited_reads_are_audited_with_their_counters_and_the_burn_once(
    api: TestClient, project: str
) -> None:
    """secret.created carries ttl_seconds and max_reads; each secret.read carries read_count,
    max_reads and expires_at; the last read records one secret.burned; failed reads after
    it record nothing."""
    written = _put(api, project, "K", max_reads=2, ttl_seconds=3600)
    expires_at = written["limits"]["expires_at"]
    stamp = int(_epoch(expires_at))
    assert written["limits"] == _limits(max_reads=2, expires_at=expires_at)
    for _ in range(2):
        assert api.get(secret_path(project, DEV, "K")).status_code == 200
    for _ in range(3):
        assert api.get(secret_path(project, DEV, "K")).status_code == 404
    assert _trail(api, "K") == [
        ("secret.created", {"version": 1, "ttl_seconds": 3600, "max_reads": 2}),
        (
            "secret.read",
            {"version": 1, "via": "get", "read_count": 1, "max_reads": 2, "expires_at": stamp},
        ),
        (
            "secret.read",
            {"version": 1, "via": "get", "read_count": 2, "max_reads": 2, "expires_at": stamp},
        ),
        ("secret.burned", {"read_count": 2, "max_reads": 2, "versions_destroyed": 1}),
    ]


def test_burning_destroys_every_version_and_a_new_write_starts_at_version_1(
    api: TestClient, vault: Vault, project: str
) -> None:
    """A secret with three versions burned by its one allowed read loses all three; the next
    PUT creates version 1 with no limits."""
    put_secret(api, project, DEV, "K", "old-1")
    put_secret(api, project, DEV, "K", "old-2")
    assert _put(api, project, "K", max_reads=1)["version"] == 3
    secret_id = _secret_id(vault, "K")
    assert _rows_left(vault, secret_id) == (1, 3)
    assert get_value(api, project, DEV, "K") == "v-K"
    assert _trail(api, "K")[-1] == (
        "secret.burned",
        {"read_count": 1, "max_reads": 1, "versions_destroyed": 3},
    )
    assert _rows_left(vault, secret_id) == (0, 0)
    assert put_secret(api, project, DEV, "K", "fresh") == {
        "key": "K",
        "outcome": "created",
        "version": 1,
    }
    assert api.get(secret_path(project, DEV, "K")).json()["value"] == "fresh"
    assert "limits" not in api.get(secret_path(project, DEV, "K")).json()


def test_a_past_version_read_counts_like_the_current_one(api: TestClient, project: str) -> None:
    """GET ?version=1 of a limited secret is a read too: it counts and may burn it."""
    put_secret(api, project, DEV, "K", "first")
    _put(api, project, "K", max_reads=2)
    old = api.get(secret_path(project, DEV, "K"), params={"version": 1})
    assert old.status_code == 200
    assert (old.json()["value"], old.json()["limits"]) == (
        "first",
        _limits(max_reads=2, read_count=1),
    )
    assert get_value(api, project, DEV, "K") == "v-K"
    assert api.get(secret_path(project, DEV, "K"), params={"version": 1}).status_code == 404


# -- sealing, reset, limit changes --------------------------------------------------------------


def test_delete_false_seals_on_the_last_read_until_someone_who_may_write_resets_it(
    api: TestClient, project: str, viewer: str
) -> None:
    """With delete=false the last read seals: GET and HEAD answer 410 (HEAD with
    X-Coffer-Status sealed), the list shows status sealed, a viewer's reset is refused 403
    and changes nothing, and the owner's reset makes it readable again."""
    path = secret_path(project, DEV, "K")
    written = _put(api, project, "K", max_reads=2, delete=False)
    assert written["limits"] == _limits(max_reads=2, delete=False)
    for count in (1, 2):
        response = api.get(path)
        assert response.status_code == 200
        assert response.json()["limits"]["read_count"] == count
    start = len(_all_audit_ids(api))
    sealed = api.get(path)
    assert sealed.status_code == 410
    assert sealed.json() == {
        "error": {
            "code": "gone",
            "message": "secret 'K' is sealed: its read limit was reached; someone who may "
            "write it must reset it",
            "field": "key",
        }
    }
    head = api.head(path)
    assert head.status_code == 410
    assert {k: v for k, v in head.headers.items() if k.startswith("x-coffer-")} == {
        "x-coffer-status": "sealed",
        "x-coffer-version": "1",
        "x-coffer-read-count": "2",
        "x-coffer-max-reads": "2",
        "x-coffer-reads-remaining": "0",
    }
    assert len(_all_audit_ids(api)) == start, "a refused read or a HEAD recorded something"
    listed = api.get(f"{env_path(project, DEV)}/secrets").json()["secrets"]
    assert [(s["key"], s["limits"]) for s in listed] == [
        ("K", _limits(max_reads=2, read_count=2, delete=False, status="sealed"))
    ]
    refused = api.patch(path, json={"reset": True}, headers=bearer(viewer))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "access_denied"
    assert api.head(path).status_code == 410
    reset = api.patch(path, json={"reset": True})
    assert reset.status_code == 200, reset.text
    body = reset.json()
    assert (body["key"], body["version"], body["limits"]) == (
        "K",
        1,
        _limits(max_reads=2, delete=False),
    )
    assert api.get(path).json()["limits"] == _limits(max_reads=2, read_count=1, delete=False)
    assert _trail(api, "K") == [
        (
            "secret.created",
            {"version": 1, "ttl_seconds": None, "max_reads": 2, "on_last_read": "seal"},
        ),
        ("secret.read", {"version": 1, "via": "get", "read_count": 1, "max_reads": 2}),
        ("secret.read", {"version": 1, "via": "get", "read_count": 2, "max_reads": 2}),
        ("secret.sealed", {"read_count": 2, "max_reads": 2}),
        ("secret.limits_changed", {"reset": True}),
        ("secret.read", {"version": 1, "via": "get", "read_count": 1, "max_reads": 2}),
    ]


def test_the_read_that_seals_reports_the_secret_sealed(api: TestClient, project: str) -> None:
    """The limits shown with the last read are as they stand after it: sealed."""
    _put(api, project, "K", max_reads=1, delete=False)
    last = api.get(secret_path(project, DEV, "K"))
    assert last.status_code == 200
    assert last.json()["limits"] == _limits(
        max_reads=1, read_count=1, delete=False, status="sealed"
    )


def test_a_new_version_unseals_and_counts_afresh_keeping_the_limits(
    api: TestClient, project: str
) -> None:
    """A PUT without limits on a sealed secret writes version 2 with the same limits and no
    reads counted; a PUT with limits replaces them; a partly read secret's new version gets
    all its reads back."""
    path = secret_path(project, DEV, "K")
    _put(api, project, "K", max_reads=1, delete=False)
    assert get_value(api, project, DEV, "K") == "v-K"
    assert api.get(path).status_code == 410
    second = api.put(path, json={"value": "second"})
    assert second.status_code == 200
    assert second.json() == {
        "key": "K",
        "outcome": "updated",
        "version": 2,
        "limits": _limits(max_reads=1, delete=False),
    }
    read = api.get(path).json()
    assert (read["version"], read["value"], read["limits"]) == (
        2,
        "second",
        _limits(max_reads=1, read_count=1, delete=False, status="sealed"),
    )
    assert api.get(path).status_code == 410
    third = api.put(path, json={"value": "third", "max_reads": 3})
    assert third.json()["limits"] == _limits(max_reads=3)
    assert api.head(path).headers["x-coffer-reads-remaining"] == "3"
    _put(api, project, "PARTLY", max_reads=3)
    for _ in range(2):
        assert api.get(secret_path(project, DEV, "PARTLY")).status_code == 200
    again = api.put(secret_path(project, DEV, "PARTLY"), json={"value": "again"})
    assert again.json()["limits"] == _limits(max_reads=3)
    assert _trail(api, "K") == [
        (
            "secret.created",
            {"version": 1, "ttl_seconds": None, "max_reads": 1, "on_last_read": "seal"},
        ),
        ("secret.read", {"version": 1, "via": "get", "read_count": 1, "max_reads": 1}),
        ("secret.sealed", {"read_count": 1, "max_reads": 1}),
        ("secret.updated", {"version": 2}),
        ("secret.read", {"version": 2, "via": "get", "read_count": 1, "max_reads": 1}),
        ("secret.sealed", {"read_count": 1, "max_reads": 1}),
        ("secret.updated", {"version": 3, "ttl_seconds": None, "max_reads": 3}),
    ]


def test_patch_rules(api: TestClient, vault: Vault, project: str, viewer: str) -> None:
    """PATCH: an empty body is 400 on "body"; a limit at or below the reads counted is 400
    on max_reads; bad values name their field; a viewer gets 403; an unknown key 404; none
    of these changes anything. Null removes a limit (the secret is then read uncounted), a
    TTL counts from now, each change records secret.limits_changed, and an ordinary secret
    can be given a limit."""
    path = secret_path(project, DEV, "K")
    _put(api, project, "K", max_reads=5)
    for _ in range(3):
        assert api.get(path).status_code == 200
    before = row_counts(vault.services.engine)
    refusals: list[tuple[httpx.Response, int, str, str]] = [
        (
            api.patch(path, json={}),
            400,
            "body",
            "give at least one of ttl_seconds, max_reads, delete or reset",
        ),
        (
            api.patch(path, json={"max_reads": 3}),
            400,
            "max_reads",
            "max_reads must be above the 3 reads already counted; pass reset to count afresh",
        ),
        (
            api.patch(path, json={"max_reads": 2}),
            400,
            "max_reads",
            "max_reads must be above the 3 reads already counted; pass reset to count afresh",
        ),
        (api.patch(path, json={"max_reads": 0}), 400, "max_reads", "max_reads must be at least 1"),
        (
            api.patch(path, json={"ttl_seconds": "10y"}),
            400,
            "ttl_seconds",
            "ttl_seconds must be a duration such as 30s, 5m, 2h or 7d",
        ),
        (
            api.patch(path, json={"delete": "no"}),
            400,
            "delete",
            "delete: Input should be a valid boolean",
        ),
        (api.patch(path, json={"delete": None}), 400, "delete", "delete must be true or false"),
        (
            api.patch(path, json={"reset": "yes"}),
            400,
            "reset",
            "reset: Input should be a valid boolean",
        ),
        (
            api.patch(secret_path(project, DEV, "NOPE"), json={"max_reads": 9}),
            404,
            "key",
            "secret 'NOPE' not found in environment 'development'",
        ),
    ]
    for response, status, field, message in refusals:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert (error["field"], error["message"]) == (field, message), response.text
    denied = api.patch(path, json={"max_reads": 9}, headers=bearer(viewer))
    assert denied.status_code == 403
    after = row_counts(vault.services.engine)
    assert {**after, "audit_log": before["audit_log"]} == before
    assert after["audit_log"] == before["audit_log"] + 1  # the viewer's access.denied only
    assert api.head(path).headers["x-coffer-max-reads"] == "5"

    raised = api.patch(path, json={"max_reads": 4})
    assert raised.status_code == 200
    assert raised.json()["limits"] == _limits(max_reads=4, read_count=3)
    started = time.time()
    with_ttl = api.patch(path, json={"ttl_seconds": "5m", "delete": False})
    ended = time.time()
    limits = with_ttl.json()["limits"]
    assert started + 300 - 0.001 <= _epoch(limits["expires_at"]) <= ended + 300
    assert limits == _limits(
        max_reads=4, read_count=3, delete=False, expires_at=limits["expires_at"]
    )
    unlimited = api.patch(path, json={"max_reads": None, "ttl_seconds": None})
    assert unlimited.status_code == 200
    assert "limits" not in unlimited.json()
    for _ in range(3):
        read = api.get(path)
        assert read.status_code == 200
        assert "limits" not in read.json()
    assert "x-coffer-max-reads" not in api.head(path).headers
    assert [entry for entry in _trail(api, "K") if entry[0] == "secret.limits_changed"] == [
        ("secret.limits_changed", {"max_reads": 4, "reset": False}),
        ("secret.limits_changed", {"ttl_seconds": 300, "on_last_read": "seal", "reset": False}),
        ("secret.limits_changed", {"max_reads": None, "ttl_seconds": None, "reset": False}),
    ]
    put_secret(api, project, DEV, "PLAIN", "plain")
    limited = api.patch(secret_path(project, DEV, "PLAIN"), json={"max_reads": 1})
    assert limited.status_code == 200, limited.text
    assert limited.json()["limits"] == _limits(max_reads=1)
    assert get_value(api, project, DEV, "PLAIN") == "plain"
    assert api.get(secret_path(project, DEV, "PLAIN")).status_code == 404


def test_a_limit_put_back_after_removal_counts_from_zero(api: TestClient, project: str) -> None:
    """A secret whose limits were removed is an ordinary secret: limiting it again starts
    from no reads, like any ordinary secret."""
    path = secret_path(project, DEV, "K")
    _put(api, project, "K", max_reads=5)
    for _ in range(3):
        assert api.get(path).status_code == 200
    assert api.patch(path, json={"max_reads": None}).status_code == 200
    assert "x-coffer-read-count" not in api.head(path).headers
    again = api.patch(path, json={"max_reads": 1})
    assert again.status_code == 200, again.text
    assert again.json()["limits"] == _limits(max_reads=1)


# -- HEAD ---------------------------------------------------------------------------------


def test_head_never_counts_nor_audits(api: TestClient, project: str) -> None:
    """Five HEADs of a max_reads=1 secret answer its metadata, record nothing and leave the
    one read for the GET that follows; an ordinary secret's HEAD shows only status and
    version (and records nothing either)."""
    written = _put(api, project, "K", max_reads=1, ttl_seconds=3600)
    expires_at = written["limits"]["expires_at"]
    before = _all_audit_ids(api)
    for _ in range(5):
        head = api.head(secret_path(project, DEV, "K"))
        assert head.status_code == 200
        assert head.content == b""
        assert {k: v for k, v in head.headers.items() if k.startswith("x-coffer-")} == {
            "x-coffer-status": "active",
            "x-coffer-version": "1",
            "x-coffer-read-count": "0",
            "x-coffer-max-reads": "1",
            "x-coffer-reads-remaining": "1",
            "x-coffer-expires-at": expires_at,
        }
    put_secret(api, project, DEV, "PLAIN", "a")
    put_secret(api, project, DEV, "PLAIN", "b")
    plain = api.head(secret_path(project, DEV, "PLAIN"))
    assert plain.status_code == 200
    assert {k: v for k, v in plain.headers.items() if k.startswith("x-coffer-")} == {
        "x-coffer-status": "active",
        "x-coffer-version": "2",
    }
    assert _all_audit_ids(api)[2:] == before
    assert get_value(api, project, DEV, "K") == "v-K"
    assert api.get(secret_path(project, DEV, "K")).status_code == 404


# -- TTL ------------------------------------------------------------------------------------


def test_past_its_ttl_a_secret_is_as_if_it_never_existed(
    quiet_api: TestClient, vault: Vault, project: str
) -> None:
    """A secret with a 1-second TTL is readable before; after it HEAD, history, list, delete
    and GET (plain, with a token the fast read path serves) answer like for a key that never
    existed; only the GET (the lazy read) records secret.expired, once."""
    api = quiet_api
    written = _put(api, project, "K", ttl_seconds=1)
    put_secret(api, project, DEV, "OTHER", "stays")
    assert get_value(api, project, DEV, "K") == "v-K"
    _wait_until_past(written["limits"]["expires_at"])
    env = env_path(project, DEV)
    never_head = api.head(secret_path(project, DEV, "Z"))  # a never-existing key as long
    head = api.head(secret_path(project, DEV, "K"))
    assert (head.status_code, dict(head.headers)) == (404, dict(never_head.headers))
    history = api.get(f"{env}/history/K")
    assert history.text == api.get(f"{env}/history/NEVER_EXISTED").text.replace(
        "NEVER_EXISTED", "K"
    )
    assert history.status_code == 404
    assert listed_versions(api, project, DEV) == {"OTHER": 1}
    deleted = api.delete(secret_path(project, DEV, "K"))
    assert (deleted.status_code, deleted.text) == _never_existed(api, project, "K", "DELETE")
    assert [a for a, _ in _trail(api, "K")] == ["secret.created", "secret.read"]
    fast = _fast_read(vault, vault.token, project, "K")
    assert fast is None, "the fast read path served an expired secret"
    read = api.get(secret_path(project, DEV, "K"))
    assert (read.status_code, read.text) == _never_existed(api, project, "K")
    trail = _trail(api, "K")
    assert trail[-1] == (
        "secret.expired",
        {"expired_at": int(_epoch(written["limits"]["expires_at"])), "versions_destroyed": 1},
    )
    assert [a for a, _ in trail] == ["secret.created", "secret.read", "secret.expired"]
    assert api.get(secret_path(project, DEV, "K")).status_code == 404
    assert [a for a, _ in _trail(api, "K")] == ["secret.created", "secret.read", "secret.expired"]


def test_the_pruner_destroys_expired_secrets_for_admins_and_a_write_starts_anew(
    quiet_api: TestClient, vault: Vault, project: str, viewer: str
) -> None:
    """After the TTL: a PUT on an expired key records secret.expired and creates version 1;
    POST /api/v1/prune is 403 for a viewer and, for the owner, destroys the other expired
    secrets (secret.pruned each) but not live ones, and a second run finds nothing."""
    api = quiet_api
    for key in ("A", "B", "C"):
        _put(api, project, key, ttl_seconds=1)
    _put(api, project, "B", value="b-2")
    live = _put(api, project, "LIVE", ttl_seconds=3600, max_reads=2)
    put_secret(api, project, DEV, "PLAIN", "p")
    _wait_until_past(_put(api, project, "D", ttl_seconds=1)["limits"]["expires_at"])
    expired_ids = [_secret_id(vault, key) for key in ("A", "B", "D")]

    rewritten = api.put(secret_path(project, DEV, "C"), json={"value": "c-new"})
    assert rewritten.json() == {"key": "C", "outcome": "created", "version": 1}
    assert [a for a, _ in _trail(api, "C")] == [
        "secret.created",
        "secret.expired",
        "secret.created",
    ]

    start = last_audit_seq(vault.services.engine)
    assert TestClient(api.app).post("/api/v1/prune").status_code == 401
    refused = api.post("/api/v1/prune", headers=bearer(viewer))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "access_denied"
    assert last_audit_seq(vault.services.engine) == start + 1  # its access.denied
    assert listed_versions(api, project, DEV) == {"C": 1, "LIVE": 1, "PLAIN": 1}

    pruned = api.post("/api/v1/prune")
    assert pruned.status_code == 200, pruned.text
    assert pruned.json() == {"pruned": {"secrets": 3, "ephemeral": 0, "shares": 0}}
    for key, versions in (("A", 1), ("B", 2), ("D", 1)):
        entry = _trail(api, key)[-1]
        assert entry[0] == "secret.pruned"
        assert entry[1]["versions_destroyed"] == versions
        assert set(entry[1]) == {"expired_at", "versions_destroyed"}
    assert api.post("/api/v1/prune").json() == {
        "pruned": {"secrets": 0, "ephemeral": 0, "shares": 0}
    }
    assert listed_versions(api, project, DEV) == {"C": 1, "LIVE": 1, "PLAIN": 1}
    assert (
        api.head(secret_path(project, DEV, "LIVE")).headers["x-coffer-expires-at"]
        == (live["limits"]["expires_at"])
    )
    assert [_rows_left(vault, secret_id) for secret_id in expired_ids] == [(0, 0)] * 3


# -- export, references, promotion, diff --------------------------------------------------------


def test_export_counts_limited_reads_burns_and_leaves_out_sealed(
    api: TestClient, project: str
) -> None:
    """Each export counts one read of every limited secret: max_reads=1 ones are burned by
    it, sealed ones are left out, unlimited ones are read uncounted every time."""
    export = f"{env_path(project, DEV)}/export"
    _put(api, project, "ONCE", max_reads=1)
    _put(api, project, "TWICE", max_reads=2)
    _put(api, project, "SEALED", max_reads=1, delete=False)
    put_secret(api, project, DEV, "PLAIN", "plain")
    assert get_value(api, project, DEV, "SEALED") == "v-SEALED"
    first = api.get(export, params={"format": "json"})
    assert first.status_code == 200, first.text
    assert first.json() == {"ONCE": "v-ONCE", "PLAIN": "plain", "TWICE": "v-TWICE"}
    assert api.get(secret_path(project, DEV, "ONCE")).status_code == 404
    assert api.head(secret_path(project, DEV, "TWICE")).headers["x-coffer-read-count"] == "1"
    second = api.get(export, params={"format": "dotenv"})
    assert second.status_code == 200
    assert "ONCE" not in second.text and "SEALED" not in second.text
    assert "TWICE=" in second.text and "PLAIN=" in second.text
    third = api.get(export, params={"format": "json"})
    assert third.json() == {"PLAIN": "plain"}
    assert _trail(api, "ONCE")[1:] == [
        ("secret.read", {"version": 1, "via": "export", "read_count": 1, "max_reads": 1}),
        ("secret.burned", {"read_count": 1, "max_reads": 1, "versions_destroyed": 1}),
    ]
    assert _trail(api, "TWICE")[1:] == [
        ("secret.read", {"version": 1, "via": "export", "read_count": 1, "max_reads": 2}),
        ("secret.read", {"version": 1, "via": "export", "read_count": 2, "max_reads": 2}),
        ("secret.burned", {"read_count": 2, "max_reads": 2, "versions_destroyed": 1}),
    ]
    assert [a for a, _ in _trail(api, "SEALED")] == [
        "secret.created",
        "secret.read",
        "secret.sealed",
    ]
    assert [m for a, m in _trail(api, "PLAIN") if a == "secret.read"] == [
        {"version": 1, "via": "export"}
    ] * 3


def test_a_reference_to_a_limited_secret_counts_its_read(api: TestClient, project: str) -> None:
    """Expanding ${TARGET} counts a read of TARGET (max_reads 2): twice it expands, then
    TARGET is burned and the reference fails exactly like one to a key that never existed."""
    _put(api, project, "TARGET", max_reads=2)
    put_secret(api, project, DEV, "REF", "url://${TARGET}@host")
    put_secret(api, project, DEV, "MISSING_REF", "url://${NOWHERE}@host")
    path = secret_path(project, DEV, "REF")
    for count in (1, 2):
        expanded = api.get(path, params={"expand": "true"})
        assert expanded.status_code == 200, expanded.text
        assert expanded.json()["value"] == "url://v-TARGET@host"
        assert "limits" not in expanded.json()
        if count == 1:
            head = api.head(secret_path(project, DEV, "TARGET"))
            assert head.headers["x-coffer-read-count"] == "1"
    failed = api.get(path, params={"expand": "true"})
    missing = api.get(secret_path(project, DEV, "MISSING_REF"), params={"expand": "true"})
    assert failed.status_code == missing.status_code == 400
    assert failed.text == missing.text.replace("MISSING_REF", "REF").replace("NOWHERE", "TARGET")
    assert get_value(api, project, DEV, "REF") == "url://${TARGET}@host"
    assert _trail(api, "TARGET")[1:] == [
        ("secret.read", {"version": 1, "via": "reference", "read_count": 1, "max_reads": 2}),
        ("secret.read", {"version": 1, "via": "reference", "read_count": 2, "max_reads": 2}),
        ("secret.burned", {"read_count": 2, "max_reads": 2, "versions_destroyed": 1}),
    ]


def test_promote_skips_limited_sources_and_diff_counts_nothing(
    api: TestClient, project: str
) -> None:
    """Promotion copies unlimited secrets and reports limited ones skipped without reading
    them; a diff reads nothing either."""
    _put(api, project, "LIMITED", max_reads=1)
    _put(api, project, "TIMED", ttl_seconds=3600)
    put_secret(api, project, DEV, "PLAIN", "p")
    dry = api.post(f"{PROJECTS}/{project}/promote", json={"from": DEV, "to": STG, "dry_run": True})
    assert dry.json() == {
        "created": ["PLAIN"],
        "updated": [],
        "skipped": ["LIMITED", "TIMED"],
        "dry_run": True,
    }
    promoted = api.post(f"{PROJECTS}/{project}/promote", json={"from": DEV, "to": STG})
    assert promoted.status_code == 200
    assert promoted.json() == {
        "created": ["PLAIN"],
        "updated": [],
        "skipped": ["LIMITED", "TIMED"],
        "dry_run": False,
    }
    named = api.post(
        f"{PROJECTS}/{project}/promote", json={"from": DEV, "to": STG, "keys": ["LIMITED"]}
    )
    assert named.json()["skipped"] == ["LIMITED"]
    diff = api.get(f"{PROJECTS}/{project}/diff", params={"from": DEV, "to": STG})
    assert diff.status_code == 200
    assert listed_versions(api, project, STG) == {"PLAIN": 1}
    assert api.head(secret_path(project, DEV, "LIMITED")).headers["x-coffer-read-count"] == "0"
    assert [a for a, _ in _trail(api, "LIMITED")] == ["secret.created"]
    assert get_value(api, project, DEV, "LIMITED") == "v-LIMITED"


# -- the fast read path ------------------------------------------------------------------------


def test_the_fast_read_path_does_not_bypass_limits(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Plain GETs with every kind of token the fast path serves (bootstrap, CLI token, API
    key, machine token) are counted: each reader's max_reads=1 secret reads once, with its
    limits in the body and its counters in the audit entry, then 404."""
    owner_cli = member_token(api, vault.token, "admin@acme.test", "admin")
    made = api.post("/api/v1/keys", json={"name": "ci"}, headers=bearer(owner_cli))
    assert made.status_code == 201, made.text
    api_key = made.json()["token"]
    machine = api.post(
        "/api/v1/machines", json={"name": "deployer", "scopes": [f"{project}:{DEV}:read"]}
    )
    assert machine.status_code == 201, machine.text
    machine_token = api.post("/api/v1/machines/deployer/tokens", json={}).json()["token"]
    tokens = {"boot": vault.token, "cli": owner_cli, "key": api_key, "mach": machine_token}
    put_secret(api, project, DEV, "PLAIN", "plain")
    for kind, token in tokens.items():
        assert token_kind(token) == kind
        # The fast path does serve this token: an unlimited read goes through it.
        served = _fast_read(vault, token, project, "PLAIN")
        assert served is not None and served.value.reveal() == "plain"
        key = f"ONCE_{kind}"
        _put(api, project, key, max_reads=1)
        assert _fast_read(vault, token, project, key) is None
        first = api.get(secret_path(project, DEV, key), headers=bearer(token))
        assert first.status_code == 200, (kind, first.text)
        assert first.json()["limits"] == _limits(max_reads=1, read_count=1)
        second = api.get(secret_path(project, DEV, key), headers=bearer(token))
        assert second.status_code == 404, kind
        assert _trail(api, key)[1:] == [
            ("secret.read", {"version": 1, "via": "get", "read_count": 1, "max_reads": 1}),
            ("secret.burned", {"read_count": 1, "max_reads": 1, "versions_destroyed": 1}),
        ]


# -- refused input ------------------------------------------------------------------------------


DURATION = "ttl_seconds must be a duration such as 30s, 5m, 2h or 7d"
AT_LEAST_1S = "ttl_seconds must be at least 1 second"
NOT_AN_INT = "max_reads: Input should be a valid integer"
NOT_A_BOOL = "delete: Input should be a valid boolean"

# (extra body fields, status, field, message) of each refused write; KEY stands for the key.
BAD_LIMITS: list[tuple[dict[str, Any], int, str, str]] = [
    ({"ttl_seconds": 0}, 400, "ttl_seconds", AT_LEAST_1S),
    ({"ttl_seconds": -1}, 400, "ttl_seconds", AT_LEAST_1S),
    ({"ttl_seconds": ""}, 400, "ttl_seconds", DURATION),
    ({"ttl_seconds": "abc"}, 400, "ttl_seconds", DURATION),
    ({"ttl_seconds": "10y"}, 400, "ttl_seconds", DURATION),
    ({"ttl_seconds": True}, 400, "ttl_seconds", DURATION),
    ({"ttl_seconds": 1.5}, 400, "ttl_seconds", DURATION),
    ({"ttl_seconds": [60]}, 400, "ttl_seconds", DURATION),
    (
        {"ttl_seconds": 31_536_001},
        400,
        "ttl_seconds",
        "ttl_seconds must be at most 365 days (31536000 seconds)",
    ),
    ({"max_reads": 0}, 400, "max_reads", "max_reads must be at least 1"),
    ({"max_reads": -1}, 400, "max_reads", "max_reads must be at least 1"),
    ({"max_reads": 1_000_001}, 400, "max_reads", "max_reads must be at most 1,000,000"),
    ({"max_reads": True}, 400, "max_reads", NOT_AN_INT),
    ({"max_reads": "3"}, 400, "max_reads", NOT_AN_INT),
    ({"max_reads": 1.5}, 400, "max_reads", NOT_AN_INT),
    ({"delete": "no"}, 400, "delete", NOT_A_BOOL),
    ({"delete": None}, 400, "delete", NOT_A_BOOL),
    ({"delete": False}, 400, "delete", "delete=false (seal instead of burn) needs max_reads"),
    ({"ttl": "5m"}, 400, "ttl", "ttl: Extra inputs are not permitted"),
    ({"max_read": 1}, 400, "max_read", "max_read: Extra inputs are not permitted"),
    (
        {"value": MARK + "x" * 65537, "max_reads": 1},
        413,
        "value",
        f"value of 'KEY' is {len(MARK) + 65537} bytes; the limit is 65536 bytes "
        "(COFFER_MAX_VALUE_BYTES)",
    ),
]


def _refusals(
    api: TestClient, project: str, cases: list[tuple[dict[str, Any], int, str, str]]
) -> list[str]:
    """PUTs each case on an existing and on a new key; returns every answer that differs
    from the expected status, field and message, or that echoes the value."""
    problems = []
    for extra, status, field, message in cases:
        for key in ("EXISTING", "NEW_KEY"):
            response = api.put(secret_path(project, DEV, key), json={"value": MARK, **extra})
            error = response.json().get("error", {})
            seen = (response.status_code, error.get("field"), error.get("message"))
            if seen != (status, field, message.replace("KEY", key)) or MARK in response.text:
                problems.append(f"{extra} on {key}: {response.status_code} {response.text[:200]}")
    return problems


def test_bad_limits_are_refused_naming_the_field_and_change_nothing(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Each bad ttl_seconds (0, -1, "", "abc", "10y", true, 1.5, [60], 365 days + 1 s),
    max_reads (0, -1,
    1,000,001, true, "3", 1.5), delete ("no", null) and an oversized value, on an existing
    and on a new key, answers its status naming the field and the rule, never echoes the
    value, and adds no row and no audit entry."""
    put_secret(api, project, DEV, "EXISTING", "existing-value")
    before = row_counts(vault.services.engine)
    assert _refusals(api, project, BAD_LIMITS) == []
    assert row_counts(vault.services.engine) == before
    assert listed_versions(api, project, DEV) == {"EXISTING": 1}
    assert "limits" not in api.get(secret_path(project, DEV, "EXISTING")).json()


def test_good_ttls_expire_that_many_seconds_from_now(api: TestClient, project: str) -> None:
    """A TTL of 5m, 3600, "3600", 2h or 1 sets expires_at to now + that many seconds (the
    tolerance is only the request's duration) and is recorded in seconds in secret.created."""
    for index, (ttl, seconds) in enumerate(
        [("5m", 300), (3600, 3600), ("3600", 3600), ("2h", 7200), (1, 1)]
    ):
        key = f"K{index}"
        started = time.time()
        written = _put(api, project, key, ttl_seconds=ttl)
        ended = time.time()
        expires_at = written["limits"]["expires_at"]
        assert started + seconds - 0.001 <= _epoch(expires_at) <= ended + seconds, ttl
        assert written["limits"] == _limits(expires_at=expires_at)
        assert _trail(api, key) == [
            ("secret.created", {"version": 1, "ttl_seconds": seconds, "max_reads": None})
        ]


def test_limits_on_invalid_keys_are_refused_on_key(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Keys the vault refuses are refused with limits too (400 on "key"), for PUT, PATCH and
    HEAD, and change nothing."""
    before = row_counts(vault.services.engine)
    for key in ("a..b", "a//b", "1abc", "%20a", "a%0Ab", "k" * 257):
        path = secret_path(project, DEV, key)
        for response in (
            api.put(path, json={"value": MARK, "max_reads": 1, "ttl_seconds": 60}),
            api.patch(path, json={"max_reads": 2}),
        ):
            assert response.status_code == 400, (key, response.text)
            error = response.json()["error"]
            assert (error["code"], error["field"]) == ("invalid_input", "key")
            assert MARK not in response.text
        assert api.head(path).status_code == 400
    assert row_counts(vault.services.engine) == before
