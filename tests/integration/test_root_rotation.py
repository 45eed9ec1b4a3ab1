"""Rotating the vault's root key in the operator's process (``services.root_rotation``): a new
local key, a move from the local key to an HSM and on to AWS KMS, each leaving every secret,
MFA seed, webhook secret and ephemeral secret readable by a freshly opened vault, the audit
public key unchanged and the log verifying; resuming after a crash; blobs sealed under the old
generation while a rotation runs; and the status and history a user sees."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.api.app import create_app
from coffer.audit.checkpoints import Checkpoint
from coffer.bootstrap import build_services, initialise_vault
from coffer.bootstrap.operator import operator_vault
from coffer.config import Settings
from coffer.crypto.keys import generation_prefix
from coffer.crypto.providers.local import LocalRootProvider, next_key_file
from coffer.crypto.totp import current_code
from coffer.domain.errors import ConfigError, WrongRootKey
from coffer.domain.models import CallContext
from coffer.domain.root_keys import ProviderName, RootKeyRecord, RootKeyState
from coffer.services.container import Services
from coffer.services.root_rotation import RootRotation, root_key_status
from coffer.storage import webhook_store
from coffer.storage.database import create_engine
from coffer.storage.tables import (
    audit_log,
    data_keys,
    ephemeral_secrets,
    users,
    webhooks,
)
from coffer.storage.tables import root_keys as root_keys_table
from tests.conftest import backend_database
from tests.integration.api_helpers import get_value, put_secret
from tests.integration.team_helpers import API, OWNER_EMAIL, PASSWORD, bearer, login

if TYPE_CHECKING:
    from tests.provider_fixtures import KmsServer, SoftHsmToken

pytest_plugins = ("tests.provider_fixtures",)

HOOK_URL = "http://127.0.0.1:9/root-rotation"
# The blobs a filled vault holds under its KEK: the project's data key, the owner's MFA
# seed, the webhook's signing secret and the ephemeral secret.
SEALED_BLOBS = 4
OTHER_SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # a TOTP seed that is not the owner's


def vault_settings(
    database_url: str, directory: Path, env: dict[str, str] | None = None
) -> Settings:
    """Settings as ``coffer`` reads them from ``env`` for the vault in ``directory`` (cheap
    Argon2; outbound calls allowed to 127.0.0.1 for the webhook)."""
    variables = {"COFFER_DATABASE_URL": database_url, **(env or {})}
    return Settings.from_env(variables, directory=directory).with_overrides(
        argon2_memory_kib=1024, argon2_time_cost=1, outbound_allow=("127.0.0.1",)
    )


@pytest.fixture
def local(database_url: str, tmp_path: Path) -> Settings:
    """A vault under a local key file in ``tmp_path/vault`` on the backend under test."""
    return vault_settings(database_url, tmp_path / "vault")


@pytest.fixture
def local_sqlite(tmp_path: Path) -> Settings:
    """A vault under a local key file on SQLite (where the database backend plays no part)."""
    directory = tmp_path / "vault"
    return vault_settings(f"sqlite:///{directory / 'coffer.db'}", directory)


@contextmanager
def served(settings: Settings) -> Iterator[tuple[Services, TestClient]]:
    """The vault opened as a new server process opens it, served over HTTP."""
    services = build_services(settings)
    try:
        yield services, TestClient(create_app(services, max_body_bytes=settings.max_body_bytes))
    finally:
        services.close()


@dataclass
class Contents:
    """What a filled vault holds, to check after a rotation."""

    token: str
    mfa_seed: str
    webhook_id: str
    webhook_secret: str
    public_key: bytes
    checkpoint: Checkpoint | None


def owner_context(services: Services, token: str) -> CallContext:
    """A call context for the owner's token."""
    return CallContext(actor=services.auth.authenticate(token), source_ip="127.0.0.1")


