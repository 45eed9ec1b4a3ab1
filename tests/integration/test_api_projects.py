"""Projects and environments over the HTTP API, on every backend."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Vault
from tests.integration.api_helpers import (
    PROJECTS,
    env_path,
    listed_versions,
    put_secret,
    row_counts,
    secret_path,
)

DEFAULT_ENVIRONMENTS = ["development", "staging", "production"]

BAD_NAMES = [
    ("", "must not be empty"),
    ("bad.name", 'no "."'),
    ("a/b", 'no "/"'),
    ("-web", "must start with a letter or digit"),
    ("_web", "must start with a letter or digit"),
    ("p" * 65, "65 characters long; the limit is 64"),
    (" web", "whitespace"),
    ("web ", "whitespace"),
    ("we\tb", "U+0009"),
    ("we\x00b", "U+0000"),
    ("wéb", "must start with a letter or digit"),
    ("p" * 300, "at most 256 characters"),
]


def _project_names(api: TestClient) -> list[str]:
    response = api.get(PROJECTS)
    assert response.status_code == 200, response.text
    return [p["name"] for p in response.json()["projects"]]


def _environment_names(api: TestClient, project: str) -> list[str]:
    response = api.get(f"{PROJECTS}/{project}/environments")
    assert response.status_code == 200, response.text
    return [e["name"] for e in response.json()["environments"]]


def test_create_project_returns_201_with_the_default_environments(api: TestClient) -> None:
    """A new project answers 201 with its name, data-key version 1 and the three default envs."""
    response = api.post(PROJECTS, json={"name": "web"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "web"
    assert body["key_version"] == 1
    assert body["environments"] == DEFAULT_ENVIRONMENTS
    assert body["created_at"].endswith("Z")
    assert _environment_names(api, "web") == DEFAULT_ENVIRONMENTS
    longest = "p" * 64  # the longest name allowed
    assert api.post(PROJECTS, json={"name": longest}).status_code == 201
    assert _project_names(api) == [longest, "web"]


def test_duplicate_project_is_409_and_keeps_the_original(api: TestClient, project: str) -> None:
    """Creating a project whose name is taken answers 409 on "name" and leaves its secrets."""
    put_secret(api, project, "development", "KEEP", "kept-value")
    response = api.post(PROJECTS, json={"name": project})
    assert response.status_code == 409
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("conflict", "name")
    assert "already exists" in error["message"]
    assert _project_names(api) == ["web"]
    assert listed_versions(api, project, "development") == {"KEEP": 1}


def test_list_projects_is_sorted_by_name(api: TestClient) -> None:
    """The project list starts empty and then holds every project, sorted by name."""
    assert _project_names(api) == []
    for name in ("zeta", "alpha", "Mid-1"):
        assert api.post(PROJECTS, json={"name": name}).status_code == 201
    response = api.get(PROJECTS)
    assert response.status_code == 200
    projects = response.json()["projects"]
    assert [p["name"] for p in projects] == sorted(["zeta", "alpha", "Mid-1"])
    assert all("environments" not in p for p in projects)


def test_show_project_gives_name_and_environments(api: TestClient, project: str) -> None:
    """Showing a project returns its name and its environments in creation order."""
    assert api.post(f"{PROJECTS}/{project}/environments", json={"name": "qa"}).status_code == 201
    response = api.get(f"{PROJECTS}/{project}")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "web"
    assert body["environments"] == [*DEFAULT_ENVIRONMENTS, "qa"]


def test_unknown_project_or_environment_is_404_naming_it(api: TestClient, project: str) -> None:
    """Showing, deleting or adding to a missing project, or deleting a missing environment,
    answers 404 naming "project" or "environment"."""
    for response, field in (
        (api.get(f"{PROJECTS}/nope"), "project"),
        (api.delete(f"{PROJECTS}/nope"), "project"),
        (api.get(f"{PROJECTS}/nope/environments"), "project"),
        (api.post(f"{PROJECTS}/nope/environments", json={"name": "qa"}), "project"),
        (api.delete(env_path(project, "nope")), "environment"),
    ):
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("not_found", field)
        assert "'nope'" in error["message"]
    assert _project_names(api) == [project]
    assert _environment_names(api, project) == DEFAULT_ENVIRONMENTS


def test_delete_project_is_204_then_everything_of_it_is_404(api: TestClient, project: str) -> None:
    """Deleting a project answers 204 with no body; then it, its envs and its secrets are 404."""
    put_secret(api, project, "development", "db/password", "gone-soon")
    response = api.delete(f"{PROJECTS}/{project}")
    assert response.status_code == 204
    assert response.content == b""
    assert api.get(f"{PROJECTS}/{project}").status_code == 404
    assert api.get(f"{PROJECTS}/{project}/environments").status_code == 404
    assert api.get(secret_path(project, "development", "db/password")).status_code == 404
    assert _project_names(api) == []
    assert api.delete(f"{PROJECTS}/{project}").status_code == 404


def test_recreated_project_starts_empty(api: TestClient, project: str) -> None:
    """A project created again under a deleted project's name has none of the old secrets."""
    put_secret(api, project, "development", "OLD", "old-value")
    assert api.delete(f"{PROJECTS}/{project}").status_code == 204
    assert api.post(PROJECTS, json={"name": project}).status_code == 201
    assert listed_versions(api, project, "development") == {}
    assert api.get(secret_path(project, "development", "OLD")).status_code == 404


