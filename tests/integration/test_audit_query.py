"""``GET /api/v1/audit``: filters, newest-first pages with a cursor, the organization
boundary, malformed parameters (422 naming the parameter) and who may look.

One vault per module and backend: organization ``acme`` (an owner, an admin and a viewer, two
projects, secrets written and read in two phases) and organization ``globex`` with the same
project and key names. Expected answers are computed from the unfiltered listing, so a filter
must return exactly the matching entries in the same order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coffer.bootstrap import build_services, initialise_vault
from coffer.services.container import Services
from tests.integration.team_helpers import (
    API,
    OWNER_EMAIL,
    PASSWORD,
    bearer,
    cheap_settings,
    client_for,
    create_second_org,
    login,
    member_token,
)

AUDIT = f"{API}/audit"
ADMIN_EMAIL = "admin@acme.test"
VIEWER_EMAIL = "viewer@acme.test"
GLOBEX_EMAIL = "owner@globex.test"
APP_KEYS = ["db/password", "db/user", "dbx", "a_b", "axb", "k1", "k2", "k10"]

Entry = dict[str, Any]


def _secret(project: str, environment: str, key: str) -> str:
    return f"{API}/projects/{project}/environments/{environment}/secrets/{key}"


@dataclass
class World:
    """The HTTP client, the people's tokens and ids, and the time between the two phases."""

    client: TestClient
    services: Services
    owner: str
    admin: str
    admin_id: str
    viewer: str
    viewer_id: str
    globex: str
    acme_org: str
    between: float

    def get(self, token: str, **params: Any) -> Any:
        """GET /api/v1/audit with ``params`` as ``token``'s holder."""
        return self.client.get(AUDIT, params=params, headers=bearer(token))

    def entries(self, token: str | None = None, **params: Any) -> list[Entry]:
        """Every matching entry in one page of up to 1000, asserting there is no next page."""
        response = self.get(token or self.owner, limit="1000", **params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["next"] is None
        entries: list[Entry] = body["entries"]
        return entries


def _write(client: TestClient, token: str, path: str, value: str) -> None:
    response = client.put(path, json={"value": value}, headers=bearer(token))
    assert response.status_code == 200, response.text


def _read(client: TestClient, token: str, path: str) -> None:
    response = client.get(path, headers=bearer(token))
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def world(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """acme's and globex's activity, created once over HTTP."""
    settings = cheap_settings(
        module_database_url, tmp_path_factory.mktemp("query"), audit_seal_interval=3600.0
    )
    initialise_vault(settings, "acme", owner_email=OWNER_EMAIL, owner_password=PASSWORD)
    services = build_services(settings)
    try:
        with client_for(services, settings) as client:
            owner = login(client, OWNER_EMAIL)["token"]
            admin = member_token(client, owner, ADMIN_EMAIL, "admin")
            viewer = member_token(client, owner, VIEWER_EMAIL, "viewer")
            for project in ("app", "web"):
                response = client.post(
                    f"{API}/projects", json={"name": project}, headers=bearer(owner)
                )
                assert response.status_code == 201, response.text
            for key in APP_KEYS:
                _write(client, owner, _secret("app", "production", key), f"value of {key}")
            _write(client, owner, _secret("web", "development", "db/password"), "web value")
            time.sleep(0.01)
            between = time.time()
            time.sleep(0.01)
            for key in ("db/password", "k1", "a_b"):
                _read(client, admin, _secret("app", "production", key))
            _read(client, admin, _secret("web", "development", "db/password"))
            _read(client, owner, _secret("app", "production", "k10"))
            create_second_org(services, settings, "globex", GLOBEX_EMAIL)
            globex = login(client, GLOBEX_EMAIL)["token"]
            response = client.post(f"{API}/projects", json={"name": "app"}, headers=bearer(globex))
            assert response.status_code == 201, response.text
            _write(client, globex, _secret("app", "production", "db/password"), "globex value")
            _read(client, globex, _secret("app", "production", "db/password"))

            def whoami(token: str) -> dict[str, Any]:
                body: dict[str, Any] = client.get(f"{API}/whoami", headers=bearer(token)).json()
                return body

            yield World(
                client=client,
                services=services,
                owner=owner,
                admin=admin,
                admin_id=whoami(admin)["id"],
                viewer=viewer,
                viewer_id=whoami(viewer)["id"],
                globex=globex,
                acme_org=whoami(owner)["org_id"],
                between=between,
            )
    finally:
        services.close()


def _ids(entries: list[Entry]) -> list[str]:
    return [e["id"] for e in entries]


def _glob(pattern: str) -> Callable[[Entry], bool]:
    """The entries whose key matches ``pattern`` (``*`` any run, ``?`` one character,
    everything else literal)."""
    regex = re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern),
        re.DOTALL,
    )
    return lambda e: e["key"] is not None and regex.fullmatch(e["key"]) is not None


