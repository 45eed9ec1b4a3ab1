"""Backups of a whole vault and their restore, on SQLite and PostgreSQL (both ways).

A vault with two projects, several versions, a read-limited secret, an ephemeral secret, a
share, a member with MFA, a webhook and its audit log is backed up; the archive is restored
into an empty SQLite directory and into an empty PostgreSQL schema, and the restored vault's
own services read every version, open every sealed blob and verify the audit log with the
original public key. Every refusal (a vault in the way, another root key, an edited or cut
file, a root rotation under way) names what is wrong and leaves nothing behind.
"""

from __future__ import annotations

import base64
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.api.app import create_app
from coffer.audit.live_check import verify_database
from coffer.bootstrap import build_services, initialise_vault
from coffer.bootstrap.operator import backup_vault, operator_vault, restore_vault, verify_backup
from coffer.config import Settings
from coffer.crypto.audit_keys import AuditKeys
from coffer.crypto.backup_archive import MAGIC
from coffer.crypto.keys import RootKey, write_root_key_file
from coffer.crypto.providers.configured import RootProviders
from coffer.crypto.share_cipher import decode_share_key, open_share, seal_share, share_proof
from coffer.crypto.totp import current_code
from coffer.domain.errors import ConfigError, Conflict, InvalidInput, WrongRootKey
from coffer.services.backups import BackupSummary
from coffer.services.container import Services
from coffer.services.root_rotation import RootRotation
from coffer.services.vault_setup import is_initialised, open_vault
from coffer.storage.backup_tables import count_rows
from coffer.storage.database import create_engine
from coffer.storage.tables import (
    audit_log,
    environments,
    projects,
    root_keys,
    secret_versions,
    secrets,
)
from coffer.storage.webhook_store import find_webhook
from tests.conftest import backend_database
from tests.integration.team_helpers import (
    API,
    OWNER_EMAIL,
    PASSWORD,
    bearer,
    cheap_settings,
    login,
    member_token,
)
from tests.provider_fixtures import SoftHsmToken

pytest_plugins = ("tests.provider_fixtures",)

PROJECTS = f"{API}/projects"
DEV, PROD = "development", "production"
MEMBER = "dev@acme.test"
# (project, environment, key) -> every version's value, oldest first. Distinctive values, so
# a match in the backup's bytes is no accident.
VERSIONS: dict[tuple[str, str, str], list[str]] = {
    ("app", DEV, "DB_PASSWORD"): [
        "bk-db-v1-Q7vX2pLm9k",
        "bk-db-v2-R4sT1wZk3N",
        "bk-db-v3-m8qW5eR2tY",
    ],
    ("app", DEV, "API_KEY"): ["bk-api-v1-6uH2jK5lP8"],
    ("app", PROD, "DB_PASSWORD"): ["bk-prod-v1-oI3uY6tRw9", "bk-prod-v2-eR3tY6uI1o"],
    ("billing", DEV, "stripe/key"): ["bk-stripe-v1-P4aSz7Xc"],
}
LIMITED = ("app", DEV, "ONE_TIME", "bk-limited-J8kL2mN5bV")
EPHEMERAL = ("handoff/db", "bk-ephemeral-7cX1zQ9wE3")
SHARED = b"bk-shared-plaintext-Lq8Vb3Nz6Xc1"
MISSING_KEY = "root key file {path} does not exist; run `coffer init` or set COFFER_ROOT_KEY"


def secret_url(project: str, environment: str, key: str) -> str:
    """The URL of a secret."""
    return f"{PROJECTS}/{project}/environments/{environment}/secrets/{key}"


def ok(response: Any, status: int = 200) -> Any:
    """The JSON of a response that must have ``status``."""
    assert response.status_code == status, response.text
    return response.json() if response.content else None


@dataclass
class Source:
    """A populated vault served over HTTP (no background jobs), with every credential and
    value a user holds, and a backup of it."""

    settings: Settings
    client: TestClient
    owner: str
    audit_keys: AuditKeys
    member_token: str = ""
    totp_seed: str = ""
    recovery_codes: list[str] = field(default_factory=list)
    share_key: str = ""
    share_token: str = ""
    share_envelope: bytes = b""
    webhook_id: str = ""
    webhook_secret: str = ""
    invitation: str = ""
    backup: Path = Path()
    summary: BackupSummary | None = None
    rows_after_backup: dict[str, int] = field(default_factory=dict)

    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        """A request as the owner."""
        return self.client.request(method, url, headers=bearer(self.owner), **kwargs)

    def secrets_held(self) -> list[bytes]:
        """Every plaintext, token and key a leak check looks for."""
        values = [v for versions in VERSIONS.values() for v in versions]
        values += [LIMITED[3], EPHEMERAL[1], SHARED.decode(), PASSWORD, self.owner]
        values += [self.member_token, self.totp_seed, *self.recovery_codes, self.share_key]
        values += [self.share_token, self.webhook_secret, self.invitation]
        root = self.settings.root_key_file.read_text().strip()
        return [v.encode() for v in [*values, root]]


