"""Bulk routes over the HTTP API: import, export, references, diff and promote."""

from __future__ import annotations

import io
import json
from typing import Any

import yaml
from dotenv import dotenv_values
from fastapi.testclient import TestClient

from tests.conftest import Vault
from tests.integration.api_helpers import (
    PROJECTS,
    env_path,
    get_value,
    listed_versions,
    put_secret,
    row_counts,
    secret_path,
)

DEV = "development"
STG = "staging"


def _import(api: TestClient, project: str, environment: str, body: dict[str, Any]) -> Any:
    return api.post(f"{env_path(project, environment)}/import", json=body)


def _export(api: TestClient, project: str, environment: str, **params: Any) -> Any:
    return api.get(f"{env_path(project, environment)}/export", params=params)


def _promote(api: TestClient, project: str, **body: Any) -> Any:
    return api.post(f"{PROJECTS}/{project}/promote", json=body)


# --- import -----------------------------------------------------------------------------------


def test_import_of_a_secrets_map_creates_every_key(api: TestClient, project: str) -> None:
    """Importing a key-to-value map reports each key created and stores each value."""
    response = _import(api, project, DEV, {"secrets": {"db/password": "pw-1", "API_KEY": "ak-1"}})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "created": ["API_KEY", "db/password"],
        "updated": [],
        "unchanged": [],
    }
    assert get_value(api, project, DEV, "db/password") == "pw-1"
    assert get_value(api, project, DEV, "API_KEY") == "ak-1"


def test_import_of_dotenv_content_parses_quotes_export_and_comments(
    api: TestClient, project: str
) -> None:
    """A .env text is imported with its quoting rules; "$" is not interpolated."""
    content = (
        "# comment line\n"
        "DB_HOST=localhost\n"
        "export PORT=5432\n"
        'QUOTED="a b # not a comment"\n'
        "SINGLE='lit $HOME ${X}'\n"
        'MULTI="line1\\nline2"\n'
    )
    response = _import(api, project, DEV, {"content": content, "format": "dotenv"})
    assert response.status_code == 200, response.text
    assert sorted(response.json()["created"]) == ["DB_HOST", "MULTI", "PORT", "QUOTED", "SINGLE"]
    assert get_value(api, project, DEV, "DB_HOST") == "localhost"
    assert get_value(api, project, DEV, "PORT") == "5432"
    assert get_value(api, project, DEV, "QUOTED") == "a b # not a comment"
    assert get_value(api, project, DEV, "SINGLE") == "lit $HOME ${X}"
    assert get_value(api, project, DEV, "MULTI") == "line1\nline2"


def test_import_of_json_content_flattens_folders(api: TestClient, project: str) -> None:
    """JSON content becomes folder keys; numbers keep their text and booleans become words."""
    content = json.dumps({"db": {"password": "pw", "port": 5432}, "debug": True, "ratio": 1.5})
    response = _import(api, project, DEV, {"content": content})
    assert response.status_code == 200, response.text
    assert response.json()["created"] == ["db/password", "db/port", "debug", "ratio"]
    assert get_value(api, project, DEV, "db/port") == "5432"
    assert get_value(api, project, DEV, "debug") == "true"
    assert get_value(api, project, DEV, "ratio") == "1.5"


def test_reimport_reports_unchanged_and_writes_only_changes(api: TestClient, project: str) -> None:
    """Importing again leaves identical values alone and writes a version only for changes."""
    first = {"A": "same-a", "B": "old-b"}
    assert _import(api, project, DEV, {"secrets": first}).status_code == 200
    response = _import(api, project, DEV, {"secrets": {"A": "same-a", "B": "new-b", "C": "c"}})
    assert response.status_code == 200
    assert response.json() == {"created": ["C"], "updated": ["B"], "unchanged": ["A"]}
    assert listed_versions(api, project, DEV) == {"A": 1, "B": 2, "C": 1}
    assert get_value(api, project, DEV, "B") == "new-b"