# -- The unfiltered listing -----------------------------------------------------------------------


def test_listing_is_newest_first_and_only_the_callers_organization(world: World) -> None:
    """The listing holds acme's entries only (and the system's), newest first, each with
    every public field."""
    entries = world.entries()
    assert len(entries) > 20
    assert {e["org"] for e in entries} <= {world.acme_org, None}
    times = [e["time"] for e in entries]
    assert times == sorted(times, reverse=True)
    indexes = [e["index"] for e in entries if e["index"] is not None]
    assert indexes == sorted(indexes, reverse=True)
    assert len(set(_ids(entries))) == len(entries)
    assert set(entries[0]) == {
        "index", "id", "time", "action", "actor", "org", "project", "environment", "key",
        "source_ip", "user_agent", "result", "metadata",
    }  # fmt: skip


def test_other_organizations_entries_never_appear(world: World) -> None:
    """globex's entries (with the same project and key names) never show in acme's listing
    or filters, and acme's never show in globex's."""
    acme = world.entries()
    globex = world.entries(world.globex)
    assert globex and acme
    globex_own = [e for e in globex if e["org"] is not None]
    assert any(e["action"] == "secret.read" and e["key"] == "db/password" for e in globex_own)
    assert not set(_ids(globex_own)) & set(_ids(acme))
    assert not set(_ids(acme)) & set(_ids(globex_own))
    for params in ({"project": "app"}, {"key": "db/password"}, {"actor": GLOBEX_EMAIL}):
        assert not set(_ids(world.entries(**params))) & set(_ids(globex_own))
    assert world.entries(actor=GLOBEX_EMAIL) == []


# -- Filters ----------------------------------------------------------------------------------


FILTERS: dict[str, tuple[dict[str, str], Callable[[Entry], bool]]] = {
    "action-exact": ({"action": "secret.read"}, lambda e: e["action"] == "secret.read"),
    "action-area": ({"action": "secret.*"}, lambda e: e["action"].startswith("secret.")),
    "action-any": ({"action": "*"}, lambda e: True),
    "key-exact": ({"key": "db/user"}, lambda e: e["key"] == "db/user"),
    "key-prefix": ({"key": "db/*"}, _glob("db/*")),
    "key-glob-question": ({"key": "k?"}, _glob("k?")),
    "key-glob-middle": ({"key": "*b/p*d"}, _glob("*b/p*d")),
    "key-underscore-literal": ({"key": "a_*"}, _glob("a_*")),
    "key-percent-literal": ({"key": "%b*"}, lambda e: False),
    "key-percent-exact": ({"key": "%"}, lambda e: False),
    "project": ({"project": "web"}, lambda e: e["project"] == "web"),
    "environment": (
        {"environment": "development"},
        lambda e: e["environment"] == "development",
    ),
    "combined": (
        {"action": "secret.read", "key": "db/*", "project": "app"},
        lambda e: (
            e["action"] == "secret.read"
            and e["project"] == "app"
            and (e["key"] or "").startswith("db/")
        ),
    ),
}


@pytest.mark.parametrize("name", FILTERS)
def test_filter_returns_exactly_the_matching_entries(world: World, name: str) -> None:
    """Each filter returns exactly the entries of the full listing that match it, in the
    same newest-first order."""
    params, matches = FILTERS[name]
    everything = world.entries()
    expected = [e for e in everything if matches(e)]
    assert world.entries(**params) == expected
    if name not in {"action-any", "key-percent-literal", "key-percent-exact"}:
        assert 0 < len(expected) < len(everything)


def test_key_glob_characters_are_not_sql_wildcards(world: World) -> None:
    """``_`` and ``%`` in a key filter are literal: ``a_*`` finds a_b but not axb, and a
    ``%`` matches nothing although keys exist."""
    keys = {e["key"] for e in world.entries(key="a_*")}
    assert keys == {"a_b"}
    assert {e["key"] for e in world.entries(key="a?b")} == {"a_b", "axb"}
    assert world.entries(key="%") == []
    assert world.entries(key="%*") == []
    assert world.entries(key="db%password") == []
    assert world.entries(key="db_user") == []