@contextmanager
def opened(settings: Settings) -> Iterator[tuple[Services, TestClient]]:
    """The vault's services and an HTTP client on them (no lifespan: no background job
    races a test)."""
    services = build_services(settings.with_overrides(outbound_allow=("127.0.0.1",)))
    try:
        yield services, TestClient(create_app(services, max_body_bytes=settings.max_body_bytes))
    finally:
        services.close()


def audit_keys_of(settings: Settings) -> AuditKeys:
    """The vault's audit keys, opened with its root key."""
    engine = create_engine(settings.database_url)
    try:
        return open_vault(engine, RootProviders(settings)).audit_keys
    finally:
        engine.dispose()


def populate(source: Source) -> None:
    """Fills the vault: versions, a limited secret read once, an ephemeral secret, a share,
    a member with MFA, a pending invitation and a webhook."""
    ok(source.call("POST", PROJECTS, json={"name": "app"}), 201)
    ok(source.call("POST", PROJECTS, json={"name": "billing"}), 201)
    for (project, env, key), values in VERSIONS.items():
        for value in values:
            ok(source.call("PUT", secret_url(project, env, key), json={"value": value}))
    project, env, key, value = LIMITED
    body = {"value": value, "max_reads": 3, "ttl_seconds": 86_400}
    ok(source.call("PUT", secret_url(project, env, key), json=body))
    assert ok(source.call("GET", secret_url(project, env, key)))["value"] == value
    ok(
        source.call("POST", f"{API}/ephemeral", json={"key": EPHEMERAL[0], "value": EPHEMERAL[1]}),
        201,
    )
    source.share_key, source.share_envelope = seal_share(SHARED)
    share = {
        "ciphertext": base64.b64encode(source.share_envelope).decode("ascii"),
        "proof": share_proof(decode_share_key(source.share_key)),
        "max_reads": 3,
    }
    source.share_token = ok(source.call("POST", f"{API}/shares", json=share), 201)["token"]
    token = member_token(source.client, source.owner, MEMBER, "viewer")
    source.member_token = token
    source.totp_seed = ok(source.client.post(f"{API}/mfa/setup", headers=bearer(token)))["secret"]
    enabled = source.client.post(
        f"{API}/mfa/enable", json={"code": current_code(source.totp_seed)}, headers=bearer(token)
    )
    source.recovery_codes = ok(enabled)["recovery_codes"]
    invited = source.call(
        "POST", f"{API}/members/invite", json={"email": "later@acme.test", "role": "viewer"}
    )
    source.invitation = ok(invited, 201)["token"]
    hook = {"url": "http://127.0.0.1:9/coffer-hook", "events": ["secret.*"]}
    made = ok(source.call("POST", f"{API}/webhooks", json=hook), 201)
    source.webhook_id, source.webhook_secret = made["id"], made["secret"]


