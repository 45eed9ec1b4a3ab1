"""Versioned secrets over the HTTP API: set, get, list, history, rollback and delete."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.storage.tables import secret_versions, secrets
from tests.conftest import Vault
from tests.integration.api_helpers import (
    env_path,
    get_value,
    listed_versions,
    put_secret,
    secret_path,
)

DEV = "development"


def _history(api: TestClient, project: str, key: str) -> list[dict[str, object]]:
    response = api.get(f"{env_path(project, DEV)}/history/{key}")
    assert response.status_code == 200, response.text
    versions: list[dict[str, object]] = response.json()["versions"]
    return versions


def test_first_set_creates_version_1_and_next_set_updates_to_2(
    api: TestClient, project: str
) -> None:
    """The first write reports outcome "created" at v1, the next "updated" at v2."""
    first = put_secret(api, project, DEV, "db/password", "first-pass")
    second = put_secret(api, project, DEV, "db/password", "second-pass")
    assert first == {"key": "db/password", "outcome": "created", "version": 1}
    assert second == {"key": "db/password", "outcome": "updated", "version": 2}


def test_get_returns_current_value_and_past_version_on_request(
    api: TestClient, project: str
) -> None:
    """GET returns the newest value; ``?version=1`` returns the first with its comment."""
    put_secret(api, project, DEV, "API_KEY", "value-one", comment="initial")
    put_secret(api, project, DEV, "API_KEY", "value-two")
    current = api.get(secret_path(project, DEV, "API_KEY"))
    assert current.status_code == 200
    body = current.json()
    assert (body["key"], body["version"], body["value"], body["comment"]) == (
        "API_KEY",
        2,
        "value-two",
        None,
    )
    old = api.get(secret_path(project, DEV, "API_KEY"), params={"version": 1}).json()
    assert (old["version"], old["value"], old["comment"]) == (1, "value-one", "initial")


def test_get_missing_version_is_404_on_version(api: TestClient, project: str) -> None:
    """Asking for a version that was never written answers 404 naming "version"."""
    put_secret(api, project, DEV, "K", "only-one")
    response = api.get(secret_path(project, DEV, "K"), params={"version": 2})
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("not_found", "version")
    assert "only-one" not in response.text


def test_get_with_a_version_that_is_not_a_positive_integer_is_400(
    api: TestClient, project: str
) -> None:
    """A version that is not a positive integer answers 400 naming "version"."""
    put_secret(api, project, DEV, "K", "v")
    for version in ("0", "-1", "abc", "1.5", ""):
        response = api.get(secret_path(project, DEV, "K"), params={"version": version})
        assert response.status_code == 400, (version, response.text)
        assert response.json()["error"]["field"] == "version"
    bad_rollback = api.post(f"{env_path(project, DEV)}/rollback/K", json={"version": 0})
    assert bad_rollback.status_code == 400
    assert bad_rollback.json()["error"]["field"] == "version"


def test_get_with_a_huge_version_number_is_404_not_500(api: TestClient, project: str) -> None:
    """A version number far beyond any written (2**31, 2**64) answers 404 on "version" for
    get and rollback, not a crash."""
    api_no_raise = TestClient(api.app, headers=dict(api.headers), raise_server_exceptions=False)
    put_secret(api, project, DEV, "K", "v")
    for response in (
        api_no_raise.get(secret_path(project, DEV, "K"), params={"version": 2**64}),
        api_no_raise.get(secret_path(project, DEV, "K"), params={"version": 2**31}),
        api_no_raise.post(f"{env_path(project, DEV)}/rollback/K", json={"version": 2**64}),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["field"] == "version"


def test_unknown_key_is_404_on_key_for_every_route(api: TestClient, project: str) -> None:
    """Get, history, rollback and delete of a key never set answer 404 naming "key"."""
    env = env_path(project, DEV)
    for response in (
        api.get(secret_path(project, DEV, "NEVER_SET")),
        api.get(secret_path(project, DEV, "NEVER_SET"), params={"version": 1}),
        api.get(f"{env}/history/NEVER_SET"),
        api.post(f"{env}/rollback/NEVER_SET", json={"version": 1}),
        api.delete(secret_path(project, DEV, "NEVER_SET")),
    ):
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("not_found", "key")
        assert "'NEVER_SET'" in error["message"]
    assert listed_versions(api, project, DEV) == {}


def test_secrets_are_separate_per_environment(api: TestClient, project: str) -> None:
    """A key set in development is absent from production until set there."""
    put_secret(api, project, DEV, "K", "dev-only")
    assert api.get(secret_path(project, "production", "K")).status_code == 404
    put_secret(api, project, "production", "K", "prod-value")
    assert get_value(api, project, DEV, "K") == "dev-only"
    assert get_value(api, project, "production", "K") == "prod-value"


def test_values_round_trip_exactly(api: TestClient, project: str) -> None:
    """Whatever text is written (up to the limit) reads back exactly, as current and as v1."""
    values = {
        "EMPTY": "",
        "MULTILINE": "line one\nline two\r\n\ttabbed",
        "UNICODE": "ünïcødé ☃ 🔑 中文",
        "SPECIALS": "quotes ' \" and \\ backslash $HOME ${NOT_EXPANDED} %00 %2F",
        "AT_LIMIT": "x" * 65536,
        "AT_LIMIT_WIDE": "é" * 32768,
    }
    for key, value in values.items():
        put_secret(api, project, DEV, key, value)
    for key, value in values.items():
        assert get_value(api, project, DEV, key) == value, key
        assert get_value(api, project, DEV, key, version=1) == value, key


def test_folder_keys_and_encoded_slash_name_the_same_secret(api: TestClient, project: str) -> None:
    """``db/password`` and ``db%2Fpassword`` address one secret; the longest key (256
    characters, with folders and every allowed character) round-trips."""
    put_secret(api, project, DEV, "db/password", "folder-value")
    assert get_value(api, project, DEV, "db%2Fpassword") == "folder-value"
    longest = "_a.b-C/" + "k" * 249
    assert len(longest) == 256
    put_secret(api, project, DEV, longest, "long-key-value")
    assert get_value(api, project, DEV, longest) == "long-key-value"
    assert listed_versions(api, project, DEV) == {"_a.b-C/" + "k" * 249: 1, "db/password": 1}


def test_list_shows_keys_and_versions_but_no_values(api: TestClient, project: str) -> None:
    """The list has every key with its current version, sorted, and none of the values."""
    put_secret(api, project, DEV, "db/password", "LISTLEAK-db-9f1c")
    put_secret(api, project, DEV, "db/password", "LISTLEAK-db-2-9f1c")
    put_secret(api, project, DEV, "API_TOKEN", "LISTLEAK-api-77aa")
    response = api.get(f"{env_path(project, DEV)}/secrets")
    assert response.status_code == 200
    items = response.json()["secrets"]
    assert [(i["key"], i["version"]) for i in items] == [("API_TOKEN", 1), ("db/password", 2)]
    assert all(set(i) == {"key", "version", "created_at", "updated_at"} for i in items)
    assert "LISTLEAK" not in response.text


def test_history_is_newest_first_with_comments_and_author(api: TestClient, project: str) -> None:
    """History lists every version newest first with its comment and the writing identity."""
    put_secret(api, project, DEV, "K", "HISTLEAK-1", comment="first")
    put_secret(api, project, DEV, "K", "HISTLEAK-2", comment="second")
    put_secret(api, project, DEV, "K", "HISTLEAK-3")
    me = api.get("/api/v1/whoami").json()
    response = api.get(f"{env_path(project, DEV)}/history/K")
    assert response.status_code == 200
    body = response.json()
    assert body["key"] == "K"
    versions = body["versions"]
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert [v["comment"] for v in versions] == [None, "second", "first"]
    assert all(v["author"] == {"id": me["id"], "kind": "bootstrap"} for v in versions)
    assert versions[0]["created_at"] >= versions[1]["created_at"] >= versions[2]["created_at"]
    assert "HISTLEAK" not in response.text


def test_rollback_writes_a_new_version_with_the_old_value(api: TestClient, project: str) -> None:
    """Rolling back to v1 writes v3 holding v1's value; v2 stays in history."""
    put_secret(api, project, DEV, "K", "good-value")
    put_secret(api, project, DEV, "K", "bad-value")
    response = api.post(f"{env_path(project, DEV)}/rollback/K", json={"version": 1})
    assert response.status_code == 200, response.text
    assert response.json() == {"key": "K", "outcome": "updated", "version": 3}
    assert get_value(api, project, DEV, "K") == "good-value"
    assert get_value(api, project, DEV, "K", version=2) == "bad-value"
    history = _history(api, project, "K")
    assert [v["version"] for v in history] == [3, 2, 1]
    assert history[0]["comment"] == "rollback to version 1"


