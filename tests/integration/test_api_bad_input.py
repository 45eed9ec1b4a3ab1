"""Bad input and bad credentials over the HTTP API: the right status, a message naming the
field and the rule, no echo of the submitted value, and nothing changed in the vault."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from coffer.api.app import create_app
from coffer.bootstrap import build_services
from coffer.crypto.tokens import mint_token
from tests.conftest import Vault
from tests.integration.api_helpers import (
    env_path,
    get_value,
    listed_versions,
    put_secret,
    row_counts,
    secret_path,
)

DEV = "development"
MARK = "LEAKMARK-5f0c2e"  # distinctive text that must never come back in an error
VALUE = f"{MARK}-value"


@pytest.fixture
def seeded(api: TestClient, project: str) -> str:
    """The ``web`` project with one existing secret, EXISTING at version 1."""
    put_secret(api, project, DEV, "EXISTING", "existing-value")
    return project


@pytest.fixture
def lenient_api(api: TestClient) -> TestClient:
    """The same authenticated client, but a server crash comes back as a 500 response."""
    return TestClient(api.app, headers=dict(api.headers), raise_server_exceptions=False)


def _snapshot(api: TestClient, vault: Vault) -> tuple[dict[str, int], dict[str, int]]:
    return listed_versions(api, "web", DEV), row_counts(vault.services.engine)


def _error(response: Any, status: int, code: str, field: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert MARK not in response.text
    return error


BAD_KEYS = [
    ("%2E%2E", '".."'),
    ("a/%2E%2E/b", '".."'),
    ("a..b", '".."'),
    ("a//b", "empty segment"),
    ("a/", "empty segment"),
    ("%2Fa", "empty segment"),
    ("a%00b", "U+0000"),
    ("a%09b", "U+0009"),
    ("a%0Ab", "U+000A"),
    ("a%0Db", "U+000D"),
    ("a%1Bb", "U+001B"),
    ("%20a", "whitespace"),
    ("a%20", "whitespace"),
    ("k" * 257, "257 characters long; the limit is 256"),
    ("1abc", "must start with a letter or underscore"),
    ("caf%C3%A9", "must start with a letter or underscore"),
    ("a%20b", "must start with a letter or underscore"),
]


def test_set_with_invalid_key_is_400_on_key_and_changes_nothing(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """Writing under each key that breaks a rule answers 400 naming "key" and that rule."""
    before = _snapshot(api, vault)
    for key, rule in BAD_KEYS:
        response = api.put(secret_path(seeded, DEV, key), json={"value": VALUE})
        assert response.status_code == 400, (key, response.text)
        error = _error(response, 400, "invalid_input", "key")
        assert rule in error["message"], (key, error["message"])
    assert _snapshot(api, vault) == before


def test_other_secret_routes_reject_invalid_keys_with_400(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """Get, delete, history and rollback answer 400 naming "key" for an invalid key."""
    before = _snapshot(api, vault)
    for method, suffix, body in (
        ("GET", "secrets/%2E%2E", None),
        ("DELETE", "secrets/%2E%2E", None),
        ("GET", "history/%2E%2E", None),
        ("POST", "rollback/%2E%2E", {"version": 1}),
        ("GET", "secrets/a//b", None),
        ("DELETE", "secrets/a%00b", None),
        ("GET", "secrets/a%0Ab", None),
        ("GET", "history/a%0Ab", None),
        ("GET", "secrets/a%20?version=1", None),
    ):
        response = api.request(method, f"{env_path(seeded, DEV)}/{suffix}", json=body)
        assert response.status_code == 400, (method, suffix, response.text)
        _error(response, 400, "invalid_input", "key")
    assert _snapshot(api, vault) == before


def test_key_with_a_trailing_newline_is_rejected_and_leaves_the_other_key_alone(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """Writing, deleting or rolling back "EXISTING\\n" answers 400 on "key"; EXISTING stays v1."""
    before = _snapshot(api, vault)
    responses = [
        api.put(secret_path(seeded, DEV, "EXISTING%0A"), json={"value": VALUE}),
        api.delete(secret_path(seeded, DEV, "EXISTING%0A")),
        api.post(f"{env_path(seeded, DEV)}/rollback/EXISTING%0A", json={"version": 1}),
    ]
    for response in responses:
        _error(response, 400, "invalid_input", "key")
    assert _snapshot(api, vault) == before
    assert get_value(api, seeded, DEV, "EXISTING") == "existing-value"


def test_plain_read_of_a_key_with_a_trailing_newline_is_400_not_another_secret(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """Reading "EXISTING\\n" answers 400 on "key" and never returns EXISTING's value."""
    response = api.get(secret_path(seeded, DEV, "EXISTING%0A"))
    assert "existing-value" not in response.text
    _error(response, 400, "invalid_input", "key")


