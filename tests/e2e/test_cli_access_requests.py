"""Access requests, read reasons and second approvals typed into the CLI against a real
server, on each backend: a viewer shut out of a project asks for access (``coffer access
request``), the owner approves it, the viewer reads production only with ``--reason`` (or
COFFER_REASON); exporting production needs an approval from someone else
(``coffer approvals``), used once; approving one's own approval is refused."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from coffer.domain.inventory import EnvironmentPolicy
from coffer.storage import policy_store
from coffer.storage.tables import organizations
from tests.e2e.harness import Cli, ServerProcess, base_env, failed, ok, ok_json

VALUE = "pg-password-e2e"
WHY = "incident 4711: checking the replica"
DENIED = 4


def _setup(server: ServerProcess, project: str) -> str:
    """Through the API with the bootstrap token: ``project`` with ``db/password`` in
    production and staging, a viewer (shut out of the project by a ``none`` grant) whose
    CLI token is returned."""
    email, password = f"vic-{uuid.uuid4().hex[:8]}@acme.test", "viewer passphrase 01"
    owner = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.addr, timeout=30, headers=owner) as http:
        assert http.post("/api/v1/projects", json={"name": project}).status_code == 201
        for env in ("production", "staging"):
            url = f"/api/v1/projects/{project}/environments/{env}/secrets/db/password"
            assert http.put(url, json={"value": VALUE}).status_code == 200
        invited = http.post("/api/v1/members/invite", json={"email": email, "role": "viewer"})
        assert invited.status_code == 201, invited.text
        accept = {"token": invited.json()["token"], "password": password}
        assert http.post("/api/v1/invitations/accept", json=accept).status_code == 201
        grant = {"member": email, "scope": f"{project}:none"}
        assert http.post("/api/v1/grants", json=grant).status_code == 201
        login = http.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
    token: str = login.json()["token"]
    return token


def _policies(server: ServerProcess) -> None:
    """Production reads must state a reason and its exports need two people; staging
    reads must state a reason (written as an admin's policy change would be)."""
    engine = sa.create_engine(server.database_url)
    try:
        with engine.begin() as conn:
            org_id = conn.execute(sa.select(organizations.c.id)).scalar_one()
            for policy in (
                EnvironmentPolicy("production", require_read_reason=True, export_approvals=2),
                EnvironmentPolicy("staging", require_read_reason=True),
            ):
                policy_store.save_policy(conn, org_id, policy, by="e2e", now=time.time())
    finally:
        engine.dispose()


def test_request_approve_read_with_reason_and_export_with_approval(
    server: ServerProcess, cli: Cli, tmp_path: Path
) -> None:
    """The whole story as people type it, with the refusals they would meet."""
    project = f"web-{uuid.uuid4().hex[:8]}"
    vic_home = tmp_path / "vic"
    vic_home.mkdir()
    vic = Cli(
        base_env(vic_home, {"COFFER_ADDR": server.addr, "COFFER_TOKEN": _setup(server, project)}),
        vic_home,
    )
    _policies(server)
    get = ("secrets", "get", "db/password", "-p", project, "-e", "production")

    asked = ok_json(
        vic("access", "request", project, "production", "--reason", WHY, "--for", "5m", "--json")
    )
    assert (asked["status"], asked["access"], asked["duration_seconds"]) == ("pending", "read", 300)
    shut_out = failed(vic(*get, "--reason", WHY), DENIED)
    assert f"read access to {project}/production is not granted" in shut_out
    listed = ok(vic("access", "list", "--status", "pending"))
    assert asked["id"] in listed and project in listed
    approved = ok(cli("access", "approve", asked["id"], "--note", "ok for today"))
    assert f"read access to {project}/production until" in approved

    refused = failed(vic(*get), DENIED)
    assert "must state a reason: pass --reason" in refused
    assert ok(vic(*get, "--reason", WHY)) == VALUE + "\n"
    assert ok(vic.with_env(COFFER_REASON=WHY)(*get)) == VALUE + "\n"
    bad = failed(vic(*get, "--reason", "two\nlines"), 2)
    assert "reason must not contain control characters" in bad

    export = ("export", "-p", project, "-e", "production", "--format", "json")
    needs = failed(cli(*export, "--reason", WHY), DENIED)
    assert f"coffer approvals request env.export {project}/production --reason" in needs
    own = ok_json(
        cli(
            "approvals", "request", "env.export", f"{project}/production", "--reason", WHY, "--json"
        )
    )
    self_approved = failed(cli("approvals", "approve", own["id"]), DENIED)
    assert "you asked for this approval yourself" in self_approved
    mine = ok_json(
        vic(
            "approvals", "request", "env.export", f"{project}/production", "--reason", WHY, "--json"
        )
    )
    assert "Approved env.export of" in ok(cli("approvals", "approve", mine["id"]))
    exported = ok(vic(*export, "--reason", WHY, "--approval", mine["id"]))
    assert json.loads(exported) == {"db/password": VALUE}
    again = failed(vic(*export, "--reason", WHY, "--approval", mine["id"]), DENIED)
    assert "is used, not approved" in again

    run = ("run", "-p", project, "-e", "staging", "--", "python", "-c")
    show = "import os; print(os.environ['DB_PASSWORD'])"
    assert "--reason" in failed(cli(*run, show), DENIED)
    assert ok(cli.with_env(COFFER_REASON=WHY)(*run, show)) == VALUE + "\n"
