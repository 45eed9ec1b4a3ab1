"""Rotating a project's data key over the HTTP API (``/projects/{p}/key-rotation``): the exact
answers of status, start and steps, every version readable afterwards, the old keys gone,
``key.rotated`` recorded, writes during a rotation, resuming, refused input and callers, and
deleting a project in the middle of a rotation.

One vault per backend serves the module; each test rotates a project of its own."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.api.app import create_app
from coffer.bootstrap import build_services, initialise_vault
from coffer.domain.models import CallContext
from coffer.storage.tables import data_keys, environments, projects, secret_versions, secrets
from tests.conftest import Vault
from tests.integration.api_helpers import (
    PROJECTS,
    audit_entries,
    get_value,
    last_audit_seq,
    put_secret,
    row_counts,
    secret_path,
)
from tests.integration.team_helpers import bearer, cheap_settings, member_token

CURSOR = re.compile(r"^[0-9A-Z]{26}:[0-9]+$")
# (environment, key, values written in order): 7 versions in all.
WRITES = (
    ("development", "db/password", ("dev-1", "dev-2", "dev-3")),
    ("production", "db/password", ("prod-1", "prod-2")),
    ("production", "api/token", ("tok-1",)),
    ("staging", "smtp/pass", ("smtp-1",)),
)
TOTAL = sum(len(values) for _, _, values in WRITES)
NAMES = itertools.count()


@dataclass
class Served:
    """The module's vault and an HTTP client authenticated as its bootstrap owner."""

    vault: Vault
    client: TestClient


@pytest.fixture(scope="module")
def served(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One initialised vault per backend for the module, served over HTTP. The app's lifespan
    is not run: no background job (anomaly detection counting the module's many reads, the
    audit sealer) writes while the tests compare what requests wrote."""
    settings = cheap_settings(module_database_url, tmp_path_factory.mktemp("rotation"))
    token = initialise_vault(settings).token
    services = build_services(settings)
    ctx = CallContext(actor=services.auth.authenticate(token), source_ip="127.0.0.1")
    app = create_app(services, max_body_bytes=settings.max_body_bytes)
    try:
        client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
        yield Served(Vault(settings, services, token, ctx), client)
    finally:
        services.close()


@pytest.fixture
def vault(served: Served) -> Vault:
    """The module's vault."""
    return served.vault


@pytest.fixture
def api(served: Served) -> TestClient:
    """The module's client (the bootstrap owner)."""
    return served.client


@pytest.fixture
def project(api: TestClient) -> str:
    """A new project of this test's own."""
    name = f"web{next(NAMES)}"
    response = api.post(PROJECTS, json={"name": name})
    assert response.status_code == 201, response.text
    return name


def rotation(project: str) -> str:
    """The URL of a project's key rotation."""
    return f"{PROJECTS}/{project}/key-rotation"


def fill(api: TestClient, project: str) -> None:
    """Writes ``WRITES`` into ``project``."""
    for environment, key, values in WRITES:
        for value in values:
            put_secret(api, project, environment, key, value)


def assert_every_version_reads_back(api: TestClient, project: str, *, latest: bool = True) -> None:
    """Every version of every secret in ``WRITES`` reads back with its value (and, with
    ``latest``, the current value is the last one written)."""
    for environment, key, values in WRITES:
        for number, value in enumerate(values, start=1):
            assert get_value(api, project, environment, key, version=number) == value
        if latest:
            assert get_value(api, project, environment, key) == values[-1]


def status(api: TestClient, project: str) -> dict[str, Any]:
    """GET the rotation status, asserting 200."""
    response = api.get(rotation(project))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def start(api: TestClient, project: str) -> dict[str, Any]:
    """POST to start (or resume) a rotation, asserting 200."""
    response = api.post(rotation(project))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def step(
    api: TestClient, project: str, *, batch: int = 2000, cursor: str | None = None
) -> dict[str, Any]:
    """POST one step, asserting 200."""
    response = api.post(f"{rotation(project)}/steps", json={"batch": batch, "cursor": cursor})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def step_json(
    project: str, reencrypted: int, cursor: str | None, *, done: bool, key_version: int = 2
) -> dict[str, Any]:
    """The answer a step must give."""
    return {
        "project": project,
        "key_version": key_version,
        "reencrypted": reencrypted,
        "cursor": cursor,
        "done": done,
    }


def run_to_end(api: TestClient, project: str, batch: int = 2000) -> int:
    """Steps until done as the CLI does; returns how many versions were re-encrypted."""
    cursor: str | None = None
    total = 0
    for _ in range(1000):
        answer = step(api, project, batch=batch, cursor=cursor)
        total += int(answer["reencrypted"])
        if answer["done"]:
            return total
        cursor = answer["cursor"]
    raise AssertionError("the rotation never finished")


def project_id(vault: Vault, name: str) -> str:
    """The stored id of project ``name``."""
    with vault.services.engine.connect() as conn:
        found: str = conn.execute(
            sa.select(projects.c.id).where(projects.c.name == name)
        ).scalar_one()
    return found


def stored_key_versions(vault: Vault, project: str) -> list[int]:
    """The data-key versions stored for the project id ``project``."""
    with vault.services.engine.connect() as conn:
        rows = conn.execute(
            sa.select(data_keys.c.version)
            .where(data_keys.c.project_id == project)
            .order_by(data_keys.c.version)
        )
        return [int(row[0]) for row in rows]


def version_keys(vault: Vault, project: str) -> dict[tuple[str, int], tuple[int, bytes]]:
    """(secret id, version) -> (data-key version, ciphertext) of every stored version of the
    project id ``project``."""
    with vault.services.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                secret_versions.c.secret_id,
                secret_versions.c.version,
                secret_versions.c.key_version,
                secret_versions.c.ciphertext,
            )
            .join(secrets, secrets.c.id == secret_versions.c.secret_id)
            .join(environments, environments.c.id == secrets.c.environment_id)
            .where(environments.c.project_id == project)
        )
        return {(r[0], r[1]): (r[2], bytes(r[3])) for r in rows}


