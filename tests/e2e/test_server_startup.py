"""`coffer init` and `coffer server` as an operator starts them: what refuses to start and why,
what is printed when, and the modes of the files a vault leaves on disk."""

from __future__ import annotations

import base64
import json
import os
import socket
from pathlib import Path

import pytest

from tests.e2e.harness import (
    Cli,
    Database,
    base_env,
    bootstrap_token,
    run_coffer,
    spawn_server,
    start_server,
    wait_for_exit,
)

CONFIG_ERROR = 7
QUICKLY_S = 10.0
UNREACHABLE_POSTGRES = "postgresql+psycopg://nobody@127.0.0.1:1/x"


def refused_start(
    vault: Path, database_url: str | None, tmp_path: Path, **env: str | None
) -> tuple[int, str]:
    """Starts `coffer server` expecting it to give up; returns its exit status and its whole
    output. Fails when it is still running after QUICKLY_S seconds."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    server = spawn_server(vault, database_url, tmp_path / "refused.log", home, extra_env=env)
    status = wait_for_exit(server.process, QUICKLY_S)
    assert status is not None, f"server still running after {QUICKLY_S} s:\n{server.log_text()}"
    return status, server.log_text()


def init_vault(local_cli: Cli, vault: Path, database_url: str) -> dict[str, str]:
    """Runs `coffer init --dir VAULT --json` and returns what it printed."""
    result = local_cli.with_env(COFFER_DATABASE_URL=database_url)(
        "init", "--dir", str(vault), "--json"
    )
    assert result.returncode == 0, result.stderr
    printed: dict[str, str] = json.loads(result.stdout)
    assert printed["directory"] == str(vault)
    assert printed["token"].startswith("coffer_boot_")
    return printed


def another_root_key() -> str:
    """A valid root key (base64 of 32 bytes) that belongs to no vault."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def test_wrong_root_key_refuses_to_start(
    fresh_database: Database, local_cli: Cli, tmp_path: Path
) -> None:
    """A valid root key of another vault makes the server exit at once, saying it does not match."""
    vault = tmp_path / "vault"
    url = fresh_database.url_for(vault)
    init_vault(local_cli, vault, url)
    status, output = refused_start(vault, url, tmp_path, COFFER_ROOT_KEY=another_root_key())
    assert status == CONFIG_ERROR, output
    assert "the root key does not match this vault" in output
    assert "COFFER_ROOT_KEY" in output
    assert "listening" not in output


def test_missing_key_file_names_the_file_and_the_variable(
    fresh_database: Database, local_cli: Cli, tmp_path: Path
) -> None:
    """With the key file deleted after init the server exits naming the file and COFFER_ROOT_KEY."""
    vault = tmp_path / "vault"
    url = fresh_database.url_for(vault)
    init_vault(local_cli, vault, url)
    (vault / "root.key").unlink()
    status, output = refused_start(vault, url, tmp_path)
    assert status == CONFIG_ERROR, output
    assert f"root key file {vault / 'root.key'} does not exist" in output
    assert "COFFER_ROOT_KEY" in output
    assert not (vault / "root.key").exists()  # it did not mint a new key for an existing vault


def test_unreachable_postgres_names_the_variable(tmp_path: Path) -> None:
    """An unreachable PostgreSQL server makes the server exit naming COFFER_DATABASE_URL."""
    status, output = refused_start(tmp_path / "vault", UNREACHABLE_POSTGRES, tmp_path)
    assert status == CONFIG_ERROR, output
    assert "cannot open the database named by COFFER_DATABASE_URL" in output
    assert "127.0.0.1:1" in output
    assert "Bootstrap owner token" not in output


def test_sqlite_in_missing_directory_names_the_variable(tmp_path: Path) -> None:
    """A SQLite path in a directory that does not exist makes the server exit naming
    COFFER_DATABASE_URL and the path."""
    database = tmp_path / "no-such-dir" / "coffer.db"
    status, output = refused_start(tmp_path / "vault", f"sqlite:///{database}", tmp_path)
    assert status == CONFIG_ERROR, output
    assert f"COFFER_DATABASE_URL points to {database}, whose directory does not exist" in output
    assert "Bootstrap owner token" not in output


