"""Vaults rooted in a real HSM (SoftHSM2 through PKCS#11) and in AWS KMS (moto's server):
init, serve, reopen, and every way the root can be wrong or out of reach, each answered with
a message naming the setting at fault and leaving nothing half-written."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.api.app import create_app
from coffer.bootstrap import build_services, initialise_vault, vault_exists
from coffer.config import Settings
from coffer.crypto.keys import KeyEncryptionKey
from coffer.crypto.providers.configured import RootProviders
from coffer.domain.errors import ConfigError, WrongRootKey
from coffer.domain.root_keys import ProviderName, RootKeyRecord, RootKeyState
from coffer.services.container import Services
from coffer.services.vault_setup import open_vault
from coffer.storage import meta_store, root_key_store
from coffer.storage.database import create_engine
from coffer.storage.tables import root_keys
from tests.integration.api_helpers import all_rows_text, get_value, put_secret

if TYPE_CHECKING:
    from tests.provider_fixtures import KmsServer, SoftHsmToken

pytest_plugins = ("tests.provider_fixtures",)

VALUE = "provider-rooted-secret-value"


def unreachable_bound(kms: KmsServer) -> float:
    """How long a call to an unreachable KMS may take: two attempts of COFFER_KMS_TIMEOUT
    each and a retry back-off; anything near this is a hang."""
    return 4.0 * kms.timeout + 2.0


def vault_settings(database_url: str, directory: Path, env: dict[str, str]) -> Settings:
    """Settings as ``coffer`` builds them from ``env`` (COFFER_* variables) for a vault in
    ``directory`` on ``database_url``, with cheap Argon2 for speed."""
    variables = {"COFFER_DATABASE_URL": database_url, **env}
    return Settings.from_env(variables, directory=directory).with_overrides(
        argon2_memory_kib=1024, argon2_time_cost=1
    )


@dataclass(frozen=True)
class VaultPlace:
    """Where a test's vault lives: a database URL and a vault directory that does not exist
    yet (the SQLite file goes inside it)."""

    database_url: str
    directory: Path

    def settings(self, env: dict[str, str]) -> Settings:
        """The settings ``coffer`` reads from ``env`` for this vault."""
        return vault_settings(self.database_url, self.directory, env)


@pytest.fixture
def place(database_url: str, tmp_path: Path) -> VaultPlace:
    """A fresh vault directory (not yet created) and database on the backend under test."""
    directory = tmp_path / "fresh-vault"
    if database_url.startswith("sqlite"):
        return VaultPlace(f"sqlite:///{directory / 'coffer.db'}", directory)
    return VaultPlace(database_url, directory)


@pytest.fixture
def sqlite_place(tmp_path: Path) -> VaultPlace:
    """A fresh SQLite vault (for cases where the database backend plays no part)."""
    directory = tmp_path / "fresh-vault"
    return VaultPlace(f"sqlite:///{directory / 'coffer.db'}", directory)


@contextmanager
def served(settings: Settings) -> Iterator[tuple[Services, TestClient]]:
    """Opens the vault as a new server process would and serves it over HTTP."""
    services = build_services(settings)
    try:
        yield services, TestClient(create_app(services, max_body_bytes=settings.max_body_bytes))
    finally:
        services.close()


def generations(settings: Settings) -> list[RootKeyRecord]:
    """The vault's root-key generations as stored."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return root_key_store.all_generations(conn)
    finally:
        engine.dispose()