@pytest.fixture(scope="module")
def source(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """A populated vault on the backend under test and its backup (taken once per backend)."""
    base = tmp_path_factory.mktemp("backup-source")
    settings = cheap_settings(module_database_url, base)
    initialise_vault(settings, "acme", owner_email=OWNER_EMAIL, owner_password=PASSWORD)
    with opened(settings) as (services, client):
        owner = login(client, OWNER_EMAIL)["token"]
        made = Source(settings, client, owner, audit_keys_of(settings))
        populate(made)
        made.backup = base / "vault.coffer-backup"
        made.summary = backup_vault(settings, made.backup)
        made.rows_after_backup = count_rows_of(services.engine)
        yield made


def count_rows_of(engine: sa.Engine) -> dict[str, int]:
    """Rows per table."""
    with engine.connect() as conn:
        return count_rows(conn)


@contextmanager
def connection(url: str) -> Iterator[sa.Connection]:
    """A connection to the database at ``url`` (its engine disposed afterwards)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def rows_at(url: str) -> dict[str, int]:
    """Rows per table of the database at ``url``."""
    engine = create_engine(url)
    try:
        return count_rows_of(engine)
    finally:
        engine.dispose()


def target_settings(url: str, directory: Path) -> Settings:
    """Settings of a restore target: the vault directory (root key file) and database."""
    return Settings(
        directory=directory,
        database_url=url,
        root_key_file=directory / "root.key",
        argon2_memory_kib=1024,
        argon2_time_cost=1,
    )


@contextmanager
def empty_target(backend: str, base: Path) -> Iterator[Settings]:
    """Settings of an empty vault on ``backend``: a SQLite directory that does not exist
    yet, or a new PostgreSQL schema (skipped when PostgreSQL is not configured)."""
    base.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        directory = base / "restored"
        yield target_settings(f"sqlite:///{directory / 'coffer.db'}", directory)
        return
    with backend_database("postgresql", base) as url:
        yield target_settings(url, base / "pg-restored")


def assert_nothing_written(target: Settings) -> None:
    """No vault, no work file and no key file at the target (an empty schema may remain)."""
    if target.is_sqlite:
        left = (
            sorted(p.name for p in target.directory.iterdir()) if target.directory.exists() else []
        )
        assert left == []
        return
    assert not target.root_key_file.exists()
    engine = create_engine(target.database_url)
    try:
        assert not is_initialised(engine)
        if sa.inspect(engine).has_table("root_keys"):
            with engine.connect() as conn:
                assert conn.execute(sa.select(sa.func.count()).select_from(root_keys)).scalar() == 0
    finally:
        engine.dispose()


# -- the backup file -------------------------------------------------------------------------


def test_backup_file_is_private_and_holds_no_plaintext_token_or_key(source: Source) -> None:
    """The backup is mode 0600, starts with the archive magic, and none of the values,
    tokens, share keys, TOTP seed, recovery codes, webhook secret, password or root key
    appears in it (as text, hex or base64)."""
    mode = stat.S_IMODE(source.backup.stat().st_mode)
    assert mode == 0o600, oct(mode)
    data = source.backup.read_bytes()
    assert data.startswith(MAGIC)
    assert b"acme" not in data  # names are in the encrypted payload too, not the header
    for held in source.secrets_held():
        assert held, "every credential was captured"
        for form in (held, held.hex().encode(), base64.b64encode(held)):
            assert form not in data, held[:12]
    assert not list(source.backup.parent.glob("*.partial"))


def test_summary_counts_every_row_the_vault_held(source: Source) -> None:
    """The summary names the active generation and counts the rows as they were: the vault
    has exactly those rows afterwards, plus the one backup.created entry written after the
    snapshot."""
    summary = source.summary
    assert summary is not None
    assert (summary.generation, summary.provider) == (1, "local")
    versions = sum(len(v) for v in VERSIONS.values()) + 1
    assert summary.secret_versions == versions == summary.rows["secret_versions"]
    after = source.rows_after_backup
    assert summary.rows == {**after, "audit_log": after["audit_log"] - 1}
    assert summary.audit_entries == summary.rows["audit_log"]
    with connection(source.settings.database_url) as conn:
        last = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.metadata).order_by(audit_log.c.seq.desc())
        ).first()
    assert last is not None
    assert last.action == "backup.created"
    assert last.metadata == {
        "file": source.backup.name,
        "generation": 1,
        "audit_entries": summary.audit_entries,
        "secret_versions": versions,
    }


def test_backup_refuses_to_overwrite_a_file(source: Source, tmp_path: Path) -> None:
    """An existing destination is refused (Conflict naming it) and left as it was."""
    existing = tmp_path / "precious.txt"
    existing.write_bytes(b"keep me")
    with pytest.raises(Conflict) as raised:
        backup_vault(source.settings, existing)
    assert raised.value.message == f"{existing} already exists; refusing to overwrite it"
    assert raised.value.field == "file"
    assert existing.read_bytes() == b"keep me"


# -- restore ---------------------------------------------------------------------------------


def assert_restored(source: Source, target: Settings) -> None:
    """The restored vault holds the same rows, and its own services read every version,
    open the limited, ephemeral and shared secrets, log the member in with TOTP, know the
    webhook's secret and accept the old tokens; its audit log verifies with the original
    audit keys, before and after a new write."""
    assert source.summary is not None
    with connection(target.database_url) as conn:
        assert count_rows(conn) == source.summary.rows
        history = conn.execute(sa.select(root_keys.c.generation, root_keys.c.state)).all()
    assert [tuple(row) for row in history] == [(1, "active")]
    assert audit_keys_of(target).public.to_base64() == source.audit_keys.public.to_base64()
    with opened(target) as (services, client):
        owner = bearer(source.owner)
        report = verify_database(services.engine, source.audit_keys)
        assert report.ok, report.to_json()
        assert report.tree_size == source.summary.audit_entries
        for (project, env, key), values in VERSIONS.items():
            url = secret_url(project, env, key)
            for number, value in enumerate(values, 1):
                read = ok(client.get(url, params={"version": number}, headers=owner))
                assert (read["value"], read["version"]) == (value, number)
            assert ok(client.get(url, headers=owner))["value"] == values[-1]
        project, env, key, value = LIMITED
        limited = ok(client.get(secret_url(project, env, key), headers=owner))
        assert (limited["value"], limited["limits"]["read_count"]) == (value, 2)
        assert limited["limits"]["reads_remaining"] == 1
        eph = ok(client.get(f"{API}/ephemeral/{EPHEMERAL[0]}", headers=owner))
        assert eph["value"] == EPHEMERAL[1]
        proof = share_proof(decode_share_key(source.share_key))
        shared = ok(client.post(f"{API}/shares/{source.share_token}/reveal", json={"proof": proof}))
        assert open_share(source.share_key, base64.b64decode(shared["ciphertext"])) == SHARED
        assert ok(client.get(f"{API}/whoami", headers=bearer(source.member_token)))["name"]
        refused = client.post(f"{API}/auth/login", json={"email": MEMBER, "password": PASSWORD})
        assert refused.json()["error"]["code"] == "mfa_required"
        code = current_code(source.totp_seed, time.time() + 30)
        login(client, MEMBER, totp=code)
        login(client, MEMBER, totp=source.recovery_codes[0])
        with services.engine.connect() as conn:
            hook = find_webhook(conn, source.webhook_id)
        assert hook is not None
        assert services.webhooks.secret_of(hook) == source.webhook_secret
        ok(
            client.put(
                secret_url("app", DEV, "AFTER_RESTORE"), json={"value": "new"}, headers=owner
            )
        )
        ok(client.post(PROJECTS, json={"name": "after-restore"}, headers=owner), 201)
        report = verify_database(services.engine, source.audit_keys, services.audit.sealer)
        assert report.ok, report.to_json()
        assert report.tree_size > source.summary.audit_entries


@pytest.mark.parametrize("target_backend", ["sqlite", "postgresql"])
def test_restore_brings_back_every_secret_key_and_entry(
    source: Source, target_backend: str, tmp_path: Path
) -> None:
    """Restored into an empty SQLite directory or PostgreSQL schema with --root-key-file,
    the vault is the one backed up (see ``assert_restored``); the key file is copied into the
    new vault (mode 0600) and the summary counts what came back."""
    with empty_target(target_backend, tmp_path) as target:
        summary = restore_vault(target, source.backup, root_key_file=source.settings.root_key_file)
        assert source.summary is not None
        assert summary.rows == source.summary.rows
        assert summary.secret_versions == source.summary.secret_versions
        assert summary.audit_entries == source.summary.audit_entries
        assert (summary.generation, summary.key_id) == (1, source.summary.key_id)
        assert target.root_key_file.read_bytes() == source.settings.root_key_file.read_bytes()
        assert stat.S_IMODE(target.root_key_file.stat().st_mode) == 0o600
        if target.is_sqlite:
            assert sorted(p.name for p in target.directory.iterdir()) == ["coffer.db", "root.key"]
        assert_restored(source, target)


def test_verify_checks_the_whole_file_and_leaves_nothing(source: Source) -> None:
    """`backup verify` restores into a scratch vault that it deletes: it reports what a
    restore would bring back and changes nothing in the vault."""
    before = rows_at(source.settings.database_url)
    summary = verify_backup(source.settings, source.backup)
    assert source.summary is not None
    assert (summary.rows, summary.secret_versions) == (
        source.summary.rows,
        source.summary.secret_versions,
    )
    assert rows_at(source.settings.database_url) == before


def test_restore_into_a_vault_is_refused_and_changes_nothing(source: Source) -> None:
    """Restoring over an existing vault is a Conflict; its rows stay as they were."""
    before = rows_at(source.settings.database_url)
    with pytest.raises(Conflict) as raised:
        restore_vault(source.settings, source.backup)
    if source.settings.is_sqlite:
        database = source.settings.directory / "coffer.db"
        assert (
            raised.value.message
            == f"{database} already holds a vault; restore needs an empty vault"
        )
        assert not list(source.settings.directory.glob("*.restoring*"))
    else:
        assert raised.value.message == "the target database already holds a vault"
    assert rows_at(source.settings.database_url) == before


@pytest.mark.parametrize("target_backend", ["sqlite", "postgresql"])
def test_restore_with_another_root_key_names_the_key_it_needs(
    source: Source, target_backend: str, tmp_path: Path
) -> None:
    """With another vault's root key file the restore is refused naming the generation,
    provider and key id the backup needs; no database, work file or key file is left."""
    stranger = tmp_path / "stranger"
    write_root_key_file(stranger / "root.key", RootKey.generate())  # another vault's key
    with empty_target(target_backend, tmp_path / "t") as target:
        with pytest.raises(WrongRootKey) as raised:
            restore_vault(target, source.backup, root_key_file=stranger / "root.key")
        assert source.summary is not None
        assert raised.value.message == (
            f"this backup needs root key generation 1 (local, key {source.summary.key_id}): "
            "the root key does not match this vault (generation 1: key check "
            f"value mismatch); check COFFER_ROOT_KEY or the root key file {stranger / 'root.key'}"
        )
        assert_nothing_written(target)
        with pytest.raises(ConfigError) as missing:
            restore_vault(target, source.backup)  # no key at all: the target has none
        assert missing.value.message.endswith(MISSING_KEY.format(path=target.root_key_file))
        assert missing.value.message.startswith("this backup needs root key generation 1")
        assert_nothing_written(target)


def edit_header(data: bytes, old: bytes, new: bytes) -> bytes:
    """The file with ``old`` replaced by ``new`` in its header, the length field updated
    (the JSON stays valid)."""
    end = header_end(data)
    header = data[len(MAGIC) + 4 : end].replace(old, new, 1)
    assert old in data[:end]
    return MAGIC + len(header).to_bytes(4, "big") + header + data[end:]


def header_end(data: bytes) -> int:
    """The offset of the first chunk."""
    return len(MAGIC) + 4 + int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "big")


TAMPERING = {
    "cut in the magic": (lambda d: d[:5], "it is not a coffer backup (wrong magic bytes)"),
    "cut in the header": (lambda d: d[:40], "it ends inside its header (truncated)"),
    "cut after the header": (
        lambda d: d[: header_end(d)],
        "it ends before its last chunk (truncated)",
    ),
    "cut in the chunk": (lambda d: d[: header_end(d) + 20], "it ends inside chunk 0 (truncated)"),
    "cut by one byte": (lambda d: d[:-1], "it ends inside chunk 0 (truncated)"),
    "byte flipped in the chunk": (
        lambda d: d[:-40] + bytes([d[-40] ^ 0x20]) + d[-39:],
        "chunk 0 fails its integrity check (edited or reordered)",
    ),
    "header value edited": (
        lambda d: edit_header(d, b'"coffer_version":"', b'"coffer_version":"9'),
        "chunk 0 fails its integrity check (edited or reordered)",
    ),
    "byte appended": (lambda d: d + b"\n", "it has data after its last chunk (appended)"),
}


@pytest.mark.parametrize("attack", sorted(TAMPERING))
def test_an_edited_or_cut_file_is_refused_and_nothing_is_written(
    source: Source, attack: str, tmp_path: Path
) -> None:
    """A cut, edited or extended backup is refused as InvalidInput on field ``file`` with
    the reason, and the SQLite target directory is left empty; the intact file then
    restores into it (a failed restore leaves nothing in the way)."""
    edit, reason = TAMPERING[attack]
    data = source.backup.read_bytes()
    chunk_length = int.from_bytes(data[header_end(data) + 1 : header_end(data) + 5], "big")
    assert header_end(data) + 5 + chunk_length == len(data), "one chunk: the cuts assume it"
    bad = tmp_path / "bad.coffer-backup"
    bad.write_bytes(edit(data))
    with empty_target("sqlite", tmp_path) as target:
        with pytest.raises(InvalidInput) as raised:
            restore_vault(target, bad, root_key_file=source.settings.root_key_file)
        assert raised.value.message == f"the backup file is not valid: {reason}"
        assert raised.value.field == "file"
        assert_nothing_written(target)


def test_an_edited_file_restores_nothing_into_postgresql(source: Source, tmp_path: Path) -> None:
    """Into PostgreSQL an edited chunk is refused after the schema exists: the transaction
    rolls back (no vault, no key file) and the intact file restores afterwards."""
    data = source.backup.read_bytes()
    bad = tmp_path / "bad.coffer-backup"
    bad.write_bytes(data[:-40] + bytes([data[-40] ^ 0x20]) + data[-39:])
    with empty_target("postgresql", tmp_path) as target:
        key = source.settings.root_key_file
        with pytest.raises(InvalidInput) as raised:
            restore_vault(target, bad, root_key_file=key)
        assert raised.value.message == (
            "the backup file is not valid: chunk 0 fails its integrity check (edited or reordered)"
        )
        assert_nothing_written(target)
        restore_vault(target, source.backup, root_key_file=key)
        assert source.summary is not None
        assert rows_at(target.database_url) == source.summary.rows


def test_an_edited_archive_key_is_an_edited_file_not_a_wrong_key(
    source: Source, tmp_path: Path
) -> None:
    """The archive key sealed in the header, edited by one hex digit, is refused as an
    edited file (InvalidInput on ``file``): the configured root key passed its check value."""
    data = source.backup.read_bytes()
    at = data.index(b'"archive_key":"') + len(b'"archive_key":"') + 30
    digit = b"1" if data[at : at + 1] != b"1" else b"2"
    bad = tmp_path / "bad.coffer-backup"
    bad.write_bytes(data[:at] + digit + data[at + 1 :])
    with empty_target("sqlite", tmp_path) as target:
        with pytest.raises(InvalidInput) as raised:
            restore_vault(target, bad, root_key_file=source.settings.root_key_file)
        assert raised.value.field == "file"


def test_a_missing_or_foreign_file_is_refused(source: Source, tmp_path: Path) -> None:
    """A path that does not exist, or a file that is no backup, is InvalidInput on
    ``file`` naming it; nothing is written."""
    missing = tmp_path / "nope.coffer-backup"
    with empty_target("sqlite", tmp_path) as target:
        with pytest.raises(InvalidInput) as raised:
            restore_vault(target, missing, root_key_file=source.settings.root_key_file)
        assert raised.value.message == f"cannot read {missing}: No such file or directory"
        assert raised.value.field == "file"
        assert_nothing_written(target)
        with pytest.raises(InvalidInput) as raised:
            verify_backup(source.settings, source.settings.root_key_file)
        assert raised.value.message == (
            "the backup file is not valid: it is not a coffer backup (wrong magic bytes)"
        )


def test_restore_never_leaves_a_vault_its_key_file_cannot_open(
    source: Source, tmp_path: Path
) -> None:
    """Restoring with --root-key-file into a directory holding another key file refuses,
    naming the file, and writes nothing (a vault its own key file cannot open would be the
    alternative)."""
    with empty_target("sqlite", tmp_path) as target:
        target.directory.mkdir(mode=0o700)
        write_root_key_file(target.root_key_file, RootKey.generate())  # another vault's key
        with pytest.raises(Conflict) as refused:
            restore_vault(target, source.backup, root_key_file=source.settings.root_key_file)
        assert refused.value.message == (
            f"{target.root_key_file} holds another root key; remove it or leave out --root-key-file"
        )
        assert refused.value.field == "root_key_file"
        assert sorted(p.name for p in target.directory.iterdir()) == ["root.key"]


# -- consistency under load, rotations -------------------------------------------------------


@dataclass
class Writer:
    """A thread writing new secret versions over HTTP until stopped."""

    client: TestClient
    owner: str
    written: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Writes K0..K4 in turn, counting successes."""
        while not self.stop.is_set():
            url = secret_url("app", DEV, f"K{self.written % 5}")
            response = self.client.put(
                url, json={"value": f"load-{self.written}"}, headers=bearer(self.owner)
            )
            if response.status_code != 200:
                self.errors.append(response.text)
                return
            self.written += 1

    def wait_for(self, count: int) -> None:
        """Waits until ``count`` versions were written."""
        deadline = time.monotonic() + 20
        while self.written < count and time.monotonic() < deadline and not self.errors:
            time.sleep(0.005)
        assert self.written >= count, self.errors


def written_versions(engine: sa.Engine) -> set[tuple[str, int]]:
    """(key, version) of every stored version of app/development."""
    query = (
        sa.select(secrets.c.key, secret_versions.c.version)
        .join(secrets, secrets.c.id == secret_versions.c.secret_id)
        .join(environments, environments.c.id == secrets.c.environment_id)
        .join(projects, projects.c.id == environments.c.project_id)
        .where(projects.c.name == "app", environments.c.name == DEV)
    )
    with engine.connect() as conn:
        return {(str(key), int(version)) for key, version in conn.execute(query)}


def audited_writes(engine: sa.Engine) -> set[tuple[str, int]]:
    """(key, version) of every secret.created/secret.updated entry in the log."""
    query = sa.select(audit_log.c.key, audit_log.c.metadata).where(
        audit_log.c.action.in_(("secret.created", "secret.updated"))
    )
    with engine.connect() as conn:
        return {(str(key), int(meta["version"])) for key, meta in conn.execute(query)}


def test_backup_during_writes_restores_a_consistent_vault(
    settings: Settings, tmp_path: Path
) -> None:
    """While a thread keeps writing, the backup takes one snapshot: the restored vault has
    exactly the versions its audit log records (each key numbered 1..n), every version
    decrypts, and the log verifies with the vault's audit keys."""
    initialise_vault(settings, "acme", owner_email=OWNER_EMAIL, owner_password=PASSWORD)
    keys = audit_keys_of(settings)
    with opened(settings) as (_services, client):
        owner = login(client, OWNER_EMAIL)["token"]
        ok(client.post(PROJECTS, json={"name": "app"}, headers=bearer(owner)), 201)
        writer = Writer(client, owner)
        thread = threading.Thread(target=writer.run)
        thread.start()
        try:
            writer.wait_for(20)
            started = writer.written
            summary = backup_vault(settings, tmp_path / "busy.coffer-backup")
            finished = writer.written
            writer.wait_for(finished + 10)
        finally:
            writer.stop.set()
            thread.join(timeout=20)
    assert not writer.errors
    assert finished > started, "no write happened while the backup ran"
    with empty_target("sqlite", tmp_path / "t") as target:
        restore_vault(target, tmp_path / "busy.coffer-backup", root_key_file=settings.root_key_file)
        engine = create_engine(target.database_url)
        try:
            versions = written_versions(engine)
            assert started <= len(versions) == summary.secret_versions <= finished
            assert versions == audited_writes(engine)
            per_key: dict[str, list[int]] = {}
            for key, version in versions:
                per_key.setdefault(key, []).append(version)
            assert all(sorted(v) == list(range(1, len(v) + 1)) for v in per_key.values())
            report = verify_database(engine, keys)
            assert report.ok, report.to_json()
        finally:
            engine.dispose()


def test_backup_during_a_root_rotation_is_refused(settings: Settings, tmp_path: Path) -> None:
    """While a root rotation is pending the backup is a Conflict telling how to finish it;
    no file (nor partial file) is left and no backup.created is recorded. Once the rotation
    is finished the backup works and restores with the new key file."""
    initialise_vault(settings, "acme", owner_email=OWNER_EMAIL, owner_password=PASSWORD)
    destination = tmp_path / "during.coffer-backup"
    with operator_vault(settings) as vault:
        rotation = RootRotation(
            vault.engine, vault.opened.keks, vault.providers, vault.opened.audit_keys
        )
        pending = rotation.start()
        with pytest.raises(Conflict) as raised:
            backup_vault(settings, destination)
        assert raised.value.message == (
            "a root rotation is under way; finish it (`coffer rotate-root`) first"
        )
        assert sorted(tmp_path.iterdir()) == [tmp_path / "vault"]
        with vault.engine.connect() as conn:
            actions = conn.execute(sa.select(audit_log.c.action)).scalars().all()
        assert "backup.created" not in actions
        while rotation.step(pending):
            pass
        assert rotation.finish(pending) is not None
    summary = backup_vault(settings, destination)
    assert summary.generation == 2
    with empty_target("sqlite", tmp_path / "t") as target:
        restored = restore_vault(target, destination, root_key_file=settings.root_key_file)
        assert restored.generation == 2


def rotate_project_key(client: TestClient, owner: str, project: str) -> None:
    """Rotates the project's data key through the API, two versions per step."""
    url = f"{PROJECTS}/{project}/key-rotation"
    ok(client.post(url, headers=bearer(owner)))
    cursor = None
    for _ in range(100):
        step = ok(
            client.post(f"{url}/steps", json={"batch": 2, "cursor": cursor}, headers=bearer(owner))
        )
        if step["done"]:
            return
        cursor = step["cursor"]
    raise AssertionError("the rotation never finished")


def rotate_root(settings: Settings) -> None:
    """Runs a whole root rotation as `coffer rotate-root` does."""
    with operator_vault(settings) as vault:
        rotation = RootRotation(
            vault.engine, vault.opened.keks, vault.providers, vault.opened.audit_keys
        )
        pending = rotation.start()
        while rotation.step(pending, 3):
            pass
        assert rotation.finish(pending) is not None


def test_a_vault_after_rotate_key_and_rotate_root_restores_and_works(
    settings: Settings, tmp_path: Path
) -> None:
    """After a data-key rotation and a root rotation, the backup opens with the new root
    key file: every version reads, the old generation is kept as retired history, the audit
    log verifies with the public key the vault had before the rotations, and new writes
    work. A backup taken before the rotations needs the old key file, and names it."""
    initialise_vault(settings, "acme", owner_email=OWNER_EMAIL, owner_password=PASSWORD)
    keys = audit_keys_of(settings)
    old_key = tmp_path / "generation-1.key"
    shutil.copy(settings.root_key_file, old_key)
    values = {f"K{n}": [f"rot-{n}-{v}" for v in range(3)] for n in range(3)}
    with opened(settings) as (_services, client):
        owner = login(client, OWNER_EMAIL)["token"]
        ok(client.post(PROJECTS, json={"name": "app"}, headers=bearer(owner)), 201)
        for key, versions in values.items():
            for value in versions[:2]:
                ok(
                    client.put(
                        secret_url("app", DEV, key), json={"value": value}, headers=bearer(owner)
                    )
                )
        before = backup_vault(settings, tmp_path / "before.coffer-backup")
        rotate_project_key(client, owner, "app")
        rotate_root(settings)
        for key, versions in values.items():
            ok(
                client.put(
                    secret_url("app", DEV, key), json={"value": versions[2]}, headers=bearer(owner)
                )
            )
    assert settings.root_key_file.read_bytes() != old_key.read_bytes()
    after = backup_vault(settings, tmp_path / "after.coffer-backup")
    assert (before.generation, after.generation) == (1, 2)
    with empty_target("sqlite", tmp_path / "t") as target:
        restore_vault(
            target, tmp_path / "after.coffer-backup", root_key_file=settings.root_key_file
        )
        with connection(target.database_url) as conn:
            history = conn.execute(
                sa.select(root_keys.c.generation, root_keys.c.state).order_by(
                    root_keys.c.generation
                )
            ).all()
        assert [tuple(row) for row in history] == [(1, "retired"), (2, "active")]
        with opened(target) as (services, client):
            for key, versions in values.items():
                for number, value in enumerate(versions, 1):
                    read = client.get(
                        secret_url("app", DEV, key),
                        params={"version": number},
                        headers=bearer(owner),
                    )
                    assert ok(read)["value"] == value
            ok(
                client.put(
                    secret_url("app", DEV, "NEW"), json={"value": "n"}, headers=bearer(owner)
                )
            )
            projects_listed = ok(client.get(PROJECTS, headers=bearer(owner)))["projects"]
            assert [p["key_version"] for p in projects_listed] == [2]
            report = verify_database(services.engine, keys, services.audit.sealer)
            assert report.ok, report.to_json()
    with empty_target("sqlite", tmp_path / "old") as target:
        with pytest.raises(WrongRootKey) as raised:
            restore_vault(
                target, tmp_path / "before.coffer-backup", root_key_file=settings.root_key_file
            )
        assert raised.value.message.startswith(
            f"this backup needs root key generation 1 (local, key {before.key_id}): "
        )
        assert_nothing_written(target)
        restored = restore_vault(target, tmp_path / "before.coffer-backup", root_key_file=old_key)
        assert restored.secret_versions == 6


def test_a_backup_taken_mid_key_rotation_restores_and_the_rotation_finishes(
    settings: Settings, tmp_path: Path
) -> None:
    """A backup taken while a project's data-key rotation is half done holds both data keys:
    every version reads in the restored vault, whose status shows the rotation under way,
    and the rotation then finishes there (old key destroyed, key.rotated recorded)."""
    initialise_vault(settings, "acme", owner_email=OWNER_EMAIL, owner_password=PASSWORD)
    values = [f"mid-{n}-Y5tG8hB1nJ" for n in range(5)]
    with opened(settings) as (_services, client):
        owner = login(client, OWNER_EMAIL)["token"]
        ok(client.post(PROJECTS, json={"name": "app"}, headers=bearer(owner)), 201)
        for value in values:
            ok(
                client.put(
                    secret_url("app", DEV, "K"), json={"value": value}, headers=bearer(owner)
                )
            )
        url = f"{PROJECTS}/app/key-rotation"
        ok(client.post(url, headers=bearer(owner)))
        step = ok(
            client.post(f"{url}/steps", json={"batch": 2, "cursor": None}, headers=bearer(owner))
        )
        assert (step["reencrypted"], step["done"]) == (2, False)
    backup_vault(settings, tmp_path / "mid.coffer-backup")
    with empty_target("sqlite", tmp_path / "t") as target:
        restore_vault(target, tmp_path / "mid.coffer-backup", root_key_file=settings.root_key_file)
        with opened(target) as (services, client):
            status = ok(client.get(url, headers=bearer(owner)))
            assert (status["key_version"], status["running"], status["remaining_versions"]) == (
                2,
                True,
                3,
            )
            for number, value in enumerate(values, 1):
                read = client.get(
                    secret_url("app", DEV, "K"), params={"version": number}, headers=bearer(owner)
                )
                assert ok(read)["value"] == value
            rotate_project_key(client, owner, "app")
            status = ok(client.get(url, headers=bearer(owner)))
            assert (status["running"], status["remaining_versions"]) == (False, 0)
            read = client.get(
                secret_url("app", DEV, "K"), params={"version": 1}, headers=bearer(owner)
            )
            assert ok(read)["value"] == values[0]
            with services.engine.connect() as conn:
                rotated = (
                    conn.execute(
                        sa.select(audit_log.c.metadata).where(audit_log.c.action == "key.rotated")
                    )
                    .scalars()
                    .all()
                )
            assert rotated == [{"key_version": 2, "destroyed_key_versions": "1", "versions": 5}]


# -- a root key in an HSM --------------------------------------------------------------------


def provider_settings(database_url: str, directory: Path, env: dict[str, str]) -> Settings:
    """Settings as ``coffer`` builds them from the COFFER_* variables ``env`` for a vault in
    ``directory`` on ``database_url`` (cheap Argon2)."""
    variables = {"COFFER_DATABASE_URL": database_url, **env}
    return Settings.from_env(variables, directory=directory).with_overrides(
        argon2_memory_kib=1024, argon2_time_cost=1
    )


def test_an_hsm_rooted_vault_backs_up_and_restores_through_the_token(
    database_url: str, tmp_path: Path, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """A vault whose root key is an AES key in a SoftHSM2 token: the backup holds the KEK
    only wrapped by the HSM, restores with the same token settings (no key file is made) and
    serves every version; with a wrong PIN the restore names the key it needs and the
    setting, writing nothing."""
    env = softhsm_token.env(hsm_key_label)
    settings = provider_settings(database_url, tmp_path / "hsm-vault", env)
    token = initialise_vault(settings).token
    with opened(settings) as (services, client):
        ok(client.post(PROJECTS, json={"name": "app"}, headers=bearer(token)), 201)
        for value in ("hsm-v1-Z8xC4vB6nM", "hsm-v2-A1sD3fG5hJ"):
            ok(
                client.put(
                    secret_url("app", DEV, "K"), json={"value": value}, headers=bearer(token)
                )
            )
        kek = open_vault(services.engine, RootProviders(settings)).keks.kek(1, None)
    summary = backup_vault(settings, tmp_path / "hsm.coffer-backup")
    assert (summary.provider, summary.key_id) == ("pkcs11", hsm_key_label)
    data = (tmp_path / "hsm.coffer-backup").read_bytes()
    assert kek._material not in data and kek._material.hex().encode() not in data
    assert b"hsm-v1-Z8xC4vB6nM" not in data

    with empty_target("sqlite", tmp_path / "wrong-pin") as target:
        wrong = provider_settings(
            target.database_url,
            target.directory,
            softhsm_token.env(hsm_key_label, COFFER_PKCS11_PIN="0000-wrong"),
        )
        with pytest.raises(ConfigError) as raised:
            restore_vault(wrong, tmp_path / "hsm.coffer-backup")
        assert raised.value.message == (
            f"this backup needs root key generation 1 (pkcs11, key {hsm_key_label}): "
            f"COFFER_PKCS11_PIN is wrong for token {softhsm_token.label!r}"
        )
        assert_nothing_written(target)

    with empty_target("sqlite", tmp_path / "t") as target:
        restored = provider_settings(target.database_url, target.directory, env)
        restore_vault(restored, tmp_path / "hsm.coffer-backup")
        assert sorted(p.name for p in target.directory.iterdir()) == ["coffer.db"]
        with opened(restored) as (_services, client):
            url = secret_url("app", DEV, "K")
            first = client.get(url, params={"version": 1}, headers=bearer(token))
            assert ok(first)["value"] == "hsm-v1-Z8xC4vB6nM"
            assert ok(client.get(url, headers=bearer(token)))["value"] == "hsm-v2-A1sD3fG5hJ"
