"""Standalone ephemeral secrets over the HTTP API (``/api/v1/ephemeral``): create, list,
read, describe, change, delete; the one-day default TTL, read limits, sealing, who may change
what, machines, the organization boundary, refused input, expiry and the pruner.

One organization per backend serves the whole module (building people, a machine and a
second organization is the costly part); every test uses names of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.integration.api_helpers import row_counts, secret_path
from tests.integration.org_world import OrgWorld as Org
from tests.integration.org_world import served_org
from tests.integration.team_helpers import API

EPHEMERAL = f"{API}/ephemeral"
DAY = 86_400
MARK = "EPHLEAK-71c0de"  # a distinctive value that must never come back in an error


@pytest.fixture(scope="module")
def org(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    """acme and rival (see org_world), once per backend."""
    with served_org(
        module_database_url,
        tmp_path_factory.mktemp("ephemeral"),
        {"admin": "admin", "viewer": "viewer", "other": "viewer"},
    ) as world:
        yield world


def _url(key: str) -> str:
    return f"{EPHEMERAL}/{key}"


def _create(org: Org, who: str, key: str, value: str, **limits: Any) -> dict[str, Any]:
    response = org.call(who, "POST", EPHEMERAL, json={"key": key, "value": value, **limits})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _trail(org: Org, key: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(action, actor kind, metadata) of acme's audit entries about ``key``, oldest first,
    through GET /api/v1/audit; asserts every one has no project or environment."""
    response = org.call("owner", "GET", f"{API}/audit", params={"key": key, "limit": "1000"})
    assert response.status_code == 200, response.text
    entries = list(reversed(response.json()["entries"]))
    assert all((e["project"], e["environment"]) == (None, None) for e in entries)
    return [(e["action"], e["actor"]["id"], e["metadata"]) for e in entries]


