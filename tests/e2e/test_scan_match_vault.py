"""`coffer scan --match-vault` and `coffer rotation report` typed into the CLI against a real
server on each backend. The CLI talks to the server through a recording proxy on 127.0.0.1, so
the tests see every request body it sent and check that no scanned secret is in any of them.

A secret stored in the vault and an unrelated fake key are written into a folder; the scan
names the stored one's project/environment/key, the audit log shows ``secret.exposed``, the
rotation report says ``rotate now`` until a new value is written. An identity that may not
read the secret gets no match for it; a bad nonce is refused naming the field.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from coffer.cli import vault_match
from coffer.cli.vault_match import match_vault
from coffer.crypto.scan_fingerprints import encode_nonce
from coffer.scanner.findings import Finding
from coffer.scanner.rules import builtin_rules
from coffer.scanner.samples import generate
from tests.e2e.harness import Cli, ServerProcess, failed, ok, ok_json, unique_name

FOUND = 1
PROD, DEV = "production", "development"


@dataclass
class Recorded:
    """One request the proxy passed on."""

    method: str
    path: str
    body: bytes


@dataclass
class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 that forwards every request to ``upstream`` and keeps
    each request's method, path and body."""

    upstream: str
    requests: list[Recorded] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def addr(self) -> str:
        """The proxy's base URL."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def sent_text(self) -> str:
        """Every recorded path and body, as text."""
        return "\n".join(
            f"{r.method} {r.path}\n{r.body.decode('utf-8', 'replace')}" for r in self.requests
        )

    def start(self) -> None:
        """Serves in a daemon thread until ``stop``."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.requests.append(Recorded(self.command, self.path, body))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                answer = httpx.request(
                    self.command,
                    proxy.upstream + self.path,
                    content=body,
                    headers=headers,
                    timeout=30.0,
                )
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._forward()

            def do_POST(self) -> None:
                self._forward()

            def do_PUT(self) -> None:
                self._forward()

            def log_message(self, *_args: Any) -> None:
                """Silent: the tests read ``requests`` instead."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stops serving."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[RecordingProxy]:
    """A recording proxy in front of the module's server."""
    recording = RecordingProxy(server.addr)
    recording.start()
    try:
        yield recording
    finally:
        recording.stop()


def fake_secret(rule_id: str) -> str:
    """A new realistic fake secret of the built-in rule ``rule_id``."""
    return generate(builtin_rules().by_id(rule_id), random.Random())


@dataclass
class Leak:
    """A project with a stored Stripe-shaped key, and a folder that leaks it next to an
    unrelated GitHub token that the vault does not hold."""

    project: str
    stored: str
    unrelated: str
    folder: Path


@pytest.fixture
def leak(cli: Cli, tmp_path: Path) -> Leak:
    """A new project with STRIPE_KEY in production, and a folder leaking its value."""
    project = unique_name("leak")
    stored, unrelated = fake_secret("stripe-secret-key"), fake_secret("github-pat")
    ok(cli("projects", "create", project))
    ok(cli("secrets", "set", "STRIPE_KEY", stored, "-p", project, "-e", PROD))
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "settings.py").write_text(f'STRIPE_KEY = "{stored}"\n')
    (folder / "deploy.sh").write_text(f"export GITHUB_TOKEN={unrelated}\n")
    return Leak(project, stored, unrelated, folder)


def rotation_entry(cli: Cli, project: str, key: str) -> dict[str, Any]:
    """The rotation report's entry for ``key`` of ``project``'s production."""
    report = ok_json(cli("rotation", "report", "--project", project, "--json"))
    entries: list[dict[str, Any]] = report["secrets"]
    [entry] = [s for s in entries if (s["environment"], s["key"]) == (PROD, key)]
    return entry


