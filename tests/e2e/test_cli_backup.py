"""``coffer backup create|verify|restore`` typed into a shell on the vault's machine, on each
backend, while the vault's server runs: the restored vault, served by a new ``coffer server``,
answers every secret with the old token and its audit log verifies against a checkpoint the
original server signed; and the exit codes and messages of every refusal (a cut or edited
file, a missing one, an existing destination, a vault in the way, another root key)."""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import (
    Cli,
    ServerProcess,
    base_env,
    close_database,
    failed,
    ok,
    ok_json,
    open_database,
    start_server,
)

INVALID_INPUT, CONFLICT, CONFIG = 2, 5, 7
DEV, PROD = "development", "production"
# (environment, key) -> every version's value, oldest first.
VERSIONS = {
    (DEV, "DB_PASSWORD"): ["e2e-bk-db-1-Kq3Vn8", "e2e-bk-db-2-Wm5Rt1", "e2e-bk-db-3-Zp7Lx4"],
    (DEV, "API_KEY"): ["e2e-bk-api-1-Hs2Jd9"],
    (PROD, "DB_PASSWORD"): ["e2e-bk-prod-1-Yc6Nb2", "e2e-bk-prod-2-Ue4Gf7"],
}
PROJECT = "billing"
SUMMARY_FIELDS = {
    "file",
    "size_bytes",
    "generation",
    "provider",
    "key_id",
    "secret_versions",
    "audit_entries",
    "rows",
    "seconds",
}


def api(server: ServerProcess, method: str, path: str, **kwargs: Any) -> Any:
    """Calls the server's API with the bootstrap token; returns the JSON of a 2xx answer."""
    response = httpx.request(
        method,
        f"{server.addr}{path}",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=10,
        **kwargs,
    )
    assert response.is_success, response.text
    return response.json()


def secret_path(environment: str, key: str) -> str:
    """The API path of a secret of PROJECT."""
    return f"/api/v1/projects/{PROJECT}/environments/{environment}/secrets/{key}"


def local_cli(server: ServerProcess, home: Path) -> Cli:
    """The CLI of the vault's machine: no server address or token, the vault's database in
    COFFER_DATABASE_URL (as the server was started)."""
    return Cli(base_env(home, {"COFFER_DATABASE_URL": server.database_url}), home)


def sqlite_only(server: ServerProcess) -> None:
    """Skips the PostgreSQL run of a check that reads only the backup file, the key and a
    SQLite target, never the vault's database (it runs once, on the SQLite module)."""
    if not server.database_url.startswith("sqlite"):
        pytest.skip("reads only the backup file and a SQLite target: checked on the SQLite run")


def describe(summary: dict[str, Any]) -> str:
    """The human summary the backup commands print after the file name."""
    return (
        f"{sum(summary['rows'].values())} rows, {summary['secret_versions']} secret versions, "
        f"{summary['audit_entries']} audit entries under the signed checkpoint; opens with root "
        f"key generation {summary['generation']} ({summary['provider']}, key {summary['key_id']})"
    )


@dataclass
class Backup:
    """A backup taken with `coffer backup create --json` of the module's server."""

    path: Path
    summary: dict[str, Any]
    witness: Path
    local: Cli
    vault: Path