def fill(settings: Settings) -> Contents:
    """Initialises acme (owner with a password) and stores one of every KEK-sealed thing: a
    project's secrets (its data key), the owner's MFA seed, a webhook's signing secret and
    an ephemeral secret; returns them with the audit public key and a signed checkpoint."""
    initialise_vault(settings, "acme", owner_email=OWNER_EMAIL, owner_password=PASSWORD)
    with served(settings) as (services, client):
        token = login(client, OWNER_EMAIL)["token"]
        client.headers["Authorization"] = f"Bearer {token}"
        assert client.post(f"{API}/projects", json={"name": "app"}).status_code == 201
        put_secret(client, "app", "production", "db/password", "pw-1")
        put_secret(client, "app", "production", "db/password", "pw-2")
        put_secret(client, "app", "staging", "api/key", "staging-key")
        seed = client.post(f"{API}/mfa/setup").json()["secret"]
        enabled = client.post(f"{API}/mfa/enable", json={"code": current_code(seed)})
        assert enabled.status_code == 200, enabled.text
        hook = client.post(f"{API}/webhooks", json={"url": HOOK_URL, "events": ["secret.*"]})
        assert hook.status_code == 201, hook.text
        made = client.post(f"{API}/ephemeral", json={"key": "eph/one", "value": "ephemeral-value"})
        assert made.status_code == 201, made.text
        report = services.audit.verify(owner_context(services, token))
        assert report.ok, report.problems
        return Contents(
            token=token,
            mfa_seed=seed,
            webhook_id=hook.json()["id"],
            webhook_secret=hook.json()["secret"],
            public_key=services.audit.public_key.raw,
            checkpoint=report.latest,
        )


def assert_everything_opens(settings: Settings, contents: Contents) -> None:
    """A new process opens the vault: every secret version reads back, the owner logs in
    with password and TOTP, the webhook's secret and the ephemeral secret open, the audit
    public key is the one from before and the whole log verifies (still containing the
    checkpoint signed before)."""
    with served(settings) as (services, client):
        client.headers["Authorization"] = f"Bearer {contents.token}"
        assert get_value(client, "app", "production", "db/password", version=1) == "pw-1"
        assert get_value(client, "app", "production", "db/password") == "pw-2"
        assert get_value(client, "app", "staging", "api/key") == "staging-key"
        eph = client.get(f"{API}/ephemeral/eph/one")
        assert (eph.status_code, eph.json().get("value")) == (200, "ephemeral-value"), eph.text
        # A TOTP code is accepted once: forget the step used last, so that each check can
        # log in with the current code.
        with services.engine.begin() as conn:
            conn.execute(sa.update(users).values(mfa_last_step=None))
        credentials = {"email": OWNER_EMAIL, "password": PASSWORD}
        wrong = client.post(
            f"{API}/auth/login", json={**credentials, "totp": current_code(OTHER_SEED)}
        )
        assert wrong.status_code == 401, wrong.text
        logged_in = client.post(
            f"{API}/auth/login", json={**credentials, "totp": current_code(contents.mfa_seed)}
        )
        assert logged_in.status_code == 200, logged_in.text
        with services.engine.connect() as conn:
            row = webhook_store.find_webhook(conn, contents.webhook_id)
        assert row is not None
        assert services.webhooks.secret_of(row) == contents.webhook_secret
        assert services.audit.public_key.raw == contents.public_key
        report = services.audit.verify(
            owner_context(services, contents.token), known=contents.checkpoint
        )
        assert report.ok, report.problems
        assert report.entries > 0


def rotation_of(vault: Any) -> RootRotation:
    """The root rotation of an operator vault."""
    return RootRotation(vault.engine, vault.opened.keks, vault.providers, vault.opened.audit_keys)


def rotate(settings: Settings, batch: int = 2) -> RootKeyRecord:
    """Runs a whole root rotation to COFFER_ROOT_PROVIDER as ``coffer rotate-root`` does;
    returns the new active generation."""
    with operator_vault(settings) as vault:
        rotation = rotation_of(vault)
        pending = rotation.start()
        while rotation.step(pending, batch):
            pass
        done = rotation.finish(pending)
    assert done is not None
    return done


def generations(settings: Settings) -> list[RootKeyRecord]:
    """The stored root-key generations, oldest first."""
    engine = create_engine(settings.database_url)
    try:
        return list(root_key_status(engine).history)
    finally:
        engine.dispose()


def sealed_prefixes(settings: Settings) -> list[bytes]:
    """The first 5 bytes of every KEK-sealed blob in the vault."""
    engine = create_engine(settings.database_url)
    columns = (
        data_keys.c.wrapped_key,
        users.c.mfa_seed,
        webhooks.c.secret_sealed,
        ephemeral_secrets.c.ciphertext,
    )
    try:
        with engine.connect() as conn:
            found = []
            for column in columns:
                for (blob,) in conn.execute(sa.select(column).where(column.is_not(None))):
                    found.append(bytes(blob)[:5])
            return found
    finally:
        engine.dispose()