def status_json(
    project: str, key_version: int, retiring: list[int], total: int, remaining: int
) -> dict[str, Any]:
    """The status answer the API must give."""
    return {
        "project": project,
        "key_version": key_version,
        "retiring_key_versions": retiring,
        "running": bool(retiring),
        "total_versions": total,
        "remaining_versions": remaining,
    }


def test_rotation_answers_exactly_and_every_version_reads_back(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Status, start and each step answer exactly; after the last step every version of
    every secret reads back, all are under the new key, and only the new key is stored."""
    fill(api, project)
    pid = project_id(vault, project)
    before = version_keys(vault, pid)
    assert status(api, project) == status_json(project, 1, [], TOTAL, 0)
    assert start(api, project) == status_json(project, 2, [1], TOTAL, TOTAL)
    assert status(api, project) == status_json(project, 2, [1], TOTAL, TOTAL)
    assert stored_key_versions(vault, pid) == [1, 2]
    first = step(api, project, batch=3)
    assert CURSOR.match(first["cursor"]), first
    assert first == step_json(project, 3, first["cursor"], done=False)
    assert status(api, project) == status_json(project, 2, [1], TOTAL, TOTAL - 3)
    second = step(api, project, batch=3, cursor=first["cursor"])
    assert second == step_json(project, 3, second["cursor"], done=False)
    assert CURSOR.match(second["cursor"]) and second["cursor"] > first["cursor"]
    last = step(api, project, batch=3, cursor=second["cursor"])
    assert last == step_json(project, 1, None, done=True)
    assert status(api, project) == status_json(project, 2, [], TOTAL, 0)
    assert stored_key_versions(vault, pid) == [2]
    after = version_keys(vault, pid)
    assert set(after) == set(before)
    for version, (key_version, ciphertext) in after.items():
        assert key_version == 2
        assert ciphertext != before[version][1], "a version was not re-encrypted"
    assert_every_version_reads_back(api, project)


def test_a_batch_that_ends_exactly_at_the_last_version_needs_one_empty_step(
    api: TestClient, project: str
) -> None:
    """When the last page is full, the step hands out a cursor; the next step re-encrypts
    nothing and finishes."""
    fill(api, project)
    start(api, project)
    full = step(api, project, batch=TOTAL)
    assert full == step_json(project, TOTAL, full["cursor"], done=False)
    assert CURSOR.match(full["cursor"])
    assert step(api, project, batch=TOTAL, cursor=full["cursor"]) == step_json(
        project, 0, None, done=True
    )


def test_key_rotated_is_recorded_once_with_its_metadata(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Finishing records one ``key.rotated`` entry naming the project, the new key version,
    the destroyed versions and how many versions the project has; a second rotation records
    its own. Starting and stepping record nothing else."""
    fill(api, project)
    seq = last_audit_seq(vault.services.engine)
    start(api, project)
    run_to_end(api, project, batch=4)
    entries = audit_entries(vault.services.engine, seq)
    assert [e["action"] for e in entries] == ["key.rotated"]
    entry = entries[0]
    assert (entry["project"], entry["result"], entry["actor_id"]) == (
        project,
        "success",
        vault.ctx.actor.id,
    )
    assert entry["metadata"] == {"key_version": 2, "destroyed_key_versions": "1", "versions": 7}
    seq = last_audit_seq(vault.services.engine)
    start(api, project)
    assert run_to_end(api, project) == TOTAL
    [again] = audit_entries(vault.services.engine, seq)
    assert again["metadata"] == {"key_version": 3, "destroyed_key_versions": "2", "versions": 7}
    listed = api.get("/api/v1/audit", params={"action": "key.rotated", "project": project})
    assert listed.status_code == 200, listed.text
    assert [e["metadata"]["key_version"] for e in listed.json()["entries"]] == [3, 2]


def test_an_empty_project_rotates_in_one_step(api: TestClient, vault: Vault, project: str) -> None:
    """A project with no secrets moves to a new key at once: one step re-encrypts nothing,
    finishes and destroys the old key."""
    assert start(api, project) == status_json(project, 2, [1], 0, 0)
    assert step(api, project) == step_json(project, 0, None, done=True)
    assert stored_key_versions(vault, project_id(vault, project)) == [2]
    assert status(api, project) == status_json(project, 2, [], 0, 0)


def test_secrets_written_during_a_rotation_read_back(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Writes between start and the steps (a new secret, a new version of one already
    re-encrypted, one not reached yet) use the new key at once; after the rotation every
    value and version reads back and no version is under the old key."""
    fill(api, project)
    start(api, project)
    put_secret(api, project, "development", "new/during", "written-after-start")
    cursor = step(api, project, batch=2)["cursor"]
    put_secret(api, project, "development", "db/password", "dev-4")
    put_secret(api, project, "staging", "smtp/pass", "smtp-2")
    put_secret(api, project, "production", "late/one", "written-mid-rotation")
    while cursor is not None:
        answer = step(api, project, batch=2, cursor=cursor)
        cursor = None if answer["done"] else answer["cursor"]
    pid = project_id(vault, project)
    assert {key_version for key_version, _ in version_keys(vault, pid).values()} == {2}
    assert stored_key_versions(vault, pid) == [2]
    assert get_value(api, project, "development", "new/during") == "written-after-start"
    assert get_value(api, project, "production", "late/one") == "written-mid-rotation"
    assert get_value(api, project, "development", "db/password") == "dev-4"
    assert get_value(api, project, "staging", "smtp/pass", version=2) == "smtp-2"
    assert_every_version_reads_back(api, project, latest=False)
    assert status(api, project) == status_json(project, 2, [], TOTAL + 4, 0)


def test_starting_again_resumes_the_rotation_under_way(
    api: TestClient, vault: Vault, project: str
) -> None:
    """After an interrupted rotation (one step done, then the server restarted), start
    returns the same rotation (same key version, fewer remaining) instead of a new one, and
    a new pass from no cursor finishes it without re-encrypting what already moved."""
    fill(api, project)
    start(api, project)
    assert step(api, project, batch=3)["reencrypted"] == 3
    pid = project_id(vault, project)
    restarted = build_services(vault.settings)
    try:
        app = create_app(restarted, max_body_bytes=vault.settings.max_body_bytes)
        with TestClient(app, headers={"Authorization": f"Bearer {vault.token}"}) as client:
            assert start(client, project) == status_json(project, 2, [1], TOTAL, TOTAL - 3)
            assert start(client, project) == status_json(project, 2, [1], TOTAL, TOTAL - 3)
            assert stored_key_versions(vault, pid) == [1, 2]
            assert run_to_end(client, project, batch=2) == TOTAL - 3
            assert_every_version_reads_back(client, project)
    finally:
        restarted.close()
    assert stored_key_versions(vault, pid) == [2]
    assert_every_version_reads_back(api, project)


def test_a_pass_that_left_versions_behind_ends_not_done(
    api: TestClient, vault: Vault, project: str
) -> None:
    """A pass that skipped versions (a cursor past them) ends with cursor null and done
    false, destroying nothing; a new pass from no cursor moves them and finishes."""
    fill(api, project)
    start(api, project)
    past_everything = "Z" * 26 + ":0"
    skipped = step(api, project, batch=TOTAL, cursor=past_everything)
    assert skipped == step_json(project, 0, None, done=False)
    assert stored_key_versions(vault, project_id(vault, project)) == [1, 2]
    assert status(api, project) == status_json(project, 2, [1], TOTAL, TOTAL)
    finished = step(api, project, batch=TOTAL + 1)
    assert finished == step_json(project, TOTAL, None, done=True)
    assert_every_version_reads_back(api, project)


BAD_CURSOR = "cursor must be a cursor returned by the previous step"
BAD_BATCH = "batch must be an integer from 1 to 20000"
# (body, the field named, the message)
BAD_STEPS: list[tuple[dict[str, Any], str, str]] = [
    ({"batch": 0}, "batch", BAD_BATCH),
    ({"batch": 20001}, "batch", BAD_BATCH),
    ({"batch": -5}, "batch", BAD_BATCH),
    ({"batch": "x"}, "batch", BAD_BATCH),
    ({"batch": "10"}, "batch", BAD_BATCH),
    ({"batch": True}, "batch", BAD_BATCH),
    ({"batch": 2.5}, "batch", BAD_BATCH),
    ({"batch": None}, "batch", BAD_BATCH),
    ({"batch": [5]}, "batch", BAD_BATCH),
    ({"cursor": "garbage"}, "cursor", BAD_CURSOR),
    ({"cursor": "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, "cursor", BAD_CURSOR),
    ({"cursor": "01ARZ3NDEKTSV4RRFFQ69G5FAV:-1"}, "cursor", BAD_CURSOR),
    ({"cursor": "01ARZ3NDEKTSV4RRFFQ69G5FA:1"}, "cursor", BAD_CURSOR),
    ({"cursor": "../../etc/passwd/xxxxxxxxxx:1"}, "cursor", BAD_CURSOR),
    ({"cursor": 12}, "cursor", "cursor: Input should be a valid string"),
    ({"cursor": ["a"]}, "cursor", "cursor: Input should be a valid string"),
    ({"unknown": 1}, "unknown", "unknown: Extra inputs are not permitted"),
    (
        {"batch": 5, "cursor": None, "dry_run": True},
        "dry_run",
        "dry_run: Extra inputs are not permitted",
    ),
]


def test_bad_step_input_is_refused_naming_the_field_and_changes_nothing(
    api: TestClient, vault: Vault, project: str
) -> None:
    """A step with a bad batch, a cursor no step handed out, an unknown field or a body that
    is not JSON is refused with 400 naming the field and the rule; nothing is re-encrypted
    or recorded, and the rotation is where it was."""
    fill(api, project)
    start(api, project)
    counts = row_counts(vault.services.engine)
    stored = version_keys(vault, project_id(vault, project))
    seq = last_audit_seq(vault.services.engine)
    cases: list[tuple[dict[str, Any], str, str, str]] = [
        ({"json": body}, repr(body), field, message) for body, field, message in BAD_STEPS
    ]
    cases.append(
        (
            {"content": b"{batch: 1", "headers": {"Content-Type": "application/json"}},
            "not JSON",
            "body",
            "request body is not valid JSON",
        )
    )
    problems = []
    for request, label, field, message in cases:
        response = api.post(f"{rotation(project)}/steps", **request)
        error = response.json().get("error", {})
        answer = (response.status_code, error.get("field"), error.get("message"))
        if answer != (400, field, message):
            problems.append(f"{label}: {answer}")
    assert problems == []
    assert row_counts(vault.services.engine) == counts
    assert version_keys(vault, project_id(vault, project)) == stored
    assert last_audit_seq(vault.services.engine) == seq
    assert status(api, project) == status_json(project, 2, [1], TOTAL, TOTAL)


def test_a_viewer_may_not_rotate_and_each_refusal_is_recorded(
    api: TestClient, vault: Vault, project: str
) -> None:
    """A viewer gets 403 on status, start and step, each recorded as ``access.denied``; the
    rotation does not start."""
    fill(api, project)
    viewer = member_token(api, vault.token, f"viewer-{project}@acme.test", "viewer")
    seq = last_audit_seq(vault.services.engine)
    for method, url, body in (
        ("GET", rotation(project), None),
        ("POST", rotation(project), None),
        ("POST", f"{rotation(project)}/steps", {"batch": 5}),
    ):
        response = api.request(method, url, json=body, headers=bearer(viewer))
        assert response.status_code == 403, response.text
        assert response.json()["error"]["message"] == "key.rotate needs the admin role"
    denials = [e["action"] for e in audit_entries(vault.services.engine, seq)]
    assert denials == ["access.denied"] * 3
    assert status(api, project) == status_json(project, 1, [], TOTAL, 0)


def test_an_unknown_project_is_not_found(api: TestClient, vault: Vault) -> None:
    """Status, start and step on a project that does not exist answer 404 naming it, and
    change nothing."""
    counts = row_counts(vault.services.engine)
    for method, url, body in (
        ("GET", rotation("nosuch"), None),
        ("POST", rotation("nosuch"), None),
        ("POST", f"{rotation('nosuch')}/steps", {"batch": 5}),
    ):
        response = api.request(method, url, json=body)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["message"] == "project 'nosuch' not found"
    assert row_counts(vault.services.engine) == counts


def test_deleting_a_project_mid_rotation_destroys_every_key_version(
    api: TestClient, vault: Vault, project: str
) -> None:
    """A project deleted halfway through a rotation loses both its old and new data keys
    and every secret version; its rotation then answers 404."""
    fill(api, project)
    pid = project_id(vault, project)
    start(api, project)
    cursor = step(api, project, batch=3)["cursor"]
    assert stored_key_versions(vault, pid) == [1, 2]
    assert api.delete(f"{PROJECTS}/{project}").status_code in (200, 204)
    assert stored_key_versions(vault, pid) == []
    assert version_keys(vault, pid) == {}
    response = api.post(f"{rotation(project)}/steps", json={"batch": 3, "cursor": cursor})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"project {project!r} not found"


def test_limited_secrets_keep_their_read_counts_through_a_rotation(
    api: TestClient, project: str
) -> None:
    """A secret limited to 3 reads, read once before the rotation, still has 2 reads left
    afterwards (the rotation reads nothing), and the next read counts as the second."""
    path = secret_path(project, "development", "once/token")
    written = api.put(path, json={"value": "limited-value", "max_reads": 3})
    assert written.status_code == 200, written.text
    assert api.get(path).json()["limits"]["read_count"] == 1
    fill(api, project)
    start(api, project)
    run_to_end(api, project, batch=2)
    head = api.head(path)
    assert (head.headers["x-coffer-read-count"], head.headers["x-coffer-reads-remaining"]) == (
        "1",
        "2",
    )
    again = api.get(path).json()
    assert again["value"] == "limited-value"
    assert (again["limits"]["read_count"], again["limits"]["reads_remaining"]) == (2, 1)


@pytest.fixture
def crash_visible(served: Served) -> TestClient:
    """A client on the module's vault that answers a server crash 500, as a real client
    sees it (instead of raising it in the test)."""
    app = create_app(served.vault.services, max_body_bytes=served.vault.settings.max_body_bytes)
    headers = {"Authorization": f"Bearer {served.vault.token}"}
    return TestClient(app, headers=headers, raise_server_exceptions=False)


def test_a_cursor_version_in_other_digits_is_refused_naming_the_cursor(
    crash_visible: TestClient, project: str
) -> None:
    """A cursor whose version is written with a superscript digit is bad input: 400 naming
    ``cursor``, not a server error."""
    fill(crash_visible, project)
    start(crash_visible, project)
    response = crash_visible.post(
        f"{rotation(project)}/steps", json={"cursor": "01ARZ3NDEKTSV4RRFFQ69G5FAV:²"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "cursor"
    assert response.json()["error"]["message"] == BAD_CURSOR


def test_a_cursor_version_too_large_for_the_database_is_not_a_crash(
    crash_visible: TestClient, vault: Vault, project: str
) -> None:
    """A cursor with a 30-digit version (no step hands one out) is refused as bad input
    naming ``cursor`` on every backend, never a server error."""
    fill(crash_visible, project)
    start(crash_visible, project)
    response = crash_visible.post(
        f"{rotation(project)}/steps", json={"cursor": "01ARZ3NDEKTSV4RRFFQ69G5FAV:" + "9" * 30}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "code": "invalid_input",
        "message": BAD_CURSOR,
        "field": "cursor",
    }
