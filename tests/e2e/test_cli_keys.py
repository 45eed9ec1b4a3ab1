"""Key management typed into the CLI against real servers, on each backend: ``coffer rotate-key``
re-encrypts a project's secrets under a new data key through the API; ``coffer rotate-root``
replaces the vault's root key on the machine that holds the vault while its server keeps
serving (and moves it into a SoftHSM2 token); ``coffer root-key status`` tells where the root
key stands; and the errors a user sees."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import (
    Cli,
    Database,
    ServerProcess,
    base_env,
    failed,
    ok,
    ok_json,
    start_server,
    unique_name,
)

OK, INVALID_INPUT, NOT_FOUND, DENIED, CONFIG = 0, 2, 3, 4, 7
DEV, PROD = "development", "production"
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
KCV = r"[0-9a-f]{32}"
NO_TOKEN_VARS = {"COFFER_TOKEN": None, "COFFER_ADDR": None}
# Every version of the project's secrets, in the order written: (env, key, value).
VERSIONS = (
    (DEV, "DB_PASSWORD", "dev-pw-1"),
    (DEV, "DB_PASSWORD", "dev-pw-2"),
    (DEV, "DB_PASSWORD", "dev-pw-3"),
    (DEV, "API_KEY", "api-1"),
    (DEV, "db/url", "postgres://app@db/app"),
    (PROD, "DB_PASSWORD", "prod-pw-1"),
    (PROD, "DB_PASSWORD", "prod-pw-2"),
)


# --- helpers ---------------------------------------------------------------------------------


def fill_project(cli: Cli, project: str) -> None:
    """Creates ``project`` with the CLI and writes every version of VERSIONS, in order,
    through the API of the server ``cli`` points at (one CLI start per write would cost more
    than the rest of a test)."""
    ok(cli("projects", "create", project))
    token = {"Authorization": f"Bearer {cli.env['COFFER_TOKEN']}"}
    with httpx.Client(base_url=cli.env["COFFER_ADDR"], headers=token, timeout=30) as http:
        for env, key, value in VERSIONS:
            path = f"/api/v1/projects/{project}/environments/{env}/secrets/{key}"
            answer = http.put(path, json={"value": value})
            assert answer.status_code == 200, answer.text


def assert_every_version_reads(cli: Cli, project: str) -> None:
    """Every version of VERSIONS reads back its value through the API of the server ``cli``
    points at, and each key's latest is current; one old version also through the CLI."""
    numbered: list[tuple[str, str, int | None, str]] = []
    seen: dict[tuple[str, str], int] = {}
    for env, key, value in VERSIONS:
        seen[(env, key)] = seen.get((env, key), 0) + 1
        numbered.append((env, key, seen[(env, key)], value))
    numbered += [(env, key, None, value) for (env, key), value in latest_values().items()]
    token = {"Authorization": f"Bearer {cli.env['COFFER_TOKEN']}"}
    read: list[str] = []
    with httpx.Client(base_url=cli.env["COFFER_ADDR"], headers=token, timeout=30) as http:
        for env, key, number, _ in numbered:
            path = f"/api/v1/projects/{project}/environments/{env}/secrets/{key}"
            answer = http.get(path, params={} if number is None else {"version": number})
            assert answer.status_code == 200, answer.text
            read.append(answer.json()["value"])
    assert read == [value for *_, value in numbered]
    old = ("secrets", "get", "DB_PASSWORD", "-p", project, "-e", DEV, "--version", "1")
    assert ok(cli(*old)) == "dev-pw-1\n"


def latest_values() -> dict[tuple[str, str], str]:
    """Each (environment, key) of VERSIONS with its last value."""
    return {(env, key): value for env, key, value in VERSIONS}


def key_version(cli: Cli, project: str) -> int:
    """The project's data-key version as `projects list --json` shows it."""
    projects = ok_json(cli("projects", "list", "--json"))["projects"]
    return int(next(p["key_version"] for p in projects if p["name"] == project))