def root_rotated_entries(settings: Settings) -> list[dict[str, Any]]:
    """The ``key.root_rotated`` audit entries, oldest first."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(audit_log)
                .where(audit_log.c.action == "key.root_rotated")
                .order_by(audit_log.c.seq)
            )
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def summary(records: list[RootKeyRecord]) -> list[tuple[int, str, str]]:
    """(generation, state, provider) of each record."""
    return [(r.generation, r.state.value, r.provider.value) for r in records]


# --- local to local -------------------------------------------------------------------------


def test_local_rotation_replaces_the_key_file_and_everything_still_opens(
    local: Settings,
) -> None:
    """A local rotation writes a new key file (mode 0600, no ``.next`` left), every sealed
    blob moves to generation 2, a new process opens everything, the old key opens nothing,
    and ``key.root_rotated`` is recorded by the system."""
    contents = fill(local)
    old_key = local.root_key_file.read_bytes()
    done = rotate(local)
    assert (done.generation, done.state, done.provider) == (
        2,
        RootKeyState.ACTIVE,
        ProviderName.LOCAL,
    )
    assert local.root_key_file.read_bytes() != old_key
    assert local.root_key_file.stat().st_mode & 0o777 == 0o600
    assert not next_key_file(local.root_key_file).exists()
    assert sealed_prefixes(local) == [generation_prefix(2)] * SEALED_BLOBS
    assert summary(generations(local)) == [(1, "retired", "local"), (2, "active", "local")]
    assert_everything_opens(local, contents)
    kept = local.root_key_file.with_name("old-root.key")
    kept.write_bytes(old_key)
    kept.chmod(0o600)
    with pytest.raises(WrongRootKey) as raised:
        build_services(local.with_overrides(root_key_file=kept))
    assert raised.value.message == (
        "the root key does not match this vault (generation 2: key check value mismatch); "
        f"check COFFER_ROOT_KEY or the root key file {kept}"
    )
    [entry] = root_rotated_entries(local)
    assert (entry["actor_id"], entry["org_id"], entry["result"]) == (None, None, "success")
    assert entry["metadata"] == {
        "generation": 2,
        "provider": "local",
        "key_id": done.key_id,
        "previous_generation": 1,
        "previous_provider": "local",
    }


def test_local_rotation_is_refused_for_a_key_from_the_environment(
    tmp_path: Path,
) -> None:
    """With the root key in COFFER_ROOT_KEY a local rotation cannot start: the message says
    why and nothing is recorded."""
    key = "A" * 43 + "="
    directory = tmp_path / "vault"
    settings = vault_settings(
        f"sqlite:///{directory / 'coffer.db'}", directory, {"COFFER_ROOT_KEY": key}
    )
    initialise_vault(settings)
    with operator_vault(settings) as vault, pytest.raises(ConfigError) as raised:
        rotation_of(vault).start()
    assert raised.value.message == (
        "the root key comes from COFFER_ROOT_KEY, which coffer cannot change; keep it in a "
        "key file (COFFER_ROOT_KEY_FILE) to rotate it"
    )
    assert summary(generations(settings)) == [(1, "active", "local")]


# --- moving between providers ---------------------------------------------------------------


def test_local_to_hsm_to_kms_moves_everything_and_needs_only_the_current_root(
    local: Settings,
    softhsm_token: SoftHsmToken,
    hsm_key_label: str,
    kms: KmsServer,
    kms_key: str,
) -> None:
    """COFFER_ROOT_PROVIDER=pkcs11 makes rotate-root move a local vault into the HSM (a new
    key labelled ``<label>-g2``), then awskms moves it on to KMS; after each move a new
    process opens everything with the new root alone (the local key file deleted, then no
    HSM settings at all), and the history shows each generation retired in turn."""
    contents = fill(local)
    hsm = vault_settings(local.database_url, local.directory, softhsm_token.env(hsm_key_label))
    done = rotate(hsm)
    assert (done.generation, done.provider, done.key_id) == (
        2,
        ProviderName.PKCS11,
        f"{hsm_key_label}-g2",
    )
    assert f"{hsm_key_label}-g2" in softhsm_token.aes_key_labels()
    local.root_key_file.unlink()
    assert_everything_opens(hsm, contents)

    to_kms = vault_settings(
        local.database_url,
        local.directory,
        {**softhsm_token.env(hsm_key_label), **kms.env(kms_key)},
    )
    done = rotate(to_kms)
    assert (done.generation, done.provider, done.key_id) == (3, ProviderName.AWSKMS, kms_key)
    kms_only = vault_settings(local.database_url, local.directory, kms.env(kms_key))
    assert_everything_opens(kms_only, contents)
    assert sealed_prefixes(kms_only) == [generation_prefix(3)] * SEALED_BLOBS

    history = generations(kms_only)
    assert summary(history) == [
        (1, "retired", "local"),
        (2, "retired", "pkcs11"),
        (3, "active", "awskms"),
    ]
    for record in history[:2]:
        assert (record.wrapped_kek, record.audit_keys_sealed) == (None, None)
        assert record.retired_at is not None and record.activated_at is not None
    assert history[2].retired_at is None
    assert [
        (e["metadata"]["previous_provider"], e["metadata"]["provider"])
        for e in root_rotated_entries(kms_only)
    ] == [("local", "pkcs11"), ("pkcs11", "awskms")]


def test_a_target_provider_that_cannot_make_a_key_starts_nothing(
    local_sqlite: Settings, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """A rotation into the HSM with a wrong PIN fails naming COFFER_PKCS11_PIN; no pending
    generation is recorded and the vault opens as before."""
    contents = fill(local_sqlite)
    wrong = vault_settings(
        local_sqlite.database_url,
        local_sqlite.directory,
        softhsm_token.env(hsm_key_label, COFFER_PKCS11_PIN="0000-wrong"),
    )
    with operator_vault(wrong) as vault, pytest.raises(ConfigError) as raised:
        rotation_of(vault).start()
    assert raised.value.message == f"COFFER_PKCS11_PIN is wrong for token {softhsm_token.label!r}"
    assert summary(generations(local_sqlite)) == [(1, "active", "local")]
    assert sealed_prefixes(local_sqlite) == [generation_prefix(1)] * SEALED_BLOBS
    assert_everything_opens(local_sqlite, contents)


# --- crashes and concurrent writers ---------------------------------------------------------


def test_a_new_rotation_object_resumes_the_pending_generation(local: Settings) -> None:
    """After one step, a new process (a crash in between) resumes the same pending
    generation instead of making another; the status shows it and what is left, and the
    rotation then finishes."""
    contents = fill(local)
    with operator_vault(local) as vault:
        first = rotation_of(vault)
        pending = first.start()
        assert first.step(pending, 1) == 1
        assert first.remaining(pending) == SEALED_BLOBS - 1
    engine = create_engine(local.database_url)
    status = root_key_status(engine)
    engine.dispose()
    assert status.pending is not None
    assert (status.active.generation, status.pending.generation, status.remaining) == (
        1,
        2,
        SEALED_BLOBS - 1,
    )
    assert next_key_file(local.root_key_file).exists()
    with operator_vault(local) as vault:
        again = rotation_of(vault)
        resumed = again.start()
        assert (resumed.generation, resumed.key_id, resumed.state) == (
            2,
            pending.key_id,
            RootKeyState.PENDING,
        )
        assert again.finish(resumed) is None
        assert again.step(resumed, 100) == SEALED_BLOBS - 1
        assert again.step(resumed, 100) == 0
        done = again.finish(resumed)
    assert done is not None and done.generation == 2
    assert summary(generations(local)) == [(1, "retired", "local"), (2, "active", "local")]
    assert_everything_opens(local, contents)


def test_status_before_during_and_after_a_rotation(local_sqlite: Settings) -> None:
    """root_key_status shows the active generation alone, then the pending one with every
    sealed blob left to move (fewer after a step), then the new active one and the history."""
    fill(local_sqlite)
    engine = create_engine(local_sqlite.database_url)
    try:
        before = root_key_status(engine)
        assert (before.active.generation, before.pending, before.remaining) == (1, None, 0)
        assert summary(list(before.history)) == [(1, "active", "local")]
        with operator_vault(local_sqlite) as vault:
            rotation = rotation_of(vault)
            pending = rotation.start()
            during = root_key_status(engine)
            assert during.pending is not None
            assert (during.pending.generation, during.remaining) == (2, SEALED_BLOBS)
            assert summary(list(during.history)) == [
                (1, "active", "local"),
                (2, "pending", "local"),
            ]
            rotation.step(pending, 3)
            assert root_key_status(engine).remaining == SEALED_BLOBS - 3
            rotation.step(pending, 3)
            assert root_key_status(engine).remaining == 0
            assert rotation.finish(pending) is not None
        after = root_key_status(engine)
        assert (after.active.generation, after.pending, after.remaining) == (2, None, 0)
        assert after.active.activated_at is not None
        assert summary(list(after.history)) == [(1, "retired", "local"), (2, "active", "local")]
    finally:
        engine.dispose()


def test_a_blob_sealed_under_the_old_generation_meanwhile_holds_the_rotation_back(
    local: Settings, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """A server opened before a move into the HSM, without HSM settings, keeps sealing under
    the old generation: an ephemeral secret it makes after the last step makes finish()
    answer None (and count it); one more step moves it and the rotation finishes."""
    contents = fill(local)
    hsm = vault_settings(local.database_url, local.directory, softhsm_token.env(hsm_key_label))
    with served(local) as (_, old_server), operator_vault(hsm) as vault:
        old_server.headers["Authorization"] = f"Bearer {contents.token}"
        rotation = rotation_of(vault)
        pending = rotation.start()
        while rotation.step(pending, 10):
            pass
        made = old_server.post(f"{API}/ephemeral", json={"key": "eph/late", "value": "late-value"})
        assert made.status_code == 201, made.text
        assert rotation.remaining(pending) == 1
        assert rotation.finish(pending) is None
        assert summary(generations(local)) == [(1, "active", "local"), (2, "pending", "pkcs11")]
        assert rotation.step(pending, 10) == 1
        assert rotation.finish(pending) is not None
    with served(hsm) as (_, client):
        late = client.get(f"{API}/ephemeral/eph/late", headers=bearer(contents.token))
        assert (late.status_code, late.json().get("value")) == (200, "late-value")


def test_a_server_that_can_open_the_new_root_seals_under_it_at_once(local: Settings) -> None:
    """A server opened before a local rotation (it finds the ``.next`` key) seals what it
    writes meanwhile under the pending generation, so finish() needs no further step, and
    it goes on reading everything after the rotation."""
    contents = fill(local)
    with served(local) as (_, old_server), operator_vault(local) as vault:
        old_server.headers["Authorization"] = f"Bearer {contents.token}"
        rotation = rotation_of(vault)
        pending = rotation.start()
        while rotation.step(pending, 10):
            pass
        made = old_server.post(f"{API}/ephemeral", json={"key": "eph/new", "value": "new-value"})
        assert made.status_code == 201, made.text
        assert rotation.remaining(pending) == 0
        assert rotation.finish(pending) is not None
        assert get_value(old_server, "app", "production", "db/password") == "pw-2"
        fresh = old_server.get(f"{API}/ephemeral/eph/new")
        assert (fresh.status_code, fresh.json().get("value")) == (200, "new-value")
    assert sealed_prefixes(local).count(generation_prefix(2)) == SEALED_BLOBS + 1


def test_opening_the_vault_finishes_a_key_file_move_cut_short(
    local_sqlite: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the database committed to the new local key but before the key file
    was replaced leaves the new key in ``.next``: the next open uses it and moves it over
    the key file."""
    contents = fill(local_sqlite)
    old_key = local_sqlite.root_key_file.read_bytes()
    with monkeypatch.context() as crash:
        crash.setattr(LocalRootProvider, "finish_rotation", lambda self, record: None)
        rotate(local_sqlite)
    assert local_sqlite.root_key_file.read_bytes() == old_key
    assert next_key_file(local_sqlite.root_key_file).exists()
    assert_everything_opens(local_sqlite, contents)
    assert not next_key_file(local_sqlite.root_key_file).exists()
    assert local_sqlite.root_key_file.read_bytes() != old_key