@pytest.fixture(scope="module")
def backup(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Backup:
    """Fills the server's vault over its API, saves a checkpoint it signed (a witness), then
    backs the vault up from the shell while the server keeps running."""
    base = tmp_path_factory.mktemp("backup")
    home = base / "home"
    home.mkdir()
    api(server, "POST", "/api/v1/projects", json={"name": PROJECT})
    for (environment, key), values in VERSIONS.items():
        for value in values:
            api(server, "PUT", secret_path(environment, key), json={"value": value})
    report = api(server, "POST", "/api/v1/audit/verify")
    assert report["ok"], report
    witness = base / "witness.json"
    witness.write_text(json.dumps(report["latest_checkpoint"]))
    local = local_cli(server, home)
    path = base / "vault.coffer-backup"
    summary = ok_json(
        local("backup", "create", str(path), "--dir", str(server.directory), "--json")
    )
    return Backup(path, summary, witness, local, server.directory)


def test_backup_create_prints_its_summary_and_writes_a_private_file(
    backup: Backup, server: ServerProcess
) -> None:
    """`backup create --json` prints the file, its size, the root key that opens it and the
    counts; the file is mode 0600 and holds no value or token."""
    summary = backup.summary
    assert set(summary) == SUMMARY_FIELDS
    assert summary["file"] == str(backup.path)
    assert summary["size_bytes"] == backup.path.stat().st_size
    assert (summary["generation"], summary["provider"]) == (1, "local")
    assert len(summary["key_id"]) == 32
    versions = sum(len(values) for values in VERSIONS.values())
    assert summary["secret_versions"] == versions == summary["rows"]["secret_versions"]
    assert summary["audit_entries"] == summary["rows"]["audit_log"] > versions
    assert isinstance(summary["seconds"], float)
    assert stat.S_IMODE(backup.path.stat().st_mode) == 0o600
    data = backup.path.read_bytes()
    assert server.token is not None
    for value in [server.token, *(v for values in VERSIONS.values() for v in values)]:
        assert value.encode() not in data


def test_verify_restore_and_serve_the_restored_vault(
    backup: Backup, server: ServerProcess, tmp_path: Path
) -> None:
    """`backup verify` says the file is intact; `backup restore --root-key-file` into a new
    directory (and, on PostgreSQL, a new schema) says what came back; `coffer server` on it
    answers every version with the old token, and `coffer audit verify` passes against the
    checkpoint the original server signed before the backup."""
    expected = describe(backup.summary)
    backend = "postgresql" if server.database_url.startswith("postgres") else "sqlite"
    database = open_database(backend)
    try:
        target = tmp_path / "restored"
        url = database.url_for(target)
        restorer = backup.local.with_env(COFFER_DATABASE_URL=url)
        key = server.directory / "root.key"
        with ThreadPoolExecutor(max_workers=2) as pool:
            verifying = pool.submit(
                backup.local, "backup", "verify", str(backup.path), "--dir", str(server.directory)
            )
            restored = restorer(
                "backup",
                "restore",
                str(backup.path),
                "--dir",
                str(target),
                "--root-key-file",
                str(key),
            )
            verified = verifying.result()
        assert ok(verified) == f"{backup.path} is intact: {expected}\n"
        assert ok(restored) == f"Restored {backup.path} into {target}: {expected}\n"
        assert (target / "root.key").read_bytes() == key.read_bytes()
        copy = start_server(target, url, tmp_path / "restored.log", tmp_path)
        try:
            copy.token = server.token
            for (environment, key_name), values in VERSIONS.items():
                for number, value in enumerate(values, 1):
                    read = api(
                        copy, "GET", secret_path(environment, key_name), params={"version": number}
                    )
                    assert (read["value"], read["version"]) == (value, number)
            assert server.token is not None
            user = Cli(
                base_env(tmp_path, {"COFFER_ADDR": copy.addr, "COFFER_TOKEN": server.token}),
                tmp_path,
            )
            audit = user("audit", "verify", "--witness", str(backup.witness))
            assert ok(audit).startswith("verified: ")
        finally:
            copy.stop()
    finally:
        close_database(database)


def test_a_vault_in_the_way_or_an_existing_file_is_a_conflict(
    backup: Backup, server: ServerProcess, tmp_path: Path
) -> None:
    """Restoring over the running server's vault, or backing up onto an existing file, is a
    conflict (exit 5) naming what is in the way; the file is left untouched."""
    existing = tmp_path / "existing.txt"
    existing.write_text("precious\n")
    vault = str(server.directory)
    in_the_way, overwrite = backup.local.many(
        ("backup", "restore", str(backup.path), "--dir", vault),
        ("backup", "create", str(existing), "--dir", vault),
    )
    if server.database_url.startswith("sqlite"):
        database = server.directory / "coffer.db"
        taken = f"error: {database} already holds a vault; restore needs an empty vault\n"
    else:
        taken = "error: the target database already holds a vault\n"
    assert failed(in_the_way, CONFLICT) == taken
    assert failed(overwrite, CONFLICT) == (
        f"error [file]: {existing} already exists; refusing to overwrite it\n"
    )
    assert existing.read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt"]


def test_a_cut_edited_missing_or_foreign_keyed_file_is_refused(
    backup: Backup, server: ServerProcess, tmp_path: Path
) -> None:
    """A cut file and an edited one are invalid input (2) with the reason; a missing file
    names the OS error, and with --json the error object goes to stderr; another vault's
    root key is a configuration error (7) naming the key the backup needs. No failed restore
    leaves anything in its target directory."""
    sqlite_only(server)
    data = backup.path.read_bytes()
    cut, edited = tmp_path / "cut.coffer-backup", tmp_path / "edited.coffer-backup"
    cut.write_bytes(data[:-7])
    edited.write_bytes(data[:-30] + bytes([data[-30] ^ 0x04]) + data[-29:])
    missing = tmp_path / "missing.coffer-backup"
    other_key = tmp_path / "other.key"
    other_key.write_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
    fresh = [tmp_path / "fresh-cut", tmp_path / "fresh-key"]
    key = str(server.directory / "root.key")
    vault = str(server.directory)
    shell = backup.local.with_env(COFFER_DATABASE_URL=None)  # targets: SQLite under --dir
    truncated, tampered, absent, wrong_key = shell.many(
        ("backup", "restore", str(cut), "--dir", str(fresh[0]), "--root-key-file", key),
        ("backup", "verify", str(edited), "--dir", vault),
        ("backup", "verify", str(missing), "--dir", vault, "--json"),
        (
            "backup",
            "restore",
            str(backup.path),
            "--dir",
            str(fresh[1]),
            "--root-key-file",
            str(other_key),
        ),
    )
    assert failed(truncated, INVALID_INPUT) == (
        "error [file]: the backup file is not valid: it ends inside chunk 0 (truncated)\n"
    )
    assert failed(tampered, INVALID_INPUT) == (
        "error [file]: the backup file is not valid: chunk 0 fails its integrity check "
        "(edited or reordered)\n"
    )
    assert json.loads(failed(absent, INVALID_INPUT)) == {
        "error": {
            "code": "invalid_input",
            "message": f"cannot read {missing}: No such file or directory",
            "field": "file",
        }
    }
    key_id = backup.summary["key_id"]
    assert failed(wrong_key, CONFIG) == (
        f"error: this backup needs root key generation 1 (local, key {key_id}): the root key "
        "does not match this vault (generation 1: key check value mismatch); check "
        f"COFFER_ROOT_KEY or the root key file {other_key}\n"
    )
    for directory in fresh:
        assert not directory.exists() or list(directory.iterdir()) == []


def test_backup_into_a_missing_directory_names_the_file(
    backup: Backup, server: ServerProcess, tmp_path: Path
) -> None:
    """A destination whose directory does not exist is invalid input (2) naming the file,
    with no traceback."""
    sqlite_only(server)
    destination = tmp_path / "no-such-dir" / "vault.coffer-backup"
    result = backup.local("backup", "create", str(destination), "--dir", str(backup.vault))
    stderr = failed(result, INVALID_INPUT)
    assert stderr.startswith("error [file]: ") and str(destination) in stderr, stderr
    assert "Traceback" not in stderr


def test_restore_into_a_directory_that_cannot_be_made_names_it(
    backup: Backup, server: ServerProcess, tmp_path: Path
) -> None:
    """A --dir that cannot be created is refused naming it (exit 2 or 7), with no
    traceback."""
    sqlite_only(server)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    target = blocker / "vault"
    shell = backup.local.with_env(COFFER_DATABASE_URL=None)
    result = shell("backup", "restore", str(backup.path), "--dir", str(target))
    assert result.returncode in (INVALID_INPUT, CONFIG), result.stderr
    assert result.stderr.startswith("error") and str(target) in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