def test_unknown_route_answers_with_the_error_envelope(api: TestClient) -> None:
    """An unknown path or method still answers with an {"error": {"code", "message"}} body."""
    for method, path, status in (
        ("GET", "/api/v1/no-such-route", 404),
        ("PATCH", "/api/v1/projects", 405),
    ):
        response = api.request(method, path)
        assert response.status_code == status
        error = response.json()["error"]
        assert error["code"] and error["message"]


def test_value_over_the_limit_is_413_too_large_and_changes_nothing(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """A value of 64 KiB + 1 byte answers 413 "too_large" on "value"; the secret keeps v1."""
    before = _snapshot(api, vault)
    value = MARK + "z" * (65536 + 1 - len(MARK))
    for key in ("EXISTING", "NEW_KEY"):
        response = api.put(secret_path(seeded, DEV, key), json={"value": value})
        error = _error(response, 413, "too_large", "value")
        assert "65537 bytes" in error["message"] and "65536" in error["message"]
    assert _snapshot(api, vault) == before
    assert get_value(api, seeded, DEV, "EXISTING") == "existing-value"


def test_value_limit_counts_utf8_bytes_not_characters(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """32769 two-byte characters (65538 bytes) are over the 64 KiB limit."""
    before = _snapshot(api, vault)
    response = api.put(secret_path(seeded, DEV, "WIDE"), json={"value": "é" * 32769})
    _error(response, 413, "too_large", "value")
    assert _snapshot(api, vault) == before


@pytest.fixture
def small_limit_api(vault: Vault) -> Iterator[TestClient]:
    """A client on the same vault served with COFFER_MAX_VALUE_BYTES=16."""
    services = build_services(vault.settings.with_overrides(max_value_bytes=16))
    app = create_app(services, max_body_bytes=vault.settings.max_body_bytes)
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {vault.token}"}) as client:
            yield client
    finally:
        services.close()


def test_configured_value_limit_is_enforced(
    small_limit_api: TestClient, vault: Vault, project: str
) -> None:
    """With a 16-byte limit, 16 bytes are stored and 17 bytes answer 413 naming the limit."""
    api = small_limit_api
    put_secret(api, project, DEV, "K", "0123456789abcdef")
    before = _snapshot(api, vault)
    response = api.put(secret_path(project, DEV, "K"), json={"value": "0123456789abcdefg"})
    error = _error(response, 413, "too_large", "value")
    assert "the limit is 16 bytes" in error["message"]
    assert _snapshot(api, vault) == before


def test_request_body_over_1_mib_is_413_and_changes_nothing(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """A declared body over 1 MiB answers 413 "too_large" on "body" before anything runs."""
    before = _snapshot(api, vault)
    body = b'{"value": "' + MARK.encode() + b"x" * (1 << 20) + b'"}'
    response = api.put(
        secret_path(seeded, DEV, "EXISTING"),
        content=body,
        headers={"Content-Type": "application/json"},
    )
    error = _error(response, 413, "too_large", "body")
    assert "1048576 bytes" in error["message"]
    assert _snapshot(api, vault) == before


def test_chunked_request_body_over_1_mib_is_413(api: TestClient, vault: Vault, seeded: str) -> None:
    """A body streamed without Content-Length is cut off at 1 MiB with 413 too."""
    before = _snapshot(api, vault)

    def chunks() -> Iterator[bytes]:
        yield b'{"value": "' + MARK.encode()
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}'

    response = api.put(
        secret_path(seeded, DEV, "EXISTING"),
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    _error(response, 413, "too_large", "body")
    assert _snapshot(api, vault) == before


def test_malformed_json_is_400_not_valid_json(api: TestClient, vault: Vault, seeded: str) -> None:
    """A body that is not JSON answers 400 "request body is not valid JSON" on "body"."""
    before = _snapshot(api, vault)
    for raw in (
        b'{"value": "' + MARK.encode(),
        b"value=" + MARK.encode(),
        b'{"value": "' + MARK.encode() + b'",}',
    ):
        response = api.put(
            secret_path(seeded, DEV, "EXISTING"),
            content=raw,
            headers={"Content-Type": "application/json"},
        )
        error = _error(response, 400, "invalid_input", "body")
        assert error["message"] == "request body is not valid JSON"
    assert _snapshot(api, vault) == before


def test_missing_value_field_is_400_naming_value(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """A body without "value" answers 400 naming the field."""
    before = _snapshot(api, vault)
    response = api.put(secret_path(seeded, DEV, "EXISTING"), json={"comment": MARK})
    error = _error(response, 400, "invalid_input", "value")
    assert "value" in error["message"] and "required" in error["message"].lower()
    assert _snapshot(api, vault) == before


def test_value_that_is_not_a_string_is_400_without_echo(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """A non-string value answers 400 naming "value" and does not repeat what was sent."""
    before = _snapshot(api, vault)
    for value in (5_123_987, [VALUE], {"nested": VALUE}, None, True):
        response = api.put(secret_path(seeded, DEV, "EXISTING"), json={"value": value})
        _error(response, 400, "invalid_input", "value")
        assert "5123987" not in response.text
    assert _snapshot(api, vault) == before


def test_value_with_nul_is_400(api: TestClient, vault: Vault, seeded: str) -> None:
    """A value holding a NUL character answers 400 naming "value"; nothing is stored."""
    before = _snapshot(api, vault)
    response = api.put(secret_path(seeded, DEV, "EXISTING"), json={"value": f"{MARK}\x00tail"})
    error = _error(response, 400, "invalid_input", "value")
    assert "NUL" in error["message"]
    assert _snapshot(api, vault) == before


def test_comment_over_1024_characters_is_400(api: TestClient, vault: Vault, seeded: str) -> None:
    """A comment longer than 1024 characters answers 400 naming "comment"."""
    before = _snapshot(api, vault)
    response = api.put(
        secret_path(seeded, DEV, "EXISTING"), json={"value": VALUE, "comment": "c" * 1025}
    )
    error = _error(response, 400, "invalid_input", "comment")
    assert "1024" in error["message"]
    assert _snapshot(api, vault) == before


def test_comment_with_nul_is_400_and_changes_nothing(
    lenient_api: TestClient, vault: Vault, seeded: str
) -> None:
    """A comment holding NUL answers 400 naming "comment" on every backend; nothing is stored."""
    before = _snapshot(lenient_api, vault)
    response = lenient_api.put(
        secret_path(seeded, DEV, "EXISTING"), json={"value": VALUE, "comment": "a\x00b"}
    )
    _error(response, 400, "invalid_input", "comment")
    assert _snapshot(lenient_api, vault) == before


def test_value_with_lone_surrogate_is_400_and_changes_nothing(
    lenient_api: TestClient, vault: Vault, seeded: str
) -> None:
    """A value that is not encodable as UTF-8 answers 400 naming "value"; nothing is stored."""
    before = _snapshot(lenient_api, vault)
    response = lenient_api.put(
        secret_path(seeded, DEV, "EXISTING"),
        content=b'{"value": "' + MARK.encode() + b'\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    _error(response, 400, "invalid_input", "value")
    assert _snapshot(lenient_api, vault) == before


def test_unknown_project_or_environment_is_404_and_changes_nothing(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """Writing, reading or listing in a missing project or environment answers 404 naming it."""
    before = _snapshot(api, vault)
    for project_name, environment, field in (
        ("nope", DEV, "project"),
        ("web", "nope", "environment"),
    ):
        for response in (
            api.put(secret_path(project_name, environment, "K"), json={"value": VALUE}),
            api.get(secret_path(project_name, environment, "EXISTING")),
            api.get(secret_path(project_name, environment, "EXISTING"), params={"version": 1}),
            api.get(f"{env_path(project_name, environment)}/secrets"),
            api.get(f"{env_path(project_name, environment)}/history/EXISTING"),
            api.delete(secret_path(project_name, environment, "EXISTING")),
        ):
            error = _error(response, 404, "not_found", field)
            assert "'nope'" in error["message"]
    assert _snapshot(api, vault) == before


def test_invalid_project_name_in_path_is_400_on_project(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """A project name that breaks the naming rule in the URL answers 400 naming "project"."""
    before = _snapshot(api, vault)
    response = api.put(secret_path("bad.name", DEV, "K"), json={"value": VALUE})
    _error(response, 400, "invalid_input", "project")
    assert _snapshot(api, vault) == before


def _bad_headers(token: str) -> list[tuple[str, dict[str, str]]]:
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    body_flipped = token[:20] + ("x" if token[20] != "x" else "y") + token[21:]
    return [
        ("missing", {}),
        ("empty-bearer", {"Authorization": "Bearer "}),
        ("garbage", {"Authorization": "Bearer not-a-token"}),
        ("unknown-well-formed", {"Authorization": f"Bearer {mint_token('boot')}"}),
        ("bad-checksum", {"Authorization": f"Bearer {flipped}"}),
        ("altered-body", {"Authorization": f"Bearer {body_flipped}"}),
        ("basic-scheme", {"Authorization": f"Basic {token}"}),
        ("token-scheme", {"Authorization": f"Token {token}"}),
        ("no-scheme", {"Authorization": token}),
    ]


def test_bad_credentials_are_401_with_no_hint_about_the_project(
    api: TestClient, vault: Vault, seeded: str
) -> None:
    """Every bad credential answers 401 with a Bearer challenge, the same body whether the
    project exists or not, and writes nothing."""
    before = _snapshot(api, vault)
    for name, headers in _bad_headers(vault.token):
        bodies = _unauthenticated_bodies(api, headers)
        for signature, content in bodies.items():
            if signature.startswith("web "):
                assert bodies["nope " + signature[4:]] == content, (name, signature)
        assert vault.token not in "".join(b.decode() for b in bodies.values())
    assert _snapshot(api, vault) == before


def _unauthenticated_bodies(api: TestClient, headers: dict[str, str]) -> dict[str, bytes]:
    anonymous = TestClient(api.app)
    bodies: dict[str, bytes] = {}
    for project in ("web", "nope"):
        for method, path, body in (
            ("GET", f"{env_path(project, DEV)}/secrets", None),
            ("GET", secret_path(project, DEV, "EXISTING"), None),
            ("PUT", secret_path(project, DEV, "EXISTING"), {"value": VALUE}),
            ("DELETE", secret_path(project, DEV, "EXISTING"), None),
            ("GET", f"/api/v1/projects/{project}", None),
        ):
            response = anonymous.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (headers, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            error = response.json()["error"]
            assert error["code"] == "unauthenticated"
            assert "existing-value" not in response.text and MARK not in response.text
            bodies[f"{project} {method} {path.split(project, 1)[1]}"] = response.content
    return bodies


def test_bearer_scheme_is_case_insensitive(api: TestClient, vault: Vault, seeded: str) -> None:
    """``bearer <token>`` in lower case is accepted like ``Bearer``."""
    client = TestClient(api.app, headers={"Authorization": f"bearer {vault.token}"})
    response = client.get(secret_path(seeded, DEV, "EXISTING"))
    assert response.status_code == 200
    assert response.json()["value"] == "existing-value"