def test_rollback_keeps_a_given_comment(api: TestClient, project: str) -> None:
    """A rollback with a comment records that comment on the new version."""
    put_secret(api, project, DEV, "K", "a")
    put_secret(api, project, DEV, "K", "b")
    response = api.post(
        f"{env_path(project, DEV)}/rollback/K", json={"version": 1, "comment": "revert incident"}
    )
    assert response.status_code == 200
    assert _history(api, project, "K")[0]["comment"] == "revert incident"


def test_rollback_to_a_missing_version_is_404_and_writes_nothing(
    api: TestClient, project: str
) -> None:
    """Rolling back to a version that does not exist answers 404 on "version"; nothing changes."""
    put_secret(api, project, DEV, "K", "a")
    put_secret(api, project, DEV, "K", "b")
    response = api.post(f"{env_path(project, DEV)}/rollback/K", json={"version": 7})
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "version"
    assert listed_versions(api, project, DEV) == {"K": 2}
    assert get_value(api, project, DEV, "K") == "b"


def test_delete_destroys_every_version(api: TestClient, vault: Vault, project: str) -> None:
    """Deleting a secret reports the versions destroyed; afterwards get, old versions and
    history are 404 and no version row remains in the database."""
    put_secret(api, project, DEV, "K", "v1")
    put_secret(api, project, DEV, "K", "v2")
    put_secret(api, project, DEV, "OTHER", "stays")
    with vault.services.engine.connect() as conn:
        secret_id = conn.execute(sa.select(secrets.c.id).where(secrets.c.key == "K")).scalar_one()
    response = api.delete(secret_path(project, DEV, "K"))
    assert response.status_code == 200
    assert response.json() == {"key": "K", "deleted": True, "versions_destroyed": 2}
    assert api.get(secret_path(project, DEV, "K")).status_code == 404
    assert api.get(secret_path(project, DEV, "K"), params={"version": 1}).status_code == 404
    assert api.get(f"{env_path(project, DEV)}/history/K").status_code == 404
    assert listed_versions(api, project, DEV) == {"OTHER": 1}
    with vault.services.engine.connect() as conn:
        left = conn.execute(
            sa.select(sa.func.count())
            .select_from(secret_versions)
            .where(secret_versions.c.secret_id == secret_id)
        ).scalar_one()
    assert left == 0


def test_a_key_set_after_deletion_starts_again_at_version_1(api: TestClient, project: str) -> None:
    """After deletion the same key is created afresh at v1 and the old versions stay gone."""
    put_secret(api, project, DEV, "K", "old-1")
    put_secret(api, project, DEV, "K", "old-2")
    assert api.delete(secret_path(project, DEV, "K")).status_code == 200
    assert put_secret(api, project, DEV, "K", "new-1") == {
        "key": "K",
        "outcome": "created",
        "version": 1,
    }
    assert api.get(secret_path(project, DEV, "K"), params={"version": 2}).status_code == 404
    assert [v["version"] for v in _history(api, project, "K")] == [1]