def test_scan_names_the_leaked_secret_and_it_must_be_rotated(
    cli: Cli, leak: Leak, proxy: RecordingProxy
) -> None:
    """The scan names project/production/STRIPE_KEY (exit 1) and not the unrelated token;
    no request the CLI sent holds either secret; the audit log has secret.exposed; the
    rotation report says rotate now until a new value is written, then ok."""
    through_proxy = cli.with_env(COFFER_ADDR=proxy.addr)
    result = through_proxy("scan", "--match-vault", "--no-progress", str(leak.folder))
    assert result.returncode == FOUND, result.stderr
    assert f"vault: {leak.project}/{PROD}/STRIPE_KEY (version 1, current)" in result.stdout
    assert result.stdout.count("vault: ") == 1
    assert "deploy.sh" in result.stdout
    assert leak.stored not in result.stdout + result.stderr
    matched = [r for r in proxy.requests if r.path == "/api/v1/exposures/match"]
    assert len(matched) == 1
    sent = json.loads(matched[0].body)
    assert len(sent["findings"]) == 2 and {"nonce", "findings"} == set(sent)
    for secret in (leak.stored, leak.unrelated):
        assert secret not in proxy.sent_text()
        assert secret[12:30] not in proxy.sent_text()

    entries = ok_json(
        cli("audit", "list", "--project", leak.project, "--action", "secret.exposed", "--json")
    )["entries"]
    [entry] = entries
    assert (entry["environment"], entry["key"]) == (PROD, "STRIPE_KEY")
    assert entry["metadata"]["location"] == "settings.py:1"
    assert entry["metadata"]["version"] == 1
    assert leak.stored not in json.dumps(entries)

    exposed = rotation_entry(cli, leak.project, "STRIPE_KEY")
    assert exposed["status"] == "rotate now"
    assert [(e["version"], e["location"]) for e in exposed["exposures"]] == [(1, "settings.py:1")]
    text = ok(cli("rotation", "report", "--project", leak.project))
    assert f"rotate now │ {leak.project}/{PROD}/STRIPE_KEY" in text
    assert "v1 at settings.py:1" in text

    ok(
        cli(
            "secrets",
            "set",
            "STRIPE_KEY",
            fake_secret("stripe-secret-key"),
            "-p",
            leak.project,
            "-e",
            PROD,
        )
    )
    rotated = rotation_entry(cli, leak.project, "STRIPE_KEY")
    assert (rotated["status"], rotated["current_version"]) == ("ok", 2)
    assert [(e["version"], e["current"]) for e in rotated["exposures"]] == [(1, False)]
    again = cli("scan", "--match-vault", "--no-progress", str(leak.folder))
    assert f"vault: {leak.project}/{PROD}/STRIPE_KEY (version 1, no longer current)" in again.stdout


def test_an_identity_without_read_access_gets_no_match(cli: Cli, leak: Leak) -> None:
    """A machine that may read only development scans the same folder: the findings are
    reported (exit 1) but none is named as a vault secret, and nothing is marked exposed."""
    machine = unique_name("ci")
    scope = f"{leak.project}:{DEV}:read"
    ok(cli("machines", "create", machine, "--scope", scope))
    token = ok_json(cli("machines", "token", machine, "--json"))["token"]
    robot = cli.with_env(COFFER_TOKEN=token)
    result = robot("scan", "--match-vault", "--no-progress", str(leak.folder))
    assert result.returncode == FOUND, result.stderr
    assert "vault: " not in result.stdout
    assert rotation_entry(cli, leak.project, "STRIPE_KEY")["status"] == "ok"