def table_names(settings: Settings) -> list[str]:
    """The tables the vault's database (or PostgreSQL schema) holds."""
    engine = create_engine(settings.database_url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def change_generation_one(settings: Settings, **values: object) -> None:
    """Overwrites columns of the stored generation 1 (what an attacker or a bad restore does)."""
    engine = create_engine(settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(root_keys).where(root_keys.c.generation == 1).values(**values))
    finally:
        engine.dispose()


def init_and_store_a_secret(settings: Settings) -> str:
    """Initialises the vault, writes a secret over the API; returns the bootstrap token."""
    token = initialise_vault(settings).token
    with served(settings) as (_, client):
        client.headers["Authorization"] = f"Bearer {token}"
        assert client.post("/api/v1/projects", json={"name": "web"}).status_code == 201
        put_secret(client, "web", "production", "db/password", VALUE)
        put_secret(client, "web", "production", "db/password", VALUE + "-v2")
        assert get_value(client, "web", "production", "db/password") == VALUE + "-v2"
    return token


def vault_kek(settings: Settings) -> KeyEncryptionKey:
    """The KEK of the vault's active generation, as a process that opens the vault holds it."""
    engine = create_engine(settings.database_url)
    try:
        opened = open_vault(engine, RootProviders(settings))
        return opened.keks.open_generation(generations(settings)[0])
    finally:
        engine.dispose()


def assert_reopens_and_serves(settings: Settings, token: str) -> None:
    """A fresh build of the services (a new server process) reads every version back."""
    with served(settings) as (_, client):
        client.headers["Authorization"] = f"Bearer {token}"
        assert get_value(client, "web", "production", "db/password", version=1) == VALUE
        assert get_value(client, "web", "production", "db/password") == VALUE + "-v2"


def assert_kek_not_on_disk(settings: Settings, kek: KeyEncryptionKey) -> None:
    """No key file was made; the KEK's bytes are in no file of the vault and no table."""
    assert not settings.root_key_file.exists()
    material = kek._material
    if settings.is_sqlite:
        files = sorted(p.name for p in settings.directory.iterdir())
        assert files and all(name.startswith("coffer.db") for name in files), files
        for path in settings.directory.iterdir():
            assert material not in path.read_bytes(), path
    engine = create_engine(settings.database_url)
    try:
        text = all_rows_text(engine)
    finally:
        engine.dispose()
    assert material.hex() not in text


def assert_no_vault(settings: Settings) -> None:
    """A failed init leaves no vault: no key file, no initialised database, no tables."""
    assert not settings.root_key_file.exists()
    if settings.is_sqlite:
        database = settings.directory / "coffer.db"
        assert not database.exists() or table_names(settings) == []
    else:
        assert table_names(settings) == []
    assert not vault_exists(settings)


def init_fails(settings: Settings, error: type[ConfigError] = ConfigError) -> str:
    """Runs init expecting ``error``; asserts no vault was made and returns the message."""
    with pytest.raises(error) as raised:
        initialise_vault(settings)
    assert_no_vault(settings)
    return raised.value.message


def open_fails(settings: Settings, error: type[ConfigError] = ConfigError) -> str:
    """Opens the vault expecting ``error``; returns its message."""
    with pytest.raises(error) as raised:
        build_services(settings).close()
    return raised.value.message


# --- PKCS#11 (SoftHSM2) ---------------------------------------------------------------------


def test_pkcs11_vault_serves_and_reopens_with_the_kek_only_in_memory(
    place: VaultPlace, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """init under COFFER_ROOT_PROVIDER=pkcs11 makes a non-extractable AES key in the token,
    records generation 1 with its label and the HSM-wrapped KEK, serves secrets, and a new
    process opens it again; no key file exists and the KEK's bytes are nowhere on disk."""
    settings = place.settings(softhsm_token.env(hsm_key_label))
    token = init_and_store_a_secret(settings)
    kek = vault_kek(settings)
    assert softhsm_token.aes_key_labels().count(hsm_key_label) == 1
    assert softhsm_token.key_attributes(hsm_key_label) == {
        "sensitive": True,
        "extractable": False,
    }
    [record] = generations(settings)
    assert (record.generation, record.state, record.provider, record.key_id) == (
        1,
        RootKeyState.ACTIVE,
        ProviderName.PKCS11,
        hsm_key_label,
    )
    assert record.wrapped_kek is not None
    assert len(record.wrapped_kek) == 12 + 32 + 16  # IV, KEK, GCM tag
    assert record.kek_check == kek.check_value()
    assert_kek_not_on_disk(settings, kek)
    assert_reopens_and_serves(settings, token)


def test_pkcs11_init_uses_a_key_already_in_the_token(
    sqlite_place: VaultPlace, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """When the token already holds a key with the configured label, init wraps the KEK with
    it instead of making another."""
    softhsm_token.create_key(hsm_key_label)
    settings = sqlite_place.settings(softhsm_token.env(hsm_key_label))
    token = init_and_store_a_secret(settings)
    assert softhsm_token.aes_key_labels().count(hsm_key_label) == 1
    assert_reopens_and_serves(settings, token)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"COFFER_PKCS11_PIN": "0000-wrong"},
            "COFFER_PKCS11_PIN is wrong for token <token>",
        ),
        (
            {"COFFER_PKCS11_TOKEN": "no-such-token"},
            "COFFER_PKCS11_TOKEN: no PKCS#11 token is labelled 'no-such-token'",
        ),
        (
            {"COFFER_PKCS11_MODULE": "/nonexistent/libnope-pkcs11.so"},
            "COFFER_PKCS11_MODULE /nonexistent/libnope-pkcs11.so does not exist",
        ),
        (
            {"COFFER_PKCS11_PIN": ""},
            "COFFER_PKCS11_PIN must be set to use the pkcs11 root key provider",
        ),
        (
            {"COFFER_PKCS11_TOKEN": ""},
            "COFFER_PKCS11_TOKEN must be set to use the pkcs11 root key provider",
        ),
    ],
    ids=["wrong PIN", "no such token", "no module", "no PIN", "no token"],
)
def test_pkcs11_init_with_bad_settings_names_the_setting_and_writes_nothing(
    place: VaultPlace,
    softhsm_token: SoftHsmToken,
    hsm_key_label: str,
    changes: dict[str, str],
    message: str,
) -> None:
    """A wrong PIN, token label or module path, or a missing PIN or token, fails init with
    a message naming the variable; no vault, key file or HSM key is made."""
    settings = place.settings(softhsm_token.env(hsm_key_label, **changes))
    assert init_fails(settings) == message.replace("<token>", repr(softhsm_token.label))
    assert hsm_key_label not in softhsm_token.aes_key_labels()