# --- blobs the rotation cannot move; vaults older than generations; concurrent operators -----


def test_a_blob_that_opens_under_no_generation_stops_the_step_naming_it(
    local_sqlite: Settings,
) -> None:
    """A sealed blob damaged on disk stops the step with a message naming its kind and row,
    and the step's batch is rolled back; with the damaged webhook deleted the rotation goes
    on and finishes."""
    contents = fill(local_sqlite)
    engine = create_engine(local_sqlite.database_url)
    try:
        with engine.begin() as conn:
            blob = conn.execute(sa.select(webhooks.c.secret_sealed)).scalar_one()
            damaged = blob[:-1] + bytes([blob[-1] ^ 1])
            conn.execute(sa.update(webhooks).values(secret_sealed=damaged))
        with operator_vault(local_sqlite) as vault:
            rotation = rotation_of(vault)
            pending = rotation.start()
            with pytest.raises(ConfigError) as raised:
                rotation.step(pending, 10)
            assert raised.value.message == (
                f"cannot re-seal webhook_secret {contents.webhook_id}: it does not open under "
                "any root-key generation of this vault"
            )
            assert rotation.remaining(pending) == SEALED_BLOBS
            with engine.begin() as conn:
                conn.execute(sa.delete(webhooks))
            assert rotation.step(pending, 10) == SEALED_BLOBS - 1
            assert rotation.finish(pending) is not None
    finally:
        engine.dispose()


