"""A root key split into Shamir shares, as an operator types it: ``coffer init --shares N
--threshold T`` prints N shares and writes no key; ``coffer server`` starts sealed (only
``/healthz``, the seal status and the unseal call answer; the API is 503 ``sealed``);
``coffer unseal`` takes one share at a time, refusing a mistyped share or one of another
split without counting it; the threshold-th share opens the vault, a restart seals it again,
and a whole set of another vault's shares is refused as the wrong root key and forgotten."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from shamir_mnemonic import generate_mnemonics
from starlette.types import ASGIApp

from coffer.api.app import create_app
from coffer.api.sealed import SealedGate
from coffer.bootstrap import build_services, initialise_vault, sealed_root
from coffer.config import Settings
from coffer.services.container import Services
from tests.e2e.harness import (
    Cli,
    Database,
    ServerProcess,
    base_env,
    failed,
    ok,
    ok_json,
    start_server,
)

INVALID_INPUT, CONFIG = 2, 7
SEALED_BODY = {
    "error": {
        "code": "sealed",
        "message": "the vault is sealed; run `coffer unseal` with its shares",
    }
}
FOREIGN = {
    "error": {
        "code": "invalid_input",
        "message": "share belongs to another set of shares, not this vault's",
        "field": "share",
    }
}
UNSEAL = "/api/v1/sys/unseal"
SECRET = "/api/v1/projects/web/environments/production/secrets/db/password"
VALUE = "unsealed-value-Hq4Zx8Lm2"


def seal_status(server: ServerProcess) -> Any:
    """GET /api/v1/sys/seal-status (no token), asserting 200."""
    response = httpx.get(f"{server.addr}/api/v1/sys/seal-status", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def give(server: ServerProcess, share: str) -> httpx.Response:
    """POST /api/v1/sys/unseal with one share, as anyone on the network can."""
    return httpx.post(f"{server.addr}/api/v1/sys/unseal", json={"share": share}, timeout=30)


def progress(sealed: bool, threshold: int, given: int) -> dict[str, Any]:
    """The seal status shape."""
    return {"sealed": sealed, "threshold": threshold, "progress": given}


def call(server: ServerProcess, token: str, method: str, path: str, **kwargs: Any) -> Any:
    """An API call with the bootstrap token."""
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, f"{server.addr}{path}", headers=headers, timeout=10, **kwargs)


def assert_sealed(server: ServerProcess, token: str) -> None:
    """/healthz says sealed; API calls (with a valid token, documented or not) are 503."""
    health = httpx.get(f"{server.addr}/healthz", timeout=10)
    assert (health.status_code, health.json()) == (200, {"status": "ok", "sealed": True})
    for method, path in (
        ("GET", "/api/v1/projects"),
        ("POST", "/api/v1/projects"),
        ("GET", "/api/v1/whoami"),
        ("GET", SECRET),
        ("GET", "/api/v1/sys/unseal"),
        ("GET", "/docs"),
    ):
        answer = call(server, token, method, path, json={"name": "web"})
        assert (answer.status_code, answer.json()) == (503, SEALED_BODY), (method, path)
        assert answer.headers["cache-control"] == "no-store"


def mistyped(share: str) -> str:
    """The share with its fifth word replaced by another word of the list (the checksum
    catches it)."""
    words = share.split()
    words[4] = "academic" if words[4] != "academic" else "acid"
    return " ".join(words)


def other_split() -> list[str]:
    """Five shares (any three combine) of a random key: what an outsider, or another vault,
    holds."""
    return list(generate_mnemonics(1, [(3, 5)], secrets.token_bytes(32))[0])


def test_a_split_vault_is_sealed_until_enough_shares_then_serves(
    fresh_database: Database, home: Path, tmp_path: Path
) -> None:
    """The whole life of a split vault on each backend (see the module docstring)."""
    vault_dir = tmp_path / "vault"
    url = fresh_database.url_for(vault_dir)
    shell = Cli(base_env(home, {"COFFER_DATABASE_URL": url}), home)
    split = ("--shares", "5", "--threshold", "3", "--json")
    initialised = ok_json(shell("init", "--dir", str(vault_dir), *split))
    foreign = other_split()  # what `coffer init --shares 5 --threshold 3` prints elsewhere
    shares: list[str] = initialised["shares"]
    token: str = initialised["token"]
    assert len(shares) == len(set(shares)) == 5
    assert all(len(share.split()) == 33 for share in shares)
    assert not (vault_dir / "root.key").exists()
    if fresh_database.is_sqlite:
        # Only the database (and SQLite's empty writer-lock file): no key file.
        files = [p.name for p in vault_dir.iterdir() if p.name != "coffer.db-writer.lock"]
        assert files == ["coffer.db"]
        stored = (vault_dir / "coffer.db").read_bytes().decode("latin-1")
    else:
        stored = fresh_database.dump_text()
    assert not any(" ".join(share.split()[4:8]) in stored for share in shares)

    server = start_server(vault_dir, url, tmp_path / "server.log", home)
    try:
        assert "SEALED: run `coffer unseal`" in server.log_text()
        assert_sealed(server, token)
        assert seal_status(server) == progress(True, 3, 0)
        user = shell.with_env(COFFER_ADDR=server.addr)
        assert ok(user("unseal", shares[0])) == (
            "Sealed: 1 of 3 shares given; give another with `coffer unseal`.\n"
        )
        assert ok(user("unseal", "-", input=f"  {shares[3].upper()}\n")) == (
            "Sealed: 2 of 3 shares given; give another with `coffer unseal`.\n"
        )
        status, typo, stranger, backup = user.many(
            ("unseal", "--status"),
            ("unseal", mistyped(shares[1])),
            ("unseal", foreign[0]),
            ("backup", "create", str(tmp_path / "split.coffer-backup"), "--dir", str(vault_dir)),
        )
        assert ok(status) == "Sealed: 2 of 3 shares given; give another with `coffer unseal`.\n"
        assert failed(typo, INVALID_INPUT) == (
            "error [share]: share is not a valid SLIP-39 share (a word is wrong or missing)\n"
        )
        assert failed(stranger, INVALID_INPUT) == (
            "error [share]: share belongs to another set of shares, not this vault's\n"
        )
        assert failed(backup, INVALID_INPUT) == (
            "error [share]: standard input ended after 0 shares; 3 are needed\n"
        )
        assert not (tmp_path / "split.coffer-backup").exists()
        again = give(server, shares[0])
        assert (again.status_code, again.json()) == (200, progress(True, 3, 2))
        assert seal_status(server) == progress(True, 3, 2)
        assert_sealed(server, token)

        assert ok(user("unseal", shares[4])) == "Unsealed: the vault is open.\n"
        assert seal_status(server) == progress(False, 0, 0)
        health = httpx.get(f"{server.addr}/healthz", timeout=10)
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert (
            call(server, token, "POST", "/api/v1/projects", json={"name": "web"}).status_code == 201
        )
        written = call(server, token, "PUT", SECRET, json={"value": VALUE})
        assert written.status_code == 200, written.text
        assert call(server, token, "GET", SECRET).json()["value"] == VALUE
        late = give(server, shares[1])
        assert (late.status_code, late.json()) == (200, progress(False, 0, 0))
    finally:
        server.stop()

    server = start_server(vault_dir, url, tmp_path / "restart.log", home)
    try:
        assert_sealed(server, token)
        # another vault's shares are refused one by one: they cannot fill or block the count
        for share in foreign[:3]:
            answer = give(server, share)
            assert (answer.status_code, answer.json()) == (400, FOREIGN)
        assert seal_status(server) == progress(True, 3, 0)
        user = shell.with_env(COFFER_ADDR=server.addr)
        assert (
            failed(user("unseal", foreign[3]), INVALID_INPUT)
            == f"error [share]: {FOREIGN['error']['message']}\n"
        )
        assert seal_status(server) == progress(True, 3, 0)
        assert_sealed(server, token)
        for share in (shares[2], shares[1]):
            assert give(server, share).json()["sealed"] is True
        opened = give(server, shares[4])
        assert (opened.status_code, opened.json()) == (200, progress(False, 3, 3))
        assert call(server, token, "GET", SECRET).json()["value"] == VALUE
    finally:
        server.stop()


@contextmanager
def sealed_app(tmp_path: Path) -> Iterator[tuple[TestClient, list[str]]]:
    """A 2-of-3 split vault on SQLite behind the sealed server's ASGI app, in this process
    (as ``coffer server`` serves it), and its shares."""
    directory = tmp_path / "vault"
    settings = Settings(
        directory=directory,
        database_url=f"sqlite:///{directory / 'coffer.db'}",
        root_key_file=directory / "root.key",
    )
    shares = list(initialise_vault(settings, split=(3, 2)).shares)
    sealed = sealed_root(settings)  # as `coffer server` finds it
    assert sealed is not None
    providers, record = sealed
    opened: list[Services] = []

    def open_app() -> ASGIApp:
        services = build_services(settings, providers)
        opened.append(services)
        return create_app(services, max_body_bytes=settings.max_body_bytes)

    try:
        yield TestClient(SealedGate(providers.shamir(), record, open_app)), shares
    finally:
        for services in opened:
            services.close()


def test_an_outsiders_share_cannot_lock_the_vaults_own_shares_out(tmp_path: Path) -> None:
    """A share of an outsider's own split, sent first to a sealed server, does not stop the
    vault's shares from unsealing it (the outsider needs no token)."""
    with sealed_app(tmp_path) as (client, shares):
        outsider = client.post(UNSEAL, json={"share": other_split()[0]})
        assert outsider.status_code in (200, 400)
        answers = [client.post(UNSEAL, json={"share": share}) for share in shares[:2]]
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert client.get("/api/v1/sys/seal-status").json()["sealed"] is False