def test_pkcs11_init_that_failed_can_be_run_again_once_fixed(
    sqlite_place: VaultPlace, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """After init failed on a wrong PIN, init with the right PIN in the same place succeeds
    (whatever the failed attempt left behind is no obstacle)."""
    wrong = sqlite_place.settings(softhsm_token.env(hsm_key_label, COFFER_PKCS11_PIN="0000-wrong"))
    init_fails(wrong)
    right = sqlite_place.settings(softhsm_token.env(hsm_key_label))
    token = init_and_store_a_secret(right)
    assert_reopens_and_serves(right, token)


LEFTOVER_BUG = (
    "BUG: a failed init leaves the vault directory it created, holding a 4096-byte coffer.db: "
    "check_connection (PRAGMA journal_mode=WAL) writes the SQLite header before the provider "
    "is asked for a key, and _undo_partial_init removes only empty coffer.db files"
)


def test_pkcs11_failed_init_leaves_no_vault_directory(
    sqlite_place: VaultPlace, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """init with a wrong PIN removes the vault directory it created (nothing is left)."""
    settings = sqlite_place.settings(
        softhsm_token.env(hsm_key_label, COFFER_PKCS11_PIN="0000-wrong")
    )
    init_fails(settings)
    assert not settings.directory.exists(), sorted(
        f"{p.name} ({p.stat().st_size} bytes)" for p in settings.directory.iterdir()
    )


def test_pkcs11_module_that_is_not_a_pkcs11_library_is_named(
    sqlite_place: VaultPlace, softhsm_token: SoftHsmToken, hsm_key_label: str, tmp_path: Path
) -> None:
    """A module path naming a file that is not a PKCS#11 library is refused naming it."""
    impostor = tmp_path / "libimpostor.so"
    impostor.write_text("not a shared library\n")
    settings = sqlite_place.settings(
        softhsm_token.env(hsm_key_label, COFFER_PKCS11_MODULE=str(impostor))
    )
    message = init_fails(settings)
    assert message.startswith(f"COFFER_PKCS11_MODULE {impostor} cannot be loaded: "), message


def test_pkcs11_vault_with_bad_settings_does_not_open(
    sqlite_place: VaultPlace, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """A vault made under the HSM does not open with a wrong PIN, no PIN or a wrong token:
    start-up fails naming the variable, and the right settings still open it."""
    good = sqlite_place.settings(softhsm_token.env(hsm_key_label))
    token = init_and_store_a_secret(good)
    token_name = repr(softhsm_token.label)
    for changes, message in (
        ({"COFFER_PKCS11_PIN": "0000-wrong"}, f"COFFER_PKCS11_PIN is wrong for token {token_name}"),
        (
            {"COFFER_PKCS11_PIN": ""},
            "COFFER_PKCS11_PIN must be set to use the pkcs11 root key provider",
        ),
        (
            {"COFFER_PKCS11_TOKEN": "no-such-token"},
            "COFFER_PKCS11_TOKEN: no PKCS#11 token is labelled 'no-such-token'",
        ),
    ):
        bad = sqlite_place.settings(softhsm_token.env(hsm_key_label, **changes))
        assert open_fails(bad) == message
    assert_reopens_and_serves(good, token)


def test_pkcs11_vault_opens_with_the_recorded_key_whatever_label_is_configured(
    sqlite_place: VaultPlace, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """COFFER_PKCS11_KEY_LABEL names the key for init and rotations; a vault opens with the
    label its generation recorded, so changing the setting does not lock it out."""
    settings = sqlite_place.settings(softhsm_token.env(hsm_key_label))
    token = init_and_store_a_secret(settings)
    other = sqlite_place.settings(softhsm_token.env(hsm_key_label + "-other"))
    assert_reopens_and_serves(other, token)
    assert hsm_key_label + "-other" not in softhsm_token.aes_key_labels()


def test_pkcs11_vault_whose_hsm_key_was_deleted_does_not_open(
    sqlite_place: VaultPlace, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """With the root key deleted from the token, start-up fails naming the label and token."""
    settings = sqlite_place.settings(softhsm_token.env(hsm_key_label))
    initialise_vault(settings)
    softhsm_token.destroy_key(hsm_key_label)
    assert open_fails(settings) == (
        f"no AES key labelled {hsm_key_label!r} in PKCS#11 token {softhsm_token.label!r}"
    )


def test_pkcs11_vault_whose_hsm_key_was_replaced_is_the_wrong_root(
    sqlite_place: VaultPlace, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """Another key under the recorded label (the key deleted and made again) does not unwrap
    the KEK: start-up fails with WrongRootKey naming the label and the generation."""
    settings = sqlite_place.settings(softhsm_token.env(hsm_key_label))
    initialise_vault(settings)
    softhsm_token.destroy_key(hsm_key_label)
    softhsm_token.create_key(hsm_key_label)
    assert open_fails(settings, WrongRootKey) == (
        f"the HSM key {hsm_key_label!r} does not open generation 1"
    )


def test_pkcs11_damaged_wrapped_kek_is_the_wrong_root(
    sqlite_place: VaultPlace, softhsm_token: SoftHsmToken, hsm_key_label: str
) -> None:
    """A stored wrapped KEK cut short, or altered by one bit, fails start-up with
    WrongRootKey (the HSM's AES-GCM refuses it), not a crash."""
    settings = sqlite_place.settings(softhsm_token.env(hsm_key_label))
    initialise_vault(settings)
    [record] = generations(settings)
    assert record.wrapped_kek is not None
    change_generation_one(settings, wrapped_kek=record.wrapped_kek[:12])
    assert open_fails(settings, WrongRootKey) == "generation 1 has no HSM-wrapped key"
    flipped = record.wrapped_kek[:-1] + bytes([record.wrapped_kek[-1] ^ 1])
    change_generation_one(settings, wrapped_kek=flipped)
    assert open_fails(settings, WrongRootKey) == (
        f"the HSM key {hsm_key_label!r} does not open generation 1"
    )


# --- AWS KMS (moto) -------------------------------------------------------------------------


def test_kms_vault_serves_and_reopens_with_the_kek_only_in_memory(
    place: VaultPlace, kms: KmsServer, kms_key: str
) -> None:
    """init under COFFER_ROOT_PROVIDER=awskms (the key named by its bare id) records the
    key's ARN and the KMS-wrapped KEK, serves secrets, and a new process opens it again; no
    key file exists and the KEK's bytes are nowhere on disk."""
    bare_id = kms_key.rsplit("/", 1)[1]
    settings = place.settings(kms.env(bare_id))
    token = init_and_store_a_secret(settings)
    kek = vault_kek(settings)
    [record] = generations(settings)
    assert (record.generation, record.state, record.provider, record.key_id) == (
        1,
        RootKeyState.ACTIVE,
        ProviderName.AWSKMS,
        kms_key,
    )
    assert record.wrapped_kek is not None
    assert record.kek_check == kek.check_value()
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            assert meta_store.get_meta(conn, "root_key_check_value") == kms_key
    finally:
        engine.dispose()
    assert_kek_not_on_disk(settings, kek)
    assert_reopens_and_serves(settings, token)


def test_kms_unknown_key_fails_init_naming_the_key(place: VaultPlace, kms: KmsServer) -> None:
    """A key id KMS does not know fails init naming COFFER_KMS_KEY_ID and the key."""
    missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000"
    settings = place.settings(kms.env(missing))
    assert init_fails(settings) == f"COFFER_KMS_KEY_ID: KMS key {missing!r} not found"


def test_kms_failed_init_leaves_no_vault_directory(
    sqlite_place: VaultPlace, kms: KmsServer
) -> None:
    """init under a KMS key that does not exist removes the vault directory it created."""
    settings = sqlite_place.settings(kms.env("alias/no-such-coffer-key"))
    assert init_fails(settings) == "COFFER_KMS_KEY_ID: KMS key 'alias/no-such-coffer-key' not found"
    assert not settings.directory.exists()


def test_kms_without_a_key_id_fails_init_naming_the_variable(
    place: VaultPlace, kms: KmsServer
) -> None:
    """COFFER_ROOT_PROVIDER=awskms without COFFER_KMS_KEY_ID fails before anything is made."""
    settings = place.settings(kms.env("", COFFER_KMS_KEY_ID=""))
    assert init_fails(settings) == (
        "COFFER_KMS_KEY_ID must be set to use the awskms root key provider"
    )


def test_kms_without_credentials_fails_init_saying_so(
    sqlite_place: VaultPlace, kms: KmsServer, kms_key: str, no_aws_credentials: None
) -> None:
    """Without AWS credentials anywhere, init fails saying which variables to set."""
    settings = sqlite_place.settings(kms.env(kms_key))
    assert init_fails(settings) == (
        "AWS KMS: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or an "
        "AWS profile)"
    )


def _unreachable(kms: KmsServer, endpoint: str, cause: str) -> str:
    return (
        f"AWS KMS at {endpoint} is unreachable ({cause}, timeout {kms.timeout}s); check "
        "COFFER_KMS_ENDPOINT and the network"
    )


def test_kms_where_nothing_listens_fails_init_within_the_timeout(
    sqlite_place: VaultPlace, kms: KmsServer, kms_key: str, closed_endpoint: str
) -> None:
    """An endpoint where nothing listens fails init within a few COFFER_KMS_TIMEOUTs,
    naming the endpoint (the one that never answers is tried at start-up below)."""
    endpoint = closed_endpoint
    settings = sqlite_place.settings(kms.env(kms_key, COFFER_KMS_ENDPOINT=endpoint))
    started = time.monotonic()
    message = init_fails(settings)
    assert time.monotonic() - started < unreachable_bound(kms)
    assert message == _unreachable(kms, endpoint, "EndpointConnectionError")


def test_kms_vault_whose_kms_stops_answering_fails_to_open_within_the_timeout(
    sqlite_place: VaultPlace, kms: KmsServer, kms_key: str, silent_endpoint: str
) -> None:
    """A vault made under KMS, started while KMS never answers, fails start-up within a few
    COFFER_KMS_TIMEOUTs naming the endpoint; with KMS back it opens."""
    settings = sqlite_place.settings(kms.env(kms_key))
    initialise_vault(settings)
    cut_off = sqlite_place.settings(kms.env(kms_key, COFFER_KMS_ENDPOINT=silent_endpoint))
    started = time.monotonic()
    message = open_fails(cut_off)
    assert time.monotonic() - started < unreachable_bound(kms)
    assert message == _unreachable(kms, silent_endpoint, "ReadTimeoutError")
    build_services(settings).close()


def test_kms_vault_opens_with_its_recorded_key_whatever_key_is_configured(
    sqlite_place: VaultPlace, kms: KmsServer, kms_key: str
) -> None:
    """COFFER_KMS_KEY_ID names the key for init and rotations; a vault opens with the key its
    generation recorded even when another key is configured."""
    settings = sqlite_place.settings(kms.env(kms_key))
    token = init_and_store_a_secret(settings)
    assert_reopens_and_serves(sqlite_place.settings(kms.env(kms.create_key())), token)


@pytest.mark.parametrize("tamper", ["another vault's root", "altered", "other generation"])
def test_kms_wrapped_kek_that_is_not_the_vaults_is_the_wrong_root(
    sqlite_place: VaultPlace, kms: KmsServer, kms_key: str, tamper: str, tmp_path: Path
) -> None:
    """Generation 1 pointing at another KMS key's wrapped KEK (another vault's root), a
    wrapped KEK altered, or one bound to another generation: start-up fails with
    WrongRootKey, never opening the vault with a KEK that is not its own."""
    settings = sqlite_place.settings(kms.env(kms_key))
    initialise_vault(settings)
    [mine] = generations(settings)
    assert mine.wrapped_kek is not None
    if tamper == "another vault's root":
        elsewhere = VaultPlace(
            f"sqlite:///{tmp_path / 'theirs' / 'coffer.db'}", tmp_path / "theirs"
        )
        theirs = elsewhere.settings(kms.env(kms.create_key()))
        initialise_vault(theirs)
        [foreign] = generations(theirs)
        change_generation_one(settings, key_id=foreign.key_id, wrapped_kek=foreign.wrapped_kek)
        expected = (
            "the awskms root key does not open generation 1 of this vault (check value mismatch)"
        )
    else:
        expected = (
            "AWS KMS refused the vault's wrapped key (InvalidCiphertextException); check "
            "COFFER_KMS_KEY_ID"
        )
        if tamper == "altered":
            wrapped = mine.wrapped_kek[:-1] + bytes([mine.wrapped_kek[-1] ^ 1])
            change_generation_one(settings, wrapped_kek=wrapped)
        else:
            other = kms.client.generate_data_key(
                KeyId=kms_key,
                KeySpec="AES_256",
                EncryptionContext={"coffer": "coffer/root-kek/v1", "generation": "2"},
            )
            change_generation_one(settings, wrapped_kek=bytes(other["CiphertextBlob"]))
    assert open_fails(settings, WrongRootKey) == expected


def test_kms_malformed_region_is_named(
    sqlite_place: VaultPlace, kms: KmsServer, kms_key: str
) -> None:
    """A region with a typo (an underscore) fails init naming COFFER_KMS_REGION, not the
    network."""
    settings = sqlite_place.settings(kms.env(kms_key, COFFER_KMS_REGION="us-east_1"))
    message = init_fails(settings)
    assert "COFFER_KMS_REGION" in message, message
    assert "unreachable" not in message, message