@pytest.mark.parametrize(
    ("command", "database"),
    [("server", "sqlite-in-missing-dir"), ("init", "unreachable-postgres")],
)
def test_unopenable_database_leaves_nothing_behind(
    command: str, database: str, local_cli: Cli, tmp_path: Path
) -> None:
    """`coffer server` or `coffer init` on a database that cannot be opened creates no vault
    directory and no root key."""
    vault = tmp_path / "vault"
    url = (
        f"sqlite:///{tmp_path / 'no-such-dir' / 'coffer.db'}"
        if database == "sqlite-in-missing-dir"
        else UNREACHABLE_POSTGRES
    )
    if command == "server":
        status, output = refused_start(vault, url, tmp_path)
    else:
        result = local_cli.with_env(COFFER_DATABASE_URL=url)("init", "--dir", str(vault))
        status, output = result.returncode, result.stderr
    assert status == CONFIG_ERROR, output
    assert "COFFER_DATABASE_URL" in output
    assert not vault.exists(), f"left behind: {sorted(p.name for p in vault.iterdir())}"


def test_bad_port_names_the_variable(tmp_path: Path) -> None:
    """COFFER_PORT=abc makes the server exit with a configuration error naming COFFER_PORT."""
    home = tmp_path / "home"
    home.mkdir()
    env = base_env(home, {"COFFER_PORT": "abc"})
    result = run_coffer(["server", "--dir", str(tmp_path / "vault")], env, cwd=home)
    assert result.returncode == CONFIG_ERROR, result.stderr
    assert result.stderr == "error: COFFER_PORT must be an integer, got 'abc'\n"
    assert not (tmp_path / "vault").exists()


def test_port_in_use_is_reported_honestly(local_cli: Cli, tmp_path: Path) -> None:
    """A server whose port is taken says so, never claims to listen, and exits 1 or 7."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        server = spawn_server(
            tmp_path / "vault", None, tmp_path / "s.log", local_cli.cwd, port=port
        )
        status = wait_for_exit(server.process, QUICKLY_S)
    output = server.log_text()
    assert status is not None, output
    assert "address already in use" in output.lower()
    assert "coffer listening on" not in output
    assert status in (1, CONFIG_ERROR), output


def test_vault_files_are_private(tmp_path: Path, local_cli: Cli) -> None:
    """A new SQLite vault's directory is 0700 and its key and database files (WAL included) 0600."""
    vault = tmp_path / "vault"
    server = start_server(vault, None, tmp_path / "server.log", local_cli.cwd)
    try:
        assert server.token is not None
        user = local_cli.with_env(COFFER_ADDR=server.addr, COFFER_TOKEN=server.token)
        assert user("projects", "create", "modes").returncode == 0
        assert user("secrets", "set", "K", "v", "-p", "modes", "-e", "development").returncode == 0
        modes = {path.name: path.stat().st_mode & 0o777 for path in vault.iterdir()}
    finally:
        server.stop()
    assert vault.stat().st_mode & 0o777 == 0o700
    assert {"root.key", "coffer.db"} <= modes.keys()
    assert modes == {name: 0o600 for name in modes}


def test_bootstrap_token_is_printed_on_first_start_only(
    fresh_database: Database, local_cli: Cli, tmp_path: Path
) -> None:
    """The first start prints a working bootstrap token; a restart prints none; the token works."""
    vault = tmp_path / "vault"
    url = fresh_database.url_for(vault)
    first = start_server(vault, url, tmp_path / "first.log", local_cli.cwd)
    try:
        token = first.token
        assert token is not None and token.startswith("coffer_boot_")
        assert f"coffer login --addr {first.addr} --token {token}" in first.log_text()
    finally:
        first.stop()
    assert (vault / "root.key").stat().st_mode & 0o777 == 0o600
    assert vault.stat().st_mode & 0o777 == 0o700

    second = start_server(vault, url, tmp_path / "second.log", local_cli.cwd)
    try:
        output = second.log_text()
        assert f"coffer listening on {second.addr}" in output
        assert bootstrap_token(output) is None
        assert token not in output
        user = local_cli.with_env(COFFER_ADDR=second.addr, COFFER_TOKEN=token)
        result = user("projects", "list", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"projects": []}
    finally:
        second.stop()