def test_import_with_one_invalid_key_changes_nothing(
    api: TestClient, vault: Vault, project: str
) -> None:
    """One bad key rejects the whole import with 400 naming "key"; no other key is written."""
    put_secret(api, project, DEV, "A", "original-a")
    before = row_counts(vault.services.engine)
    bad_map = {"secrets": {"A": "IMPORTLEAK-a", "B": "IMPORTLEAK-b", "bad..key": "IMPORTLEAK"}}
    bad_dotenv = {"content": "A=IMPORTLEAK-a\nB=IMPORTLEAK-b\n1BAD=IMPORTLEAK\n"}
    for body, field in ((bad_map, "key"), (bad_dotenv, "key on line 3")):
        response = _import(api, project, DEV, body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] == field
        assert "IMPORTLEAK" not in response.text
    assert row_counts(vault.services.engine) == before
    assert listed_versions(api, project, DEV) == {"A": 1}
    assert get_value(api, project, DEV, "A") == "original-a"


def test_import_with_one_oversized_value_changes_nothing(
    api: TestClient, vault: Vault, project: str
) -> None:
    """One value over the limit rejects the whole import with 413; nothing is written."""
    before = row_counts(vault.services.engine)
    response = _import(api, project, DEV, {"secrets": {"A": "a", "B": "b" * 65537}})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert row_counts(vault.services.engine) == before