def test_match_vault_returns_matches_keyed_by_finding_fingerprint(
    cli: Cli, leak: Leak, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``match_vault`` (what the scan calls) returns a VaultMatch for the stored value under
    its finding's fingerprint, and nothing for the unrelated one."""
    for name in ("COFFER_ADDR", "COFFER_TOKEN", "COFFER_CONFIG", "HOME"):
        monkeypatch.setenv(name, cli.env[name])
    findings = [
        Finding("stripe-secret-key", "Stripe", "payment", "critical", "a.py", 3, 1, 9, leak.stored),
        Finding("github-pat", "GitHub", "vcs", "high", "b.sh", 1, 1, 9, leak.unrelated),
    ]
    matches = match_vault(findings)
    assert set(matches) == {findings[0].fingerprint}
    match = matches[findings[0].fingerprint]
    assert (match.project, match.environment, match.key, match.version, match.current) == (
        leak.project,
        PROD,
        "STRIPE_KEY",
        1,
        True,
    )


def test_one_scan_sends_every_batch_under_one_nonce_with_its_project(
    cli: Cli, leak: Leak, proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Findings split into one batch each go in two requests under the same nonce, both
    naming the project given; the stored one is matched; a second call uses a new nonce."""
    for name in ("COFFER_TOKEN", "COFFER_CONFIG", "HOME"):
        monkeypatch.setenv(name, cli.env[name])
    monkeypatch.setenv("COFFER_ADDR", proxy.addr)
    real_batches = vault_match._batches
    monkeypatch.setattr(
        vault_match, "_batches", lambda findings: real_batches(findings, max_count=1)
    )
    findings = [
        Finding("github-pat", "GitHub", "vcs", "high", "b.sh", 1, 1, 9, leak.unrelated),
        Finding("stripe-secret-key", "Stripe", "payment", "critical", "a.py", 3, 1, 9, leak.stored),
    ]
    matches = match_vault(findings, project=leak.project)
    assert [m.key for m in matches.values()] == ["STRIPE_KEY"]
    match_vault(findings[:1], project=leak.project)
    sent = [json.loads(r.body) for r in proxy.requests if r.path == "/api/v1/exposures/match"]
    assert [len(body["findings"]) for body in sent] == [1, 1, 1]
    assert {body["project"] for body in sent} == {leak.project}
    assert sent[0]["nonce"] == sent[1]["nonce"] != sent[2]["nonce"]
    assert leak.stored not in proxy.sent_text()


@pytest.mark.parametrize("nonce", [encode_nonce(b"n" * 8), encode_nonce(b"n" * 80), "%%%"])
def test_a_bad_nonce_is_refused_naming_the_field(server: ServerProcess, nonce: str) -> None:
    """A nonce under 16 or over 64 bytes, or not base64url, answers 400 naming ``nonce``."""
    body = {
        "nonce": nonce,
        "findings": [{"fingerprint": "0" * 64, "rule_id": "r", "location": "x:1"}],
    }
    response = httpx.post(
        f"{server.addr}/api/v1/exposures/match",
        json=body,
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_input", "nonce")


def test_rotation_report_of_an_unknown_project_is_not_found(cli: Cli) -> None:
    """`coffer rotation report --project nosuch` fails naming the project (exit 3)."""
    message = failed(cli("rotation", "report", "--project", "nosuch-project"), 3)
    assert "nosuch-project" in message


def test_scan_project_option_limits_the_match_and_needs_match_vault(
    cli: Cli, leak: Leak, proxy: RecordingProxy
) -> None:
    """``--project`` sends the project with the fingerprints and still names the leak; another
    project finds nothing of it; without ``--match-vault`` the option is refused (exit 2)."""
    through_proxy = cli.with_env(COFFER_ADDR=proxy.addr)
    named = through_proxy(
        "scan", "--match-vault", "--project", leak.project, "--no-progress", str(leak.folder)
    )
    assert f"vault: {leak.project}/{PROD}/STRIPE_KEY" in named.stdout, named.stderr
    [request] = [r for r in proxy.requests if r.path == "/api/v1/exposures/match"]
    assert json.loads(request.body)["project"] == leak.project
    other = unique_name("other")
    ok(cli("projects", "create", other))
    elsewhere = cli("scan", "--match-vault", "-p", other, "--no-progress", str(leak.folder))
    assert elsewhere.returncode == FOUND and "vault: " not in elsewhere.stdout
    refused = cli("scan", "--project", leak.project, "--no-progress", str(leak.folder))
    assert refused.returncode == 2
    assert "error [project]" in refused.stderr