def test_a_sealed_server_in_process_takes_shares_over_http(tmp_path: Path) -> None:
    """The same sealed app, given its own shares in order, opens (a control for the test
    above: what fails there is the outsider's share, not the set-up)."""
    with sealed_app(tmp_path) as (client, shares):
        first = client.post(UNSEAL, json={"share": shares[2]})
        assert (first.status_code, first.json()) == (200, progress(True, 2, 1))
        second = client.post(UNSEAL, json={"share": shares[0]})
        assert (second.status_code, second.json()) == (200, progress(False, 2, 2))
        assert client.get("/api/v1/sys/seal-status").json() == progress(False, 0, 0)


def test_bad_share_counts_are_refused_naming_the_flag(local_cli: Cli, tmp_path: Path) -> None:
    """--shares outside 2..16, a threshold outside 2..shares, or one flag without the other
    exit 2 naming the flag and the rule; no vault directory is created."""
    cases = {
        ("1", "1"): "error [shares]: shares must be between 2 and 16\n",
        ("17", "3"): "error [shares]: shares must be between 2 and 16\n",
        ("3", "4"): "error [threshold]: threshold must be between 2 and the number of shares (3)\n",
        ("5", None): "error [threshold]: --shares and --threshold go together; give --threshold\n",
        (None, "3"): "error [shares]: --shares and --threshold go together; give --shares\n",
    }
    commands = []
    for number, (shares, threshold) in enumerate(cases):
        args = ["init", "--dir", str(tmp_path / f"vault-{number}")]
        args += ["--shares", shares] if shares else []
        args += ["--threshold", threshold] if threshold else []
        commands.append(tuple(args))
    results = local_cli.many(*commands)
    for result, expected in zip(results, cases.values(), strict=True):
        assert failed(result, INVALID_INPUT) == expected
    assert list(tmp_path.iterdir()) == [tmp_path / "home"]