def rotation_status(server: ServerProcess, project: str) -> dict[str, object]:
    """GET .../key-rotation with the bootstrap token."""
    response = httpx.get(
        f"{server.addr}/api/v1/projects/{project}/key-rotation",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Runs independent steps at the same time (each CLI call costs a Python start); returns
    their results in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def viewer_token(server: ServerProcess) -> str:
    """A new viewer's CLI token: invited with the bootstrap token, accepted and logged in
    through the API (the CLI's own invitation flow is tested in test_cli_identity)."""
    email, password = f"viewer-{uuid.uuid4().hex[:8]}@acme.test", "viewer passphrase 01"
    owner = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.addr, timeout=30) as http:
        invited = http.post(
            "/api/v1/members/invite", json={"email": email, "role": "viewer"}, headers=owner
        )
        assert invited.status_code in (200, 201), invited.text
        accept = {"token": invited.json()["token"], "password": password}
        assert http.post("/api/v1/invitations/accept", json=accept).status_code == 201
        login = http.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
    token: str = login.json()["token"]
    return token


def run_in_terminal(args: tuple[str, ...], env: dict[str, str]) -> tuple[int, str]:
    """Runs ``python -m coffer ARGS`` with a pseudo-terminal as stdin, stdout and stderr (and
    TERM=xterm, so Rich draws); returns its exit status and every byte the terminal got."""
    import pty

    main_fd, terminal_fd = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "coffer", *args],
        stdin=terminal_fd,
        stdout=terminal_fd,
        stderr=terminal_fd,
        env={**env, "TERM": "xterm"},
        start_new_session=True,  # never the developer's terminal
    )
    os.close(terminal_fd)
    shown = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main_fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(main_fd, 4096)
                except OSError:  # EIO: the CLI exited and closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
    finally:
        os.close(main_fd)
    return process.wait(timeout=30), shown.decode("utf-8", errors="replace")


# --- rotate-key ------------------------------------------------------------------------------


def test_rotate_key_reencrypts_every_version_and_destroys_the_old_key(cli: Cli) -> None:
    """rotate-key in steps of 2: one line naming the new version, the versions re-encrypted
    and the key destroyed, nothing on stderr (no terminal, no progress bar); every version
    still reads; `projects list` shows the new version; `key.rotated` is in the audit log;
    running it again starts (not resumes) another rotation."""
    project = unique_name("rot")
    fill_project(cli, project)
    assert key_version(cli, project) == 1

    result = cli("rotate-key", "-p", project, "--batch", "2")
    assert ok(result) == (
        f"Rotated project {project}'s data key to version 2: 7 versions re-encrypted, "
        "old key version 1 destroyed\n"
    )
    assert result.stderr == ""
    assert key_version(cli, project) == 2
    assert_every_version_reads(cli, project)

    again = ok_json(cli("rotate-key", "--project", project, "--json"))
    assert again == {
        "project": project,
        "key_version": 3,
        "resumed": False,
        "reencrypted": 7,
        "destroyed_key_versions": [2],
    }
    assert key_version(cli, project) == 3
    assert_every_version_reads(cli, project)

    entries = ok_json(
        cli("audit", "list", "--project", project, "--action", "key.rotated", "--json")
    )
    assert [e["metadata"] for e in entries["entries"]] == [
        {"key_version": 3, "destroyed_key_versions": "2", "versions": 7},
        {"key_version": 2, "destroyed_key_versions": "1", "versions": 7},
    ]