def test_delete_project_leaves_other_projects_alone(api: TestClient, project: str) -> None:
    """Deleting one project keeps another project's secrets readable."""
    assert api.post(PROJECTS, json={"name": "api"}).status_code == 201
    put_secret(api, "api", "development", "TOKEN", "api-token-value")
    put_secret(api, project, "development", "TOKEN", "web-token-value")
    assert api.delete(f"{PROJECTS}/{project}").status_code == 204
    response = api.get(secret_path("api", "development", "TOKEN"))
    assert response.status_code == 200
    assert response.json()["value"] == "api-token-value"


def test_bad_project_name_is_400_on_name_and_creates_nothing(api: TestClient, vault: Vault) -> None:
    """Each project name that breaks the rule answers 400 naming "name" and the rule; no row
    appears."""
    before = row_counts(vault.services.engine)
    for name, rule in BAD_NAMES:
        response = api.post(PROJECTS, json={"name": name})
        assert response.status_code == 400, (name, response.text)
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_input", "name"), name
        assert rule in error["message"], (name, error["message"])
    assert row_counts(vault.services.engine) == before
    assert _project_names(api) == []


def test_create_environment_is_201_and_listed_last(api: TestClient, project: str) -> None:
    """A new environment answers 201 with its name and is listed after the defaults."""
    response = api.post(f"{PROJECTS}/{project}/environments", json={"name": "qa-1"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "qa-1"
    assert body["created_at"].endswith("Z")
    assert _environment_names(api, project) == [*DEFAULT_ENVIRONMENTS, "qa-1"]
    put_secret(api, project, "qa-1", "K", "v")
    assert listed_versions(api, project, "qa-1") == {"K": 1}


def test_duplicate_environment_is_409_on_name(api: TestClient, project: str) -> None:
    """Creating an environment that exists answers 409 on "name" and adds nothing."""
    response = api.post(f"{PROJECTS}/{project}/environments", json={"name": "staging"})
    assert response.status_code == 409
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("conflict", "name")
    assert _environment_names(api, project) == DEFAULT_ENVIRONMENTS


def test_delete_environment_is_204_and_destroys_its_secrets(api: TestClient, project: str) -> None:
    """Deleting an environment answers 204; it disappears and a new one of that name is empty."""
    assert api.post(f"{PROJECTS}/{project}/environments", json={"name": "qa"}).status_code == 201
    put_secret(api, project, "qa", "K", "qa-value")
    put_secret(api, project, "development", "K", "dev-value")
    response = api.delete(f"{env_path(project, 'qa')}")
    assert response.status_code == 204
    assert response.content == b""
    assert _environment_names(api, project) == DEFAULT_ENVIRONMENTS
    missing = api.get(f"{env_path(project, 'qa')}/secrets")
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "environment"
    assert api.post(f"{PROJECTS}/{project}/environments", json={"name": "qa"}).status_code == 201
    assert listed_versions(api, project, "qa") == {}
    assert listed_versions(api, project, "development") == {"K": 1}


def test_bad_environment_name_is_400_on_name_and_creates_nothing(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Each environment name that breaks the rule answers 400 naming "name"; nothing is added."""
    before = row_counts(vault.services.engine)
    for name, rule in BAD_NAMES:
        response = api.post(f"{PROJECTS}/{project}/environments", json={"name": name})
        assert response.status_code == 400, (name, response.text)
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_input", "name"), name
        assert rule in error["message"], (name, error["message"])
    assert row_counts(vault.services.engine) == before
    assert _environment_names(api, project) == DEFAULT_ENVIRONMENTS