def test_local_commands_take_the_shares_on_stdin(local_cli: Cli, tmp_path: Path) -> None:
    """On a split vault, backup create/verify/restore and rotate-root read the shares from
    standard input (one per line): too few is refused naming ``share``; enough back up and
    restore the vault, and rotate-root moves its root to a key file."""
    vault, restored = tmp_path / "vault", tmp_path / "restored"
    made = ok_json(
        local_cli("init", "--dir", str(vault), "--shares", "3", "--threshold", "2", "--json")
    )
    shares = made["shares"]
    given = f"{shares[2]}\n\n{shares[0]}\n"
    backup = str(tmp_path / "split.bak")
    assert failed(
        local_cli("backup", "create", backup, "--dir", str(vault), input=shares[1] + "\n"),
        INVALID_INPUT,
    ) == ("error [share]: standard input ended after 1 shares; 2 are needed\n")
    assert ok(local_cli("backup", "create", backup, "--dir", str(vault), input=given)).startswith(
        f"Wrote {backup}: "
    )
    assert ok(local_cli("backup", "verify", backup, input=given)).startswith(f"{backup} is intact")
    restore = local_cli("backup", "restore", backup, "--dir", str(restored), "--json", input=given)
    assert ok_json(restore)["provider"] == "shamir"
    assert not (restored / "root.key").exists()
    moved = local_cli("rotate-root", "--dir", str(vault), "--yes", "--json", input=given)
    assert ok_json(moved)["current"]["provider"] == "local"
    assert (vault / "root.key").exists()
    status = ok_json(local_cli("root-key", "status", "--dir", str(vault), "--json"))
    assert (status["active"]["generation"], status["active"]["provider"]) == (2, "local")