def test_rotate_key_resumes_a_rotation_under_way(cli: Cli, server: ServerProcess) -> None:
    """A rotation started through the API and left unfinished: rotate-key says it resumes,
    finishes it, and the project ends on that version (no third one)."""
    project = unique_name("resume")
    fill_project(cli, project)
    started = httpx.post(
        f"{server.addr}/api/v1/projects/{project}/key-rotation",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert started.status_code == 200, started.text
    assert started.json()["remaining_versions"] == 7
    ok(cli("secrets", "set", "LATE", "written-meanwhile", "-p", project, "-e", DEV))

    out = ok(cli("rotate-key", "-p", project))
    assert out == (
        f"Resuming the rotation of project {project}'s data key to version 2 (7 versions left)\n"
        f"Rotated project {project}'s data key to version 2: 7 versions re-encrypted, "
        "old key version 1 destroyed\n"
    )
    status = rotation_status(server, project)
    assert (status["key_version"], status["running"], status["remaining_versions"]) == (2, False, 0)
    assert ok(cli("secrets", "get", "LATE", "-p", project, "-e", DEV)) == "written-meanwhile\n"
    assert_every_version_reads(cli, project)


def test_rotate_key_shows_a_progress_bar_only_on_a_terminal(cli: Cli) -> None:
    """On a terminal a progress bar counts the re-encrypted versions (then vanishes); with
    --json the terminal gets the JSON alone."""
    project = unique_name("bar")
    fill_project(cli, project)
    code, shown = run_in_terminal(("rotate-key", "-p", project, "--batch", "3"), cli.env)
    assert code == OK, shown
    assert "Re-encrypting secret versions" in shown
    assert "7/7" in shown
    assert shown.endswith(
        f"Rotated project {project}'s data key to version 2: 7 versions re-encrypted, "
        "old key version 1 destroyed\r\n"
    )

    code, shown = run_in_terminal(("rotate-key", "-p", project, "--json"), cli.env)
    assert code == OK, shown
    assert json.loads(shown.replace("\r\n", "\n"))["key_version"] == 3


def test_rotate_key_refuses_viewers_unknown_projects_and_bad_batches(
    cli: Cli, server: ServerProcess
) -> None:
    """A viewer is denied (exit 4), an unknown project is not found (exit 3), and a batch
    outside 1..20000 is refused naming batch (exit 2) before anything starts."""
    project = unique_name("deny")
    fill_project(cli, project)
    viewer = cli.with_env(COFFER_TOKEN=viewer_token(server))
    refused = (
        ("rotate-key", "-p", "no-such-project"),
        ("rotate-key", "-p", project, "--batch", "0"),
        ("rotate-key", "-p", project, "--batch", "20001"),
        ("rotate-key", "-p", project, "--batch", "0", "--json"),
    )
    with ThreadPoolExecutor(max_workers=len(refused) + 1) as pool:
        runs = [pool.submit(viewer, "rotate-key", "-p", project)]
        runs += [pool.submit(cli, *args) for args in refused]
        denied, unknown, zero, too_big, json_zero = [run.result() for run in runs]
    assert failed(denied, DENIED) == "error: key.rotate needs the admin role\n"
    assert failed(unknown, NOT_FOUND) == "error [project]: project 'no-such-project' not found\n"
    batch_rule = "error [batch]: batch must be an integer from 1 to 20000\n"
    assert failed(zero, INVALID_INPUT) == batch_rule
    assert failed(too_big, INVALID_INPUT) == batch_rule
    assert json.loads(failed(json_zero, INVALID_INPUT))["error"]["field"] == "batch"
    status = rotation_status(server, project)
    assert (status["key_version"], status["running"]) == (1, False)
    assert ok(viewer("secrets", "get", "API_KEY", "-p", project, "-e", DEV)) == "api-1\n"


# --- rotate-root and root-key status ---------------------------------------------------------


@dataclass
class Vault:
    """A vault made by `coffer init`, the operator's CLI on it (no server address or token)
    and, once started, its server with the owner CLI."""

    directory: Path
    base: Path
    operator: Cli
    database_url: str
    token: str
    server: ServerProcess | None = None

    @property
    def key_file(self) -> Path:
        """The local root key file."""
        return self.directory / "root.key"

    def start(self, **extra_env: str) -> Cli:
        """Starts the vault's server; returns the CLI pointed at it with the owner token."""
        self.server = start_server(
            self.directory,
            self.database_url,
            self.base / "server.log",
            self.base,
            extra_env=extra_env,
        )
        env = {**self.operator.env, "COFFER_ADDR": self.server.addr, "COFFER_TOKEN": self.token}
        return Cli(env, self.base)

    def status(self) -> dict[str, Any]:
        """`coffer root-key status --json`."""
        answer: dict[str, Any] = ok_json(
            self.operator("root-key", "status", "--dir", str(self.directory), "--json")
        )
        return answer


@pytest.fixture
def vault(fresh_database: Database, tmp_path: Path) -> Iterator[Vault]:
    """A new vault on each backend (`coffer init --dir`), its server stopped at the end."""
    directory = tmp_path / "vault"
    database_url = fresh_database.url_for(directory)
    operator = Cli(base_env(tmp_path, {"COFFER_DATABASE_URL": database_url}), tmp_path)
    made = ok_json(operator("init", "--dir", str(directory), "--json"))
    opened = Vault(directory, tmp_path, operator, database_url, made["token"])
    try:
        yield opened
    finally:
        if opened.server is not None:
            opened.server.stop()


def rotate_root(
    vault: Vault, *extra: str, cli: Cli | None = None
) -> subprocess.CompletedProcess[str]:
    """`coffer rotate-root --dir VAULT --yes EXTRA` from the operator's shell."""
    return (cli or vault.operator)("rotate-root", "--dir", str(vault.directory), "--yes", *extra)


def test_rotate_root_under_a_running_server(vault: Vault) -> None:
    """With the server running, rotate-root re-seals every data key and ephemeral secret under
    a new key file: the server goes on serving each value (and writes under the new key),
    `root.key.next` is gone, root-key status shows generation 2, and the audit log still
    verifies against the public key saved before; after a restart the new key file alone
    opens everything."""
    owner = vault.start()
    project = unique_name("root")
    fill_project(owner, project)
    public_key = vault.base / "audit-before.pem"
    before, *_ = together(
        vault.status,
        lambda: ok(owner("ephemeral", "set", "deploy/otp", "otp-123", "--ttl", "1h")),
        lambda: ok(owner("audit", "public-key", "-o", str(public_key))),
    )
    assert (before["active"]["generation"], before["last_rotated"]) == (1, None)
    old_key = vault.key_file.read_bytes()

    result = rotate_root(vault)
    out = ok(result)
    assert result.stderr == ""
    match = re.fullmatch(
        rf"Rotated the root key from generation 1 \(local, key id ({KCV})\) to generation 2 "
        rf"\(local, key id ({KCV})\): 2 keys re-sealed\.\n"
        "Backups made before this rotation need the old root key: "
        f"{re.escape(str(vault.key_file))} now holds the new key instead\\.\n",
        out,
    )
    assert match, out
    old_id, new_id = match.groups()
    assert old_id == before["active"]["key_id"]
    assert new_id != old_id
    assert vault.key_file.read_bytes() != old_key
    assert vault.key_file.stat().st_mode & 0o777 == 0o600
    assert not (vault.directory / "root.key.next").exists()

    # The running server loads generation 2 by itself: old values read, new ones are written.
    export = vault.base / "audit.jsonl"
    later = unique_name("after")
    status, text, otp, verified, *_ = together(
        vault.status,
        lambda: ok(vault.operator("root-key", "status", "--dir", str(vault.directory))),
        lambda: ok(owner("ephemeral", "get", "deploy/otp")),
        lambda: ok(owner("audit", "verify")),
        lambda: ok(owner("projects", "create", later)),
        lambda: assert_every_version_reads(owner, project),
    )
    assert otp == "otp-123\n"
    ok(owner("secrets", "set", "NEW", "new-value", "-p", later, "-e", DEV))

    active = status["active"]
    assert (active["generation"], active["provider"], active["key_id"]) == (2, "local", new_id)
    assert status["last_rotated"] == active["activated_at"]
    assert (status["pending"], status["remaining"]) == (None, 0)
    assert [(g["generation"], g["state"], g["key_id"]) for g in status["history"]] == [
        (1, "retired", old_id),
        (2, "active", new_id),
    ]
    assert text.startswith(
        f"provider:         local\nkey id:           {new_id}\ngeneration:       2\n"
    )
    assert re.search(rf"^last rotated:     {ISO}\n", text, re.MULTILINE), text
    assert "pending rotation: none\n" in text
    assert re.search(rf"│ 1 +│ retired │ local +│ {old_id} │ {ISO} │ {ISO} │ {ISO} │", text), text

    # The audit keys survived: the live log and an export verify with the key saved before.
    assert verified.startswith("verified: ")
    ok(owner("audit", "export", "-o", str(export)))
    offline = ("audit", "verify", "--export", str(export), "--public-key", str(public_key))
    assert ok(owner(*offline)).startswith("verified: ")

    # Restarted, the server needs nothing but the new key file.
    assert vault.server is not None
    vault.server.stop()
    owner = vault.start()
    assert_every_version_reads(owner, project)
    assert ok(owner("secrets", "get", "NEW", "-p", later, "-e", DEV)) == "new-value\n"


def test_rotate_root_resumes_a_rotation_cut_short(vault: Vault) -> None:
    """A rotation that recorded its new generation and stopped: root-key status shows it
    pending with the keys left; rotate-root (no confirmation needed) says it resumes and
    finishes it."""
    owner = vault.start()
    project = unique_name("cut")
    ok(owner("projects", "create", project))
    ok(owner("secrets", "set", "A", "a-value", "-p", project, "-e", DEV))
    assert vault.server is not None
    vault.server.stop()
    script = (
        "from coffer.bootstrap.operator import operator_vault\n"
        "from coffer.config import Settings\n"
        "from coffer.services.root_rotation import RootRotation\n"
        "from pathlib import Path\n"
        "import sys\n"
        "with operator_vault(Settings.from_env(directory=Path(sys.argv[1]))) as v:\n"
        "    o = v.opened\n"
        "    RootRotation(v.engine, o.keks, v.providers, o.audit_keys).start()\n"
    )
    started = subprocess.run(
        [sys.executable, "-c", script, str(vault.directory)],
        env=vault.operator.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    assert (vault.directory / "root.key.next").exists()
    status, text = together(
        vault.status,
        lambda: ok(vault.operator("root-key", "status", "--dir", str(vault.directory))),
    )
    pending = status["pending"]
    assert (pending["generation"], pending["state"], status["remaining"]) == (2, "pending", 1)
    assert (
        f"pending rotation: generation 2 (local, key id {pending['key_id']}), 1 key left to "
        "re-seal (run `coffer rotate-root` to finish)\n"
    ) in text

    result = vault.operator("rotate-root", "--dir", str(vault.directory))  # no --yes
    out = ok(result)
    assert out.startswith(
        f"Resuming the root rotation to generation 2 (local, key id {pending['key_id']})\n"
        "Rotated the root key from generation 1 "
    )
    assert ": 1 key re-sealed.\n" in out
    assert not (vault.directory / "root.key.next").exists()
    assert vault.status()["active"]["generation"] == 2
    owner = vault.start()
    assert ok(owner("secrets", "get", "A", "-p", project, "-e", DEV)) == "a-value\n"


def test_rotate_root_with_the_key_in_a_variable_changes_nothing(vault: Vault) -> None:
    """With COFFER_ROOT_KEY set the key cannot be replaced: exit 7 naming the variable, and
    the vault, its key file and its generations stay as they were. Declining the prompt
    changes nothing either."""
    before, key = vault.status(), vault.key_file.read_bytes()
    in_variable = vault.operator.with_env(COFFER_ROOT_KEY=key.decode().strip())
    stderr = failed(rotate_root(vault, cli=in_variable), CONFIG)
    assert stderr == (
        "error: the root key comes from COFFER_ROOT_KEY, which coffer cannot change; keep it in "
        "a key file (COFFER_ROOT_KEY_FILE) to rotate it\n"
    )
    declined = vault.operator("rotate-root", "--dir", str(vault.directory), input="n\n")
    assert declined.returncode == 1
    assert "Replace the root key, generation 1 (local, key id " in declined.stderr
    assert f"Keep a copy of {vault.key_file} for older backups first." in declined.stderr
    assert vault.status() == before
    assert vault.key_file.read_bytes() == key
    assert sorted(p.name for p in vault.directory.iterdir() if "root" in p.name) == ["root.key"]


def test_root_key_commands_need_a_vault(local_cli: Cli, tmp_path: Path) -> None:
    """root-key status and rotate-root on a directory without a vault exit 7 and create
    nothing there."""
    missing = tmp_path / "nowhere"
    for args in (("root-key", "status"), ("rotate-root", "--yes")):
        stderr = failed(local_cli(*args, "--dir", str(missing)), CONFIG)
        assert stderr == f"error: no coffer vault in {missing}; run `coffer init` first\n"
    assert not missing.exists()
    stderr = failed(local_cli("rotate-root", "--dir", str(missing), "--batch", "0"), INVALID_INPUT)
    assert stderr == "error [batch]: batch must be an integer from 1 to 20000\n"


# --- moving the root key into an HSM ---------------------------------------------------------


@pytest.fixture
def softhsm(tmp_path: Path) -> dict[str, str]:
    """A SoftHSM2 token in a directory of the test's own; returns the variables that reach it
    (skipped, or failed under CI=true, when SoftHSM2 is not installed)."""
    tool = shutil.which("softhsm2-util")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PKCS#11 tests: install softhsm2 (.ci/run does)")
        pytest.skip("PKCS#11 provider not tested: softhsm2-util is not installed")
    tokens = tmp_path / "softhsm-tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(
        [
            tool,
            "--init-token",
            "--free",
            "--label",
            "coffer-test",
            "--so-pin",
            "1111",
            "--pin",
            "2222",
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return {
        "SOFTHSM2_CONF": str(conf),
        "COFFER_PKCS11_TOKEN": "coffer-test",
        "COFFER_PKCS11_PIN": "2222",
    }


def test_rotate_root_moves_a_local_vault_into_an_hsm(
    tmp_path: Path, softhsm: dict[str, str]
) -> None:
    """COFFER_ROOT_PROVIDER=pkcs11 rotate-root moves a running local vault's root into the
    token (key coffer-root-g2); the server follows, and once restarted it needs no key file."""
    directory = tmp_path / "vault"
    operator = Cli(base_env(tmp_path, softhsm), tmp_path)
    token = ok_json(operator("init", "--dir", str(directory), "--json"))["token"]
    vault = Vault(directory, tmp_path, operator, f"sqlite:///{directory / 'coffer.db'}", token)
    try:
        owner = vault.start(**softhsm)  # the server reaches the token for generation 2
        project = unique_name("hsm")
        fill_project(owner, project)

        out = ok(rotate_root(vault, cli=operator.with_env(COFFER_ROOT_PROVIDER="pkcs11")))
        assert re.fullmatch(
            rf"Rotated the root key from generation 1 \(local, key id {KCV}\) to generation 2 "
            r"\(pkcs11, key id coffer-root-g2\): 1 key re-sealed\.\n"
            "Backups made before this rotation need the old root key "
            f"\\({re.escape(str(vault.key_file))}\\); the vault no longer uses it\\.\n",
            out,
        ), out
        assert_every_version_reads(owner, project)
        active = vault.status()["active"]
        assert isinstance(active, dict)
        assert (active["provider"], active["key_id"]) == ("pkcs11", "coffer-root-g2")

        assert vault.server is not None
        vault.server.stop()
        vault.key_file.unlink()
        owner = vault.start(**softhsm)
        assert_every_version_reads(owner, project)
    finally:
        if vault.server is not None:
            vault.server.stop()


def test_rotate_root_moves_an_hsm_vault_to_a_key_file(
    tmp_path: Path, softhsm: dict[str, str]
) -> None:
    """COFFER_ROOT_PROVIDER=local rotate-root moves a vault rooted in the token back to a new
    local key file."""
    directory = tmp_path / "vault"
    operator = Cli(base_env(tmp_path, softhsm), tmp_path)
    ok(operator.with_env(COFFER_ROOT_PROVIDER="pkcs11")("init", "--dir", str(directory)))
    assert not (directory / "root.key").exists()
    out = ok(operator("rotate-root", "--dir", str(directory), "--yes"))
    assert re.fullmatch(
        r"Rotated the root key from generation 1 \(pkcs11, key id coffer-root\) to generation 2 "
        rf"\(local, key id {KCV}\): 0 keys re-sealed\.\n"
        "Backups made before this rotation need the old root key: the HSM key coffer-root is "
        "left in the token, for its owner to destroy once those backups no longer matter.\n",
        out,
    ), out
    assert (directory / "root.key").stat().st_mode & 0o777 == 0o600