def test_a_vault_from_before_generations_rotates(local_sqlite: Settings) -> None:
    """A vault written before root-key generations (no root_keys rows, sealed blobs without
    a generation tag) has no root-key status until it is opened; it then opens as
    generation 1, rotates to generation 2 with every blob tagged, and everything still opens
    with the same audit public key."""
    contents = fill(local_sqlite)
    columns = (
        (data_keys, data_keys.c.wrapped_key),
        (users, users.c.mfa_seed),
        (webhooks, webhooks.c.secret_sealed),
        (ephemeral_secrets, ephemeral_secrets.c.ciphertext),
    )
    engine = create_engine(local_sqlite.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.delete(root_keys_table))
            for table, column in columns:
                for row in conn.execute(sa.select(column).where(column.is_not(None))).all():
                    blob = bytes(row[0])
                    assert blob.startswith(generation_prefix(1))
                    conn.execute(
                        sa.update(table).where(column == blob).values({column.name: blob[5:]})
                    )
        with pytest.raises(ConfigError) as raised:
            root_key_status(engine)
        assert raised.value.message == "the vault records no root key yet; start the server once"
    finally:
        engine.dispose()
    assert_everything_opens(local_sqlite, contents)
    assert summary(generations(local_sqlite)) == [(1, "active", "local")]
    assert rotate(local_sqlite).generation == 2
    assert sealed_prefixes(local_sqlite) == [generation_prefix(2)] * SEALED_BLOBS
    assert_everything_opens(local_sqlite, contents)