def test_import_needs_exactly_one_source(api: TestClient, vault: Vault, project: str) -> None:
    """Giving both or neither of secrets and content, or an empty map, answers 400."""
    before = row_counts(vault.services.engine)
    bodies: list[dict[str, Any]] = [{"secrets": {"A": "x"}, "content": "A=x"}, {}, {"secrets": {}}]
    for body in bodies:
        response = _import(api, project, DEV, body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["field"] == "secrets"
    assert row_counts(vault.services.engine) == before


def test_import_of_unparsable_content_names_the_line_or_file(
    api: TestClient, vault: Vault, project: str
) -> None:
    """An unclosed quote names its line, bad JSON names the file, an unknown format "format"."""
    before = row_counts(vault.services.engine)
    cases = [
        ({"content": 'A=1\nB="PARSELEAK\n', "format": "dotenv"}, "line 2"),
        ({"content": '{"A": "PARSELEAK",', "format": "json"}, "file"),
        ({"content": "A: PARSELEAK", "format": "yaml"}, "format"),
    ]
    for body, field in cases:
        response = _import(api, project, DEV, body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["field"] == field
        assert "PARSELEAK" not in response.text
    assert row_counts(vault.services.engine) == before


# --- export -----------------------------------------------------------------------------------


def test_export_dotenv_uses_variable_names_and_no_store(api: TestClient, project: str) -> None:
    """The .env export maps db/password to DB_PASSWORD, quotes safely and is never cached."""
    values = {"db/password": "p@ss 'w\"ord\n2", "api.v2-token": "tok$en", "PLAIN": "x"}
    for key, value in values.items():
        put_secret(api, project, DEV, key, value)
    response = _export(api, project, DEV, format="dotenv")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("text/plain")
    parsed = dotenv_values(stream=io.StringIO(response.text), interpolate=False)
    assert parsed == {"API_V2_TOKEN": "tok$en", "DB_PASSWORD": "p@ss 'w\"ord\n2", "PLAIN": "x"}
    names = [line.split("=", 1)[0] for line in response.text.splitlines() if "=" in line]
    assert names[0] == "API_V2_TOKEN"


def test_export_json_and_yaml_keep_original_key_names(api: TestClient, project: str) -> None:
    """JSON and YAML exports hold the original keys and exact values, with no-store."""
    values = {"db/password": "pw: 'quoted' # x", "FLAG": "true", "NUM": "007", "EMPTY": ""}
    for key, value in values.items():
        put_secret(api, project, DEV, key, value)
    as_json = _export(api, project, DEV, format="json")
    as_yaml = _export(api, project, DEV, format="yaml")
    default = _export(api, project, DEV)
    for response in (as_json, as_yaml, default):
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
    assert json.loads(as_json.text) == values
    assert json.loads(default.text) == values
    assert yaml.safe_load(as_yaml.text) == values


def test_export_of_an_empty_environment_is_empty(api: TestClient, project: str) -> None:
    """An environment without secrets exports an empty JSON object; a missing one is 404."""
    response = _export(api, project, DEV, format="json")
    assert response.status_code == 200
    assert json.loads(response.text) == {}
    missing = _export(api, project, "nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "environment"


def test_export_rejects_unknown_format_and_colliding_variable_names(
    api: TestClient, project: str
) -> None:
    """An unknown format answers 400 on "format"; two keys mapping to one variable 400 on "key"."""
    put_secret(api, project, DEV, "db/password", "COLLIDE-1")
    put_secret(api, project, DEV, "DB_PASSWORD", "COLLIDE-2")
    bad_format = _export(api, project, DEV, format="xml")
    assert bad_format.status_code == 400
    assert bad_format.json()["error"]["field"] == "format"
    collision = _export(api, project, DEV, format="dotenv")
    assert collision.status_code == 400
    error = collision.json()["error"]
    assert error["field"] == "key"
    assert "DB_PASSWORD" in error["message"] and "db/password" in error["message"]
    assert "COLLIDE" not in collision.text


# --- references -------------------------------------------------------------------------------


def _seed_references(api: TestClient, project: str) -> None:
    assert api.post(PROJECTS, json={"name": "shared"}).status_code == 201
    put_secret(api, "shared", "production", "SMTP_PASS", "smtp-secret")
    put_secret(api, project, STG, "HOST", "stg-host")
    put_secret(api, project, DEV, "DB_USER", "app")
    put_secret(api, project, DEV, "DB_PASS", "pw")
    put_secret(api, project, DEV, "URL", "postgres://${DB_USER}:${DB_PASS}@${staging.HOST}/db")
    put_secret(api, project, DEV, "MAIL", "smtp://${shared.production.SMTP_PASS}")
    put_secret(api, project, DEV, "LITERAL", "$${HOME} and $PATH")


EXPANDED = {
    "DB_USER": "app",
    "DB_PASS": "pw",
    "URL": "postgres://app:pw@stg-host/db",
    "MAIL": "smtp://smtp-secret",
    "LITERAL": "${HOME} and $PATH",
}


def test_references_are_expanded_in_export_and_get(api: TestClient, project: str) -> None:
    """${KEY}, ${ENV.KEY} and ${PROJECT.ENV.KEY} expand in export and in get?expand=true;
    a plain get and export?expand=false return the stored text."""
    _seed_references(api, project)
    exported = _export(api, project, DEV, format="json")
    assert exported.status_code == 200, exported.text
    assert json.loads(exported.text) == EXPANDED
    for key, value in EXPANDED.items():
        assert get_value(api, project, DEV, key, expand="true") == value
    # Without expansion the stored text comes back with its references.
    raw_url = "postgres://${DB_USER}:${DB_PASS}@${staging.HOST}/db"
    assert get_value(api, project, DEV, "URL") == raw_url
    assert get_value(api, project, DEV, "URL", expand="false") == raw_url
    exported_raw = json.loads(_export(api, project, DEV, format="json", expand="false").text)
    assert exported_raw["URL"] == raw_url
    assert exported_raw["LITERAL"] == "$${HOME} and $PATH"


def test_nested_references_expand_recursively(api: TestClient, project: str) -> None:
    """A reference to a value that itself holds references expands all the way down."""
    put_secret(api, project, DEV, "C", "bottom")
    put_secret(api, project, DEV, "B", "[${C}]")
    put_secret(api, project, DEV, "A", "<${B}>")
    assert get_value(api, project, DEV, "A", expand="true") == "<[bottom]>"


def test_missing_reference_is_a_clear_400(api: TestClient, project: str) -> None:
    """A reference to a secret that does not exist answers 400 on "reference" naming it."""
    put_secret(api, project, DEV, "DANGLING", "REFLEAK-${NOPE}")
    for response in (
        api.get(secret_path(project, DEV, "DANGLING"), params={"expand": "true"}),
        _export(api, project, DEV, format="dotenv"),
    ):
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_input", "reference")
        assert "web.development.NOPE" in error["message"]
        assert "does not exist" in error["message"]
        assert "REFLEAK" not in response.text
    assert get_value(api, project, DEV, "DANGLING") == "REFLEAK-${NOPE}"


def test_reference_cycle_is_a_clear_400(api: TestClient, project: str) -> None:
    """Secrets that reference each other (or themselves) answer 400 giving the cycle, in get
    and export."""
    put_secret(api, project, DEV, "A", "CYCLELEAK-${B}")
    put_secret(api, project, DEV, "B", "CYCLELEAK-${A}")
    response = api.get(secret_path(project, DEV, "A"), params={"expand": "true"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "reference"
    assert error["message"] == (
        "reference cycle: web.development.A -> web.development.B -> web.development.A"
    )
    assert "CYCLELEAK" not in response.text
    exported = _export(api, project, DEV)
    assert exported.status_code == 400
    assert "reference cycle" in exported.json()["error"]["message"]
    put_secret(api, project, STG, "SELF", "${SELF}")
    itself = api.get(secret_path(project, STG, "SELF"), params={"expand": "true"})
    assert itself.status_code == 400
    assert "web.staging.SELF -> web.staging.SELF" in itself.json()["error"]["message"]


# --- diff -------------------------------------------------------------------------------------


def _seed_diff(api: TestClient, project: str) -> None:
    put_secret(api, project, DEV, "ONLY_DEV", "DIFFLEAK-only-dev")
    put_secret(api, project, DEV, "SAME", "DIFFLEAK-same")
    put_secret(api, project, DEV, "CHANGED", "DIFFLEAK-dev")
    put_secret(api, project, STG, "SAME", "DIFFLEAK-same")
    put_secret(api, project, STG, "CHANGED", "DIFFLEAK-stg")
    put_secret(api, project, STG, "ONLY_STG", "DIFFLEAK-only-stg")


def test_diff_lists_keys_by_side_and_difference_without_values(
    api: TestClient, project: str
) -> None:
    """Diff names keys only in each side, differing and identical keys, and shows no value."""
    _seed_diff(api, project)
    response = api.get(f"{PROJECTS}/{project}/diff", params={"from": DEV, "to": STG})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "from": DEV,
        "to": STG,
        "only_in_from": ["ONLY_DEV"],
        "only_in_to": ["ONLY_STG"],
        "different": ["CHANGED"],
        "same": ["SAME"],
    }
    assert "DIFFLEAK" not in response.text
    missing = api.get(f"{PROJECTS}/{project}/diff", params={"from": DEV, "to": "nope"})
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "environment"


# --- promote ----------------------------------------------------------------------------------


def _seed_promote(api: TestClient, project: str) -> None:
    put_secret(api, project, DEV, "NEW", "dev-new")
    put_secret(api, project, DEV, "CHANGED", "dev-changed")
    put_secret(api, project, DEV, "SAME", "same")
    put_secret(api, project, STG, "CHANGED", "stg-changed")
    put_secret(api, project, STG, "SAME", "same")


def test_promote_dry_run_reports_and_writes_nothing(
    api: TestClient, vault: Vault, project: str
) -> None:
    """A dry run reports what would happen and leaves the target untouched."""
    _seed_promote(api, project)
    before = row_counts(vault.services.engine)
    response = _promote(
        api, project, **{"from": DEV, "to": STG, "overwrite": True, "dry_run": True}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "created": ["NEW"],
        "updated": ["CHANGED"],
        "skipped": ["SAME"],
        "dry_run": True,
    }
    assert row_counts(vault.services.engine) == before
    assert listed_versions(api, project, STG) == {"CHANGED": 1, "SAME": 1}
    assert get_value(api, project, STG, "CHANGED") == "stg-changed"


def test_promote_without_overwrite_skips_differing_keys(api: TestClient, project: str) -> None:
    """Without overwrite, missing keys are created and differing keys are skipped unchanged."""
    _seed_promote(api, project)
    response = _promote(api, project, **{"from": DEV, "to": STG})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "created": ["NEW"],
        "updated": [],
        "skipped": ["CHANGED", "SAME"],
        "dry_run": False,
    }
    assert get_value(api, project, STG, "NEW") == "dev-new"
    assert get_value(api, project, STG, "CHANGED") == "stg-changed"
    assert listed_versions(api, project, STG) == {"CHANGED": 1, "NEW": 1, "SAME": 1}


def test_promote_with_overwrite_updates_differing_keys(api: TestClient, project: str) -> None:
    """With overwrite, a differing key gets a new version holding the source value."""
    _seed_promote(api, project)
    response = _promote(api, project, **{"from": DEV, "to": STG, "overwrite": True})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "created": ["NEW"],
        "updated": ["CHANGED"],
        "skipped": ["SAME"],
        "dry_run": False,
    }
    assert get_value(api, project, STG, "CHANGED") == "dev-changed"
    assert listed_versions(api, project, STG) == {"CHANGED": 2, "NEW": 1, "SAME": 1}
    history = api.get(f"{env_path(project, STG)}/history/CHANGED").json()["versions"]
    assert history[0]["comment"] == "promoted from development"
    assert listed_versions(api, project, DEV) == {"CHANGED": 1, "NEW": 1, "SAME": 1}


def test_promote_with_keys_copies_only_those(api: TestClient, project: str) -> None:
    """With a keys subset only the listed keys are considered."""
    _seed_promote(api, project)
    response = _promote(
        api, project, **{"from": DEV, "to": STG, "keys": ["CHANGED"], "overwrite": True}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "created": [],
        "updated": ["CHANGED"],
        "skipped": [],
        "dry_run": False,
    }
    assert api.get(secret_path(project, STG, "NEW")).status_code == 404
    assert get_value(api, project, STG, "CHANGED") == "dev-changed"


def test_promote_rejects_same_environment_and_bad_key(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Promoting onto itself answers 400 on "to", an invalid key 400 on "keys", a key the
    source lacks 404 on "keys"; none of them copies anything."""
    _seed_promote(api, project)
    before = row_counts(vault.services.engine)
    unknown = _promote(api, project, **{"from": DEV, "to": STG, "keys": ["NEW", "GHOST"]})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["field"] == "keys"
    assert "GHOST" in unknown.json()["error"]["message"]
    assert api.get(secret_path(project, STG, "NEW")).status_code == 404
    same = _promote(api, project, **{"from": DEV, "to": DEV})
    assert same.status_code == 400
    assert same.json()["error"]["field"] == "to"
    bad_key = _promote(api, project, **{"from": DEV, "to": STG, "keys": ["a..b"]})
    assert bad_key.status_code == 400
    assert bad_key.json()["error"]["field"] == "keys"
    unknown_env = _promote(api, project, **{"from": DEV, "to": "nope"})
    assert unknown_env.status_code == 404
    assert unknown_env.json()["error"]["field"] == "environment"
    assert row_counts(vault.services.engine) == before


def test_promote_copies_references_raw_so_they_resolve_in_the_target(
    api: TestClient, project: str
) -> None:
    """A promoted value keeps its ${KEY} text, which then reads the target's own KEY."""
    put_secret(api, project, DEV, "HOST", "dev-host")
    put_secret(api, project, DEV, "URL", "https://${HOST}/")
    put_secret(api, project, STG, "HOST", "stg-host")
    response = _promote(api, project, **{"from": DEV, "to": STG, "keys": ["URL"]})
    assert response.status_code == 200
    assert get_value(api, project, STG, "URL") == "https://${HOST}/"
    assert get_value(api, project, STG, "URL", expand="true") == "https://stg-host/"
