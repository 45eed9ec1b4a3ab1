"""Access reviews and offboarding typed into the CLI against a real server, on each backend:
a review kept and signed off (its evidence hashes to the digest it printed), then the member
offboarded with ``coffer members offboard``, after which their own CLI is shut out."""

from __future__ import annotations

import hashlib
import re
import uuid

from tests.e2e.harness import Cli, ServerProcess, base_env, failed, ok, ok_json, unique_name

INVALID_INPUT, DENIED = 2, 4


def test_review_then_offboard_a_member_from_the_cli(cli: Cli, server: ServerProcess) -> None:
    """The bootstrap owner sets up a project and a viewer shut out of production, who reads
    staging; a review lists her, is kept and signed off, and its evidence hashes to the
    printed digest; offboarding asks for --yes off a terminal, then revokes her token, lists
    the secrets now due for rotation (not production's) and the one she read."""
    project, email = unique_name("app"), f"dev-{uuid.uuid4().hex[:6]}@acme.test"
    password = "viewer passphrase 01"
    ok(cli("projects", "create", project))
    invited, *_ = cli.many(
        ("members", "invite", email, "--role", "viewer", "--json"),
        ("secrets", "set", "-p", project, "-e", "staging", "API_KEY", "staging-key"),
        ("secrets", "set", "-p", project, "-e", "production", "DB_PASSWORD", "prod-pw"),
    )
    home = cli.cwd / f"member-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    member = Cli(base_env(home), home)
    accept = ("accept-invite", ok_json(invited)["token"], "--addr", server.addr)
    ok(member(*accept, "--password-stdin", input=password + "\n"))
    login = ("login", "--addr", server.addr, "--email", email, "--password-stdin")
    ok(member(*login, input=password + "\n"))
    ok(cli("grants", "add", "--member", email, "--scope", f"{project}:production:none"))
    assert ok(member("secrets", "get", "API_KEY", "-p", project, "-e", "staging")).strip() == (
        "staging-key"
    )

    review = ok_json(cli("reviews", "start", "Q1 2026", "--due", "2099-12-31", "--json"))
    line = next(i for i in review["items"] if i["identity_name"] == email)
    assert line["grants"][0]["environment"] == "production" and line["last_used_at"]
    refused = failed(cli("reviews", "sign-off", review["id"]), 5)
    assert "undecided" in refused
    for item in review["items"]:
        ok(cli("reviews", "decide", review["id"], item["identity_name"], "keep", "--note", "ok"))
    signed = ok(cli("reviews", "sign-off", review["id"]))
    found = re.search(r"digest \(SHA-256\) ([0-9a-f]{64})", signed)
    assert found is not None, signed
    shown, evidence = cli.many(
        ("reviews", "show", review["id"]), ("reviews", "evidence", review["id"])
    )
    assert "signed off" in ok(shown) and email in shown.stdout and "keep by" in shown.stdout
    assert hashlib.sha256(ok(evidence).encode()).hexdigest() == found.group(1)

    asked = failed(cli("members", "offboard", email), INVALID_INPUT)
    assert "pass --yes" in asked
    out = ok(cli("members", "offboard", email, "--yes"))
    assert out.startswith(f"Offboarded {email} (viewer): revoked 0 session(s), 1 CLI token(s)")
    assert f"{project}/staging/API_KEY" in out
    due = out.split("Due for rotation now")[1].split("they read")[0]
    assert f"{project}/production/DB_PASSWORD" not in due
    assert "1 secret(s) they read, from the audit log" in out
    shut_out = member("secrets", "get", "API_KEY", "-p", project, "-e", "staging")
    assert shut_out.returncode == DENIED
    listed = ok_json(cli("reviews", "list", "--json"))["reviews"]
    assert any(r["id"] == review["id"] and r["status"] == "signed_off" for r in listed)