def _x_coffer(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-coffer-")}


def _never(org: Org, who: str, method: str, key: str, **kwargs: Any) -> tuple[int, str]:
    """The answer for a never-existing key, its name replaced by ``key``."""
    response = org.call(who, method, _url("never/was"), **kwargs)
    return response.status_code, response.text.replace("never/was", key)


def _limits(
    *, expires_at: str, max_reads: int | None = None, read_count: int = 0, **rest: Any
) -> dict[str, Any]:
    remaining = None if max_reads is None else max(0, max_reads - read_count)
    return {
        "status": rest.get("status", "active"),
        "expires_at": expires_at,
        "max_reads": max_reads,
        "read_count": read_count,
        "reads_remaining": remaining,
        "delete": rest.get("delete", True),
    }


# -- create, read, list, head ---------------------------------------------------------------


def test_create_read_until_burned_then_it_never_existed(org: Org) -> None:
    """Created with max_reads 2 and the default TTL (exactly one day after creation): listed
    and described without its value, read twice counting down, then burned: GET, HEAD,
    PATCH and DELETE answer as for a name never used, and the list forgets it. Each step is
    audited with kind "ephemeral" and no project."""
    key = org.name("db/password")
    started = time.time()
    created = _create(org, "owner", key, "eph-value-1", max_reads=2)
    ended = time.time()
    expires_at = created["limits"]["expires_at"]
    assert created == {
        "key": key,
        "kind": "secret",
        "created_by": org.ids["owner"],
        "created_at": created["created_at"],
        "updated_at": created["created_at"],
        "limits": _limits(expires_at=expires_at, max_reads=2),
    }
    assert abs(_epoch(expires_at) - _epoch(created["created_at"]) - DAY) <= 0.001
    assert started + DAY - 0.001 <= _epoch(expires_at) <= ended + DAY
    listed = org.call("viewer", "GET", EPHEMERAL).json()["secrets"]
    assert [s for s in listed if s["key"] == key] == [created]
    assert "eph-value-1" not in str(listed)
    head = org.call("viewer", "HEAD", _url(key))
    assert (head.status_code, head.content, _x_coffer(head)) == (
        200,
        b"",
        {
            "x-coffer-status": "active",
            "x-coffer-read-count": "0",
            "x-coffer-max-reads": "2",
            "x-coffer-reads-remaining": "2",
            "x-coffer-expires-at": expires_at,
        },
    )
    for count in (1, 2):
        read = org.call("viewer", "GET", _url(key))
        assert read.status_code == 200, read.text
        assert read.json() == {
            "key": key,
            "value": "eph-value-1",
            **_limits(expires_at=expires_at, max_reads=2, read_count=count),
        }
    for method in ("GET", "DELETE"):
        gone = org.call("owner", method, _url(key))
        assert (gone.status_code, gone.text) == _never(org, "owner", method, key)
    assert gone.json() == {
        "error": {
            "code": "not_found",
            "message": f"ephemeral secret {key!r} not found",
            "field": "key",
        }
    }
    patched = org.call("owner", "PATCH", _url(key), json={"max_reads": 5})
    assert (patched.status_code, patched.text) == _never(
        org, "owner", "PATCH", key, json={"max_reads": 5}
    )
    assert org.call("owner", "HEAD", _url(key)).status_code == 404
    assert key not in org.call("owner", "GET", EPHEMERAL).text
    stamp = int(_epoch(expires_at))
    viewer = org.ids["viewer"]
    assert _trail(org, key) == [
        (
            "secret.created",
            org.ids["owner"],
            {"kind": "ephemeral", "ttl_seconds": DAY, "max_reads": 2},
        ),
        (
            "secret.read",
            viewer,
            {"kind": "ephemeral", "read_count": 1, "max_reads": 2, "expires_at": stamp},
        ),
        (
            "secret.read",
            viewer,
            {"kind": "ephemeral", "read_count": 2, "max_reads": 2, "expires_at": stamp},
        ),
        ("secret.burned", viewer, {"kind": "ephemeral", "read_count": 2, "max_reads": 2}),
    ]


def test_without_a_read_limit_it_is_read_until_it_expires(org: Org) -> None:
    """An explicit TTL of 5m and no limit: every read succeeds and is counted, none burns."""
    key = org.name("token")
    started = time.time()
    created = _create(org, "admin", key, "many-reads", ttl_seconds="5m")
    ended = time.time()
    expires_at = created["limits"]["expires_at"]
    assert started + 300 - 0.001 <= _epoch(expires_at) <= ended + 300
    for count in (1, 2, 3):
        read = org.call("owner", "GET", _url(key)).json()
        assert (read["value"], read["read_count"], read["reads_remaining"]) == (
            "many-reads",
            count,
            None,
        )
    assert [a for a, _, _ in _trail(org, key)] == ["secret.created"] + ["secret.read"] * 3


def test_head_never_counts_nor_audits(org: Org) -> None:
    """HEAD five times, then the single allowed read still succeeds; HEADs record nothing."""
    key = org.name("once")
    _create(org, "owner", key, "read-me-once", max_reads=1)
    for _ in range(5):
        head = org.call("viewer", "HEAD", _url(key))
        assert (head.status_code, _x_coffer(head)["x-coffer-read-count"]) == (200, "0")
    assert [a for a, _, _ in _trail(org, key)] == ["secret.created"]
    assert org.call("viewer", "GET", _url(key)).json()["value"] == "read-me-once"
    assert org.call("viewer", "GET", _url(key)).status_code == 404


def test_a_live_name_cannot_be_taken_twice(org: Org) -> None:
    """A second create of a live name is 409 and changes nothing; once burned, the name is
    free again."""
    key = org.name("dup")
    _create(org, "viewer", key, "first", max_reads=1)
    before = row_counts(org.services.engine)
    for who in ("viewer", "owner"):
        again = org.call(who, "POST", EPHEMERAL, json={"key": key, "value": MARK})
        assert again.status_code == 409
        assert again.json() == {
            "error": {
                "code": "conflict",
                "message": f"ephemeral secret {key!r} already exists; change it with PATCH or "
                "delete it first",
                "field": "key",
            }
        }
    assert row_counts(org.services.engine) == before
    assert org.call("owner", "GET", _url(key)).json()["value"] == "first"
    assert _create(org, "owner", key, "second")["created_by"] == org.ids["owner"]
    assert org.call("viewer", "GET", _url(key)).json()["value"] == "second"


# -- sealing and changes ----------------------------------------------------------------------


def test_delete_false_seals_and_only_the_creator_or_an_admin_resets(org: Org) -> None:
    """The last read seals (410 on GET, HEAD status sealed, listed sealed); another viewer's
    reset is 403 and changes nothing; the creator's reset makes it readable again."""
    key = org.name("sealed")
    created = _create(org, "viewer", key, "seal-me", max_reads=1, delete=False)
    expires_at = created["limits"]["expires_at"]
    assert org.call("other", "GET", _url(key)).json()["value"] == "seal-me"
    sealed = org.call("other", "GET", _url(key))
    assert sealed.status_code == 410
    assert sealed.json() == {
        "error": {
            "code": "gone",
            "message": f"ephemeral secret {key!r} is sealed: its read limit was reached; its "
            "creator or an admin must reset it",
            "field": "key",
        }
    }
    head = org.call("viewer", "HEAD", _url(key))
    assert (head.status_code, _x_coffer(head)["x-coffer-status"]) == (410, "sealed")
    listed = [s for s in org.call("owner", "GET", EPHEMERAL).json()["secrets"] if s["key"] == key]
    assert listed[0]["limits"] == _limits(
        expires_at=expires_at, max_reads=1, read_count=1, delete=False, status="sealed"
    )
    before = row_counts(org.services.engine)
    refused = org.call("other", "PATCH", _url(key), json={"reset": True})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "access_denied"
    after = row_counts(org.services.engine)
    assert (after["audit_log"], {**after, "audit_log": 0}) == (
        before["audit_log"] + 1,
        {**before, "audit_log": 0},
    )
    assert org.call("viewer", "HEAD", _url(key)).status_code == 410
    reset = org.call("viewer", "PATCH", _url(key), json={"reset": True})
    assert reset.status_code == 200, reset.text
    assert reset.json()["limits"] == _limits(expires_at=expires_at, max_reads=1, delete=False)
    assert org.call("other", "GET", _url(key)).json()["value"] == "seal-me"
    actions = [(a, m) for a, _, m in _trail(org, key)]
    assert actions == [
        (
            "secret.created",
            {"kind": "ephemeral", "ttl_seconds": DAY, "max_reads": 1, "on_last_read": "seal"},
        ),
        (
            "secret.read",
            {
                "kind": "ephemeral",
                "read_count": 1,
                "max_reads": 1,
                "expires_at": int(_epoch(expires_at)),
            },
        ),
        ("secret.sealed", {"kind": "ephemeral", "read_count": 1, "max_reads": 1}),
        ("secret.limits_changed", {"kind": "ephemeral", "reset": True}),
        (
            "secret.read",
            {
                "kind": "ephemeral",
                "read_count": 1,
                "max_reads": 1,
                "expires_at": int(_epoch(expires_at)),
            },
        ),
        ("secret.sealed", {"kind": "ephemeral", "read_count": 1, "max_reads": 1}),
    ]


def test_only_the_creator_or_an_admin_changes_or_deletes(org: Org) -> None:
    """Another viewer and a machine get 403 on PATCH and DELETE and change nothing (value
    and limits stay); the creator changes the value (reads count afresh), an admin who did
    not create it changes limits and deletes it."""
    key = org.name("guarded")
    _create(org, "viewer", key, "original", max_reads=3)
    assert org.call("owner", "GET", _url(key)).status_code == 200
    before = row_counts(org.services.engine)
    for who in ("other", "robot"):
        for method, body in (
            ("PATCH", {"value": MARK}),
            ("PATCH", {"max_reads": 9}),
            ("DELETE", None),
        ):
            response = org.call(who, method, _url(key), json=body)
            assert response.status_code == 403, (who, method, response.text)
            assert MARK not in response.text
    after = row_counts(org.services.engine)
    assert {**after, "audit_log": 0} == {**before, "audit_log": 0}
    assert after["audit_log"] == before["audit_log"] + 6  # one access.denied each
    head = org.call("owner", "HEAD", _url(key))
    assert (_x_coffer(head)["x-coffer-read-count"], _x_coffer(head)["x-coffer-max-reads"]) == (
        "1",
        "3",
    )
    changed = org.call("viewer", "PATCH", _url(key), json={"value": "replaced"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["limits"]["read_count"] == 0
    assert org.call("other", "GET", _url(key)).json()["value"] == "replaced"
    by_admin = org.call("admin", "PATCH", _url(key), json={"max_reads": 5, "ttl_seconds": 60})
    assert by_admin.status_code == 200, by_admin.text
    assert by_admin.json()["limits"]["max_reads"] == 5
    empty = org.call("viewer", "PATCH", _url(key), json={})
    assert (empty.status_code, empty.json()["error"]["field"]) == (400, "body")
    too_low = org.call("viewer", "PATCH", _url(key), json={"max_reads": 1})
    assert too_low.status_code == 400
    assert too_low.json()["error"] == {
        "code": "invalid_input",
        "message": "max_reads must be above the 1 reads already counted; pass reset to count "
        "afresh",
        "field": "max_reads",
    }
    deleted = org.call("admin", "DELETE", _url(key))
    assert deleted.status_code == 200
    assert deleted.json() == {"key": key, "deleted": True}
    assert org.call("viewer", "GET", _url(key)).status_code == 404
    trail = [(a, actor, m) for a, actor, m in _trail(org, key) if a != "access.denied"]
    assert [(a, actor) for a, actor, _ in trail] == [
        ("secret.created", org.ids["viewer"]),
        ("secret.read", org.ids["owner"]),
        ("secret.updated", org.ids["viewer"]),
        ("secret.read", org.ids["other"]),
        ("secret.limits_changed", org.ids["admin"]),
        ("secret.deleted", org.ids["admin"]),
    ]
    assert [m for a, _, m in trail if a not in ("secret.created", "secret.read")] == [
        {"kind": "ephemeral"},
        {"kind": "ephemeral", "max_reads": 5, "ttl_seconds": 60, "reset": False},
        {"kind": "ephemeral"},
    ]


def test_machines_create_and_read_but_do_not_manage_others(org: Org) -> None:
    """A machine token creates an ephemeral secret (created_by the machine), reads its own
    and a person's, and changes and deletes only its own."""
    mine, theirs = org.name("robot-made"), org.name("person-made")
    created = _create(org, "robot", mine, "from-a-robot")
    assert created["created_by"] == org.ids["robot"]
    _create(org, "owner", theirs, "from-a-person")
    assert org.call("robot", "GET", _url(theirs)).json()["value"] == "from-a-person"
    assert org.call("viewer", "GET", _url(mine)).json()["value"] == "from-a-robot"
    assert org.call("robot", "PATCH", _url(mine), json={"max_reads": 4}).status_code == 200
    assert org.call("robot", "DELETE", _url(mine)).json() == {"key": mine, "deleted": True}
    assert org.call("robot", "DELETE", _url(theirs)).status_code == 403


# -- the organization boundary ------------------------------------------------------------------


def test_another_organization_cannot_see_read_or_touch_it(org: Org) -> None:
    """The other organization's owner gets, for acme's name, exactly the answers for a name
    never used (GET, HEAD, PATCH, DELETE), does not see it listed, counts no read, and may
    use the same name for a secret of its own."""
    key = org.name("acme-only")
    _create(org, "viewer", key, "acme-eyes-only", max_reads=1)
    for method, body in (("GET", None), ("DELETE", None), ("PATCH", {"reset": True})):
        answer = org.call("rival", method, _url(key), json=body)
        assert (answer.status_code, answer.text) == _never(org, "rival", method, key, json=body)
        assert answer.status_code == 404
    assert org.call("rival", "HEAD", _url(key)).status_code == 404
    assert key not in org.call("rival", "GET", EPHEMERAL).text
    assert _create(org, "rival", key, "rival-value")["created_by"] == org.ids["rival"]
    assert org.call("rival", "GET", _url(key)).json()["value"] == "rival-value"
    assert org.call("owner", "GET", _url(key)).json()["value"] == "acme-eyes-only"
    assert org.call("owner", "GET", _url(key)).status_code == 404
    assert [a for a, _, _ in _trail(org, key)] == ["secret.created", "secret.read", "secret.burned"]


# -- refused input ------------------------------------------------------------------------------


def test_bad_input_names_the_field_and_changes_nothing(org: Org) -> None:
    """Invalid names (as the vault refuses them, same message), bad ttl_seconds, max_reads
    or delete, a missing or oversized value, and no token: each answers its status naming
    the field, never echoes the value, and adds no row and no audit entry."""
    ttl_rule = "ttl_seconds must be a duration such as 30s, 5m, 2h or 7d"
    cases: list[tuple[dict[str, Any], int, str, str | None]] = [
        ({"ttl_seconds": 0}, 400, "ttl_seconds", "ttl_seconds must be at least 1 second"),
        ({"ttl_seconds": -1}, 400, "ttl_seconds", "ttl_seconds must be at least 1 second"),
        ({"ttl_seconds": ""}, 400, "ttl_seconds", ttl_rule),
        ({"ttl_seconds": "abc"}, 400, "ttl_seconds", ttl_rule),
        ({"ttl_seconds": "10y"}, 400, "ttl_seconds", ttl_rule),
        ({"ttl_seconds": True}, 400, "ttl_seconds", ttl_rule),
        ({"ttl_seconds": 1.5}, 400, "ttl_seconds", ttl_rule),
        (
            {"ttl_seconds": 31_536_001},
            400,
            "ttl_seconds",
            "ttl_seconds must be at most 365 days (31536000 seconds)",
        ),
        ({"max_reads": 0}, 400, "max_reads", "max_reads must be at least 1"),
        ({"max_reads": -1}, 400, "max_reads", "max_reads must be at least 1"),
        ({"max_reads": 1_000_001}, 400, "max_reads", "max_reads must be at most 1,000,000"),
        ({"max_reads": True}, 400, "max_reads", None),
        ({"max_reads": "3"}, 400, "max_reads", None),
        ({"max_reads": 1.5}, 400, "max_reads", None),
        ({"delete": "no"}, 400, "delete", None),
        ({"delete": None}, 400, "delete", None),
        ({"value": MARK + "x" * 65537}, 413, "value", None),
        ({"value": f"{MARK}\x00"}, 400, "value", "value must not contain NUL characters"),
    ]
    before = row_counts(org.services.engine)
    for extra, status, field_name, message in cases:
        body = {"key": org.name("bad"), "value": MARK, **extra}
        response = org.call("owner", "POST", EPHEMERAL, json=body)
        error = response.json()["error"]
        assert (response.status_code, error["field"]) == (status, field_name), (
            extra,
            response.text,
        )
        if message is not None:
            assert error["message"] == message
        assert MARK not in response.text
    missing = org.call("owner", "POST", EPHEMERAL, json={"key": org.name("bad")})
    assert (missing.status_code, missing.json()["error"]["field"]) == (400, "value")
    anonymous = org.client.post(EPHEMERAL, json={"key": org.name("bad"), "value": MARK})
    assert anonymous.status_code == 401
    for key in ("a..b", "a//b", "a/", "1abc", "caf\u00e9", "a b", "k" * 257, "a\tb", " a"):
        created = org.call("owner", "POST", EPHEMERAL, json={"key": key, "value": MARK})
        vault = org.call(
            "owner",
            "PUT",
            secret_path("app", "development", quote(key, safe="/")),
            json={"value": MARK},
        )
        assert created.status_code == vault.status_code == 400, (key, created.text, vault.text)
        assert created.json()["error"] == vault.json()["error"], key
        assert created.json()["error"]["field"] == "key"
    assert row_counts(org.services.engine) == before


# -- expiry and the pruner ----------------------------------------------------------------------


def test_expired_secrets_are_gone_at_once_and_destroyed_when_touched_or_pruned(org: Org) -> None:
    """After a 1-second TTL: HEAD and the list forget it at once; a GET answers 404 like a
    name never used and records secret.expired; creating an expired name again works
    (secret.expired then secret.created); the viewer may not prune; the owner's prune
    destroys the rest (secret.pruned) and a second prune finds nothing."""
    read_key, reuse_key, prune_key = (
        org.name("ttl-read"),
        org.name("ttl-reuse"),
        org.name("ttl-prune"),
    )
    created = [
        _create(org, "viewer", key, f"short-{key}", ttl_seconds=1)
        for key in (read_key, reuse_key, prune_key)
    ]
    live = org.name("ttl-live")
    _create(org, "viewer", live, "still-here", ttl_seconds=3600)
    time.sleep(
        max(0.0, max(_epoch(c["limits"]["expires_at"]) for c in created) + 0.05 - time.time())
    )
    listed = org.call("viewer", "GET", EPHEMERAL).text
    assert live in listed
    assert not any(key in listed for key in (read_key, reuse_key, prune_key))
    assert org.call("viewer", "HEAD", _url(prune_key)).status_code == 404
    read = org.call("viewer", "GET", _url(read_key))
    assert (read.status_code, read.text) == _never(org, "viewer", "GET", read_key)
    stamp = int(_epoch(created[0]["limits"]["expires_at"]))
    assert _trail(org, read_key)[-1] == (
        "secret.expired",
        org.ids["viewer"],
        {"kind": "ephemeral", "expired_at": stamp},
    )
    assert _create(org, "other", reuse_key, "new-life")["created_by"] == org.ids["other"]
    assert [a for a, _, _ in _trail(org, reuse_key)] == [
        "secret.created",
        "secret.expired",
        "secret.created",
    ]
    assert org.call("viewer", "POST", f"{API}/prune").status_code == 403
    assert org.call("robot", "POST", f"{API}/prune").status_code == 403
    pruned = org.call("owner", "POST", f"{API}/prune")
    assert pruned.status_code == 200, pruned.text
    assert pruned.json() == {"pruned": {"secrets": 0, "ephemeral": 1, "shares": 0}}
    action, actor, metadata = _trail(org, prune_key)[-1]
    assert (action, actor, metadata["kind"]) == ("secret.pruned", org.ids["owner"], "ephemeral")
    assert org.call("owner", "POST", f"{API}/prune").json() == {
        "pruned": {"secrets": 0, "ephemeral": 0, "shares": 0}
    }
    assert org.call("viewer", "GET", _url(live)).json()["value"] == "still-here"
    assert org.call("viewer", "GET", _url(reuse_key)).json()["value"] == "new-life"


# -- found in review ------------------------------------------------------------------------


def test_a_read_of_a_value_replaced_meanwhile_counts_nothing(org: Org) -> None:
    """A read that decrypted a value which a new value then replaced must not spend the new
    value's reads: the counting update is pinned to the row it read (its ``updated_at``).
    The read is answered 503 ``contention`` and the new value keeps its one read."""
    from coffer.domain.errors import Contention
    from coffer.domain.models import EphemeralKind
    from coffer.services.limited_reads import count_read
    from coffer.storage import ephemeral_store
    from coffer.storage.tables import ephemeral_secrets

    key = org.name("race")
    _create(org, "owner", key, "old", max_reads=1)
    engine = org.services.engine
    org_id = _org_id(org)
    with engine.begin() as conn:
        before = ephemeral_store.find(conn, org_id, EphemeralKind.SECRET, key)
    assert before is not None
    patched = org.call("owner", "PATCH", _url(key), json={"value": "new"})
    assert patched.status_code == 200, patched.text
    with engine.begin() as conn, pytest.raises(Contention):
        count_read(
            conn,
            ephemeral_secrets,
            before.id,
            before.limits,
            updated_at=before.updated_at,
            now=time.time(),
            missing=LookupError("missing"),  # type: ignore[arg-type]
            sealed=LookupError("sealed"),  # type: ignore[arg-type]
        )
    read = org.call("owner", "GET", _url(key))
    assert read.status_code == 200, read.text
    assert (read.json()["value"], read.json()["read_count"]) == ("new", 1)


def _org_id(org: Org) -> str:
    who = org.call("owner", "GET", f"{API}/whoami").json()
    org_id: str = who["org_id"]
    return org_id


def test_an_ephemeral_secret_cannot_be_made_to_never_expire(org: Org) -> None:
    key = org.name("forever")
    _create(org, "owner", key, "v", ttl_seconds=600)
    refused = org.call("owner", "PATCH", _url(key), json={"ttl_seconds": None})
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "code": "invalid_input",
        "message": (
            "ttl_seconds: an ephemeral secret always expires; give a new TTL instead of null"
        ),
        "field": "ttl_seconds",
    }
    assert org.call("owner", "GET", _url(key)).json()["expires_at"] is not None


def test_a_new_value_with_a_lower_limit_counts_from_zero(org: Org) -> None:
    key = org.name("lower")
    _create(org, "owner", key, "v", max_reads=5)
    for _ in range(3):
        assert org.call("owner", "GET", _url(key)).status_code == 200
    patched = org.call("owner", "PATCH", _url(key), json={"value": "fresh", "max_reads": 2})
    assert patched.status_code == 200, patched.text
    assert (
        patched.json()["limits"]["read_count"],
        patched.json()["limits"]["reads_remaining"],
    ) == (
        0,
        2,
    )


@pytest.mark.parametrize(
    ("method", "body", "field", "message"),
    [
        (
            "POST",
            {"key": "x/typo", "value": "v", "ttl": "5m"},
            "ttl",
            "ttl: Extra inputs are not permitted",
        ),
        (
            "POST",
            {"key": "x/seal", "value": "v", "delete": False},
            "delete",
            "delete=false (seal instead of burn) needs max_reads",
        ),
    ],
)
def test_misspelt_or_meaningless_limits_are_refused(
    org: Org, method: str, body: dict[str, Any], field: str, message: str
) -> None:
    """A misspelt limit must not create a secret without limits, and delete=false without
    a read limit is refused rather than ignored; nothing is stored."""
    response = org.call("owner", method, EPHEMERAL, json=body)
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "invalid_input", "message": message, "field": field}
    assert org.call("owner", "HEAD", _url(body["key"])).status_code == 404


def test_raising_the_limit_of_a_sealed_secret_leaves_it_sealed_with_no_reads_left(
    org: Org,
) -> None:
    key = org.name("sealed")
    _create(org, "owner", key, "v", max_reads=1, delete=False)
    assert org.call("owner", "GET", _url(key)).status_code == 200
    raised = org.call("owner", "PATCH", _url(key), json={"max_reads": 5})
    assert raised.status_code == 200, raised.text
    limits = raised.json()["limits"]
    assert (limits["status"], limits["reads_remaining"]) == ("sealed", 0)
    assert org.call("owner", "GET", _url(key)).status_code == 410