def test_since_and_until_bound_the_time(world: World) -> None:
    """since and until (Unix seconds, inclusive) keep the entries inside the window."""
    everything = world.entries()
    t = world.between
    after = world.entries(since=str(t))
    before = world.entries(until=str(t))
    assert after == [e for e in everything if e["time"] >= t]
    assert before == [e for e in everything if e["time"] <= t]
    assert after and before
    assert _ids(after) + _ids(before) == _ids(everything)
    middle = everything[len(everything) // 2]
    exact = world.entries(since=repr(middle["time"]), until=repr(middle["time"]))
    assert middle["id"] in _ids(exact)
    assert all(e["time"] == middle["time"] for e in exact)


def test_actor_by_id_and_by_email_are_the_same(world: World) -> None:
    """actor accepts an identity id or a member's e-mail address and returns exactly that
    identity's entries."""
    everything = world.entries()
    by_id = world.entries(actor=world.admin_id)
    assert by_id == [e for e in everything if e["actor"]["id"] == world.admin_id]
    assert len([e for e in by_id if e["action"] == "secret.read"]) == 4
    assert world.entries(actor=ADMIN_EMAIL) == by_id
    assert world.entries(actor="nobody@acme.test") == []
    assert world.entries(actor="01JD3ZQ3T0000000000000000X") == []


# -- Pages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"action": "secret.*"}], ids=["all", "filtered"])
def test_cursor_walks_every_entry_once_newest_first(world: World, params: dict[str, str]) -> None:
    """Following ``next`` with limit=3 visits every matching entry exactly once, newest
    first, in pages of at most 3, and the last page has no ``next``."""
    everything = world.entries(**params)
    seen: list[Entry] = []
    cursor: str | None = None
    pages = 0
    while True:
        extra = {"cursor": cursor} if cursor else {}
        response = world.get(world.owner, limit="3", **params, **extra)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["entries"]) == min(3, len(everything) - len(seen))
        seen.extend(body["entries"])
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
        assert len(body["entries"]) == 3
    assert seen == everything
    assert pages == -(-len(everything) // 3)


def test_limit_caps_the_page(world: World) -> None:
    """limit=1 returns the newest entry only, with a cursor; limit=1000 is accepted."""
    everything = world.entries()
    response = world.get(world.owner, limit="1")
    body = response.json()
    assert response.status_code == 200
    assert body["entries"] == everything[:1]
    assert body["next"]
    assert world.get(world.owner, limit="1000").status_code == 200


# -- Malformed parameters -----------------------------------------------------------------------

MALFORMED: dict[str, tuple[dict[str, str], str]] = {
    "since-word": ({"since": "abc"}, "since"),
    "since-negative": ({"since": "-5"}, "since"),
    "since-nan": ({"since": "nan"}, "since"),
    "until-word": ({"until": "yesterday"}, "until"),
    "until-before-since": ({"since": "2000", "until": "1000"}, "until"),
    "limit-zero": ({"limit": "0"}, "limit"),
    "limit-too-big": ({"limit": "1001"}, "limit"),
    "limit-word": ({"limit": "x"}, "limit"),
    "limit-negative": ({"limit": "-1"}, "limit"),
    "limit-fraction": ({"limit": "1.5"}, "limit"),
    "action-unknown": ({"action": "nope"}, "action"),
    "action-unknown-area": ({"action": "nope.*"}, "action"),
    "cursor-garbage": ({"cursor": "garbage!"}, "cursor"),
    "cursor-wrong-tag": ({"cursor": "eDE6MTA"}, "cursor"),  # "x1:10"
    "key-control": ({"key": "db/\x01password"}, "key"),
    "key-newline": ({"key": "db\npassword"}, "key"),
    "key-too-long": ({"key": "k" * 257}, "key"),
    "actor-nul": ({"actor": "a\x00b"}, "actor"),
    "project-escape": ({"project": "web\x1b[31m"}, "project"),
    "environment-delete": ({"environment": "dev\x7f"}, "environment"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_parameter_is_422_naming_it(world: World, name: str) -> None:
    """A malformed query parameter is answered 422 invalid_query with error.field naming
    it."""
    params, field = MALFORMED[name]
    response = world.get(world.owner, **params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_query"
    assert error["field"] == field
    assert error["message"].startswith(field)
    assert "\x1b" not in response.text and "\x00" not in response.text


# -- Who may look ---------------------------------------------------------------------------------


def test_admin_may_query(world: World) -> None:
    """An admin sees the same listing as the owner."""
    assert world.entries(world.admin) == world.entries()


def test_viewer_is_refused_and_the_refusal_is_recorded(world: World) -> None:
    """A viewer gets 403 on the listing, verify and export, and each refusal is recorded as
    access.denied with the viewer as actor."""
    before = world.entries(action="access.denied", actor=world.viewer_id)
    for response in (
        world.get(world.viewer),
        world.client.post(f"{AUDIT}/verify", headers=bearer(world.viewer)),
        world.client.get(f"{AUDIT}/export", headers=bearer(world.viewer)),
    ):
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "access_denied"
    denied = world.entries(action="access.denied", actor=world.viewer_id)
    new = denied[: len(denied) - len(before)]
    assert len(new) == 3
    for entry in new:
        assert entry["result"] == "failure"
        assert entry["metadata"]["action"] == "audit.view"
        assert entry["org"] == world.acme_org
    assert world.client.get(AUDIT).status_code == 401