RACE_BUG = (
    "BUG: two rotate-root runs started together on PostgreSQL: both see no pending "
    "generation, the loser's LocalRootProvider.new_kek replaces the winner's <key file>.next "
    "before its INSERT fails (raw IntegrityError), so the committed pending generation's key "
    "is gone and the vault no longer opens (WrongRootKey); RootRotation.start reads the "
    "pending row without a lock"
)


def test_two_operators_starting_a_rotation_at_once_leave_an_openable_vault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a second rotate-root starts while the first is making its key, the second waits
    for the first's pending generation and resumes it: one generation 2, and the vault
    opens."""
    with backend_database("postgresql", tmp_path) as url:
        settings = vault_settings(url, tmp_path / "vault")
        contents = fill(settings)
        making = LocalRootProvider.new_kek
        first_making, second_trying = threading.Event(), threading.Event()

        def paused(self: LocalRootProvider, generation: int, *, rotate: bool) -> Any:
            if threading.current_thread().name == "first-operator":
                first_making.set()
                assert second_trying.wait(30)
                time.sleep(0.5)  # the second operator is now waiting on the lock
            return making(self, generation, rotate=rotate)

        monkeypatch.setattr(LocalRootProvider, "new_kek", paused)
        outcome: list[BaseException | RootKeyRecord] = []

        def first_operator() -> None:
            try:
                with operator_vault(settings) as vault:
                    outcome.append(rotation_of(vault).start())
            except Exception as exc:  # noqa: BLE001 - judged below, after the vault is checked
                outcome.append(exc)

        first = threading.Thread(target=first_operator, name="first-operator")
        first.start()
        assert first_making.wait(30)
        with operator_vault(settings) as vault:
            second_trying.set()
            second = rotation_of(vault).start()
        first.join(30)
        monkeypatch.undo()
        assert len(outcome) == 1 and isinstance(outcome[0], RootKeyRecord), repr(outcome)
        assert (second.generation, second.key_id) == (2, outcome[0].key_id)
        assert_everything_opens(settings, contents)
