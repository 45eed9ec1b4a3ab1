"""A first end-to-end pass over the API on each backend."""

from fastapi.testclient import TestClient


def test_set_and_get_round_trip(api: TestClient, project: str) -> None:
    """A value written over the API reads back unchanged as version 1."""
    path = f"/api/v1/projects/{project}/environments/development/secrets/db/password"
    assert api.put(path, json={"value": "s3cr3t"}).status_code == 200
    body = api.get(path).json()
    assert (body["value"], body["version"]) == ("s3cr3t", 1)
