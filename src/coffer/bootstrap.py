"""Wires the object graph once: settings -> engine, keys, audit writer -> services."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import make_url

from coffer.audit.writer import AuditWriter
from coffer.config import Settings
from coffer.crypto.keys import RootKey, load_root_key, write_root_key_file
from coffer.services.auth import Authenticator
from coffer.services.container import Services
from coffer.services.fast_read import FastSecretReader
from coffer.services.keyring import Keyring
from coffer.services.projects import ProjectService
from coffer.services.secret_ops import Limits, SecretCipher, SecretOps
from coffer.services.secrets import SecretService
from coffer.services.transfer import TransferService
from coffer.services.vault_setup import InitResult, initialise, is_initialised, open_vault
from coffer.storage.database import check_connection, create_engine


def load_settings_root_key(settings: Settings) -> RootKey:
    """Returns the root key named by the settings; raises ConfigError saying what is wrong."""
    return load_root_key(env_value=settings.root_key_b64, key_file=settings.root_key_file)


def build_services(settings: Settings) -> Services:
    """Opens the vault named by ``settings`` and returns its services. Raises ConfigError
    when the database cannot be opened, the key is missing or belongs to another vault."""
    root = load_settings_root_key(settings)
    engine = create_engine(settings.database_url)
    with ExitStack() as on_failure:
        on_failure.callback(engine.dispose)
        kek = open_vault(engine, root)
        on_failure.pop_all()
    audit = AuditWriter()
    keyring = Keyring(kek)
    limits = Limits(max_value_bytes=settings.max_value_bytes)
    cipher = SecretCipher(keyring)
    ops = SecretOps(cipher, audit)
    return Services(
        engine=engine,
        auth=Authenticator(engine),
        projects=ProjectService(engine, keyring, audit),
        secrets=SecretService(engine, ops, limits),
        transfer=TransferService(engine, ops, limits),
        fast_reader=FastSecretReader(engine, cipher, audit),
    )


def initialise_vault(settings: Settings, org_name: str = "default") -> InitResult:
    """Initialises a new vault: creates the vault directory (0700) and, unless
    ``COFFER_ROOT_KEY`` is set, a new root key file (0600) when there is none; then the
    schema, the first organization and its bootstrap token. Raises Conflict when the
    database already holds a vault, ConfigError when it cannot be opened; in either case
    no directory or key file is left behind."""
    sqlite_file = _sqlite_file(settings.database_url) if settings.is_sqlite else None
    created_dir = None
    if sqlite_file is not None and sqlite_file.parent == settings.directory:
        if not settings.directory.exists():
            created_dir = settings.directory
        settings.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    new_key_file = settings.root_key_b64 is None and not settings.root_key_file.exists()
    with ExitStack() as on_failure:
        on_failure.callback(
            _undo_partial_init, created_dir, settings.root_key_file if new_key_file else None
        )
        engine = create_engine(settings.database_url)
        try:
            if sqlite_file is not None:
                _create_private_sqlite_file(settings.database_url)
            check_connection(engine)
            if new_key_file:
                write_root_key_file(settings.root_key_file, RootKey.generate())
            result = initialise(engine, load_settings_root_key(settings), org_name, AuditWriter())
        finally:
            engine.dispose()
        on_failure.pop_all()
        return result


def _undo_partial_init(created_dir: Path | None, new_key_file: Path | None) -> None:
    """Removes what a failed ``initialise_vault`` created: its key file and its directory
    (only when empty apart from files it made itself)."""
    if new_key_file is not None:
        new_key_file.unlink(missing_ok=True)
    if created_dir is None or not created_dir.is_dir():
        return
    for leftover in created_dir.iterdir():
        if leftover.name.startswith("coffer.db") and leftover.stat().st_size == 0:
            leftover.unlink()
    if not any(created_dir.iterdir()):
        created_dir.rmdir()


def _create_private_sqlite_file(database_url: str) -> None:
    """Creates the SQLite file with mode 0600 before SQLite does (its -wal and -shm files
    inherit the mode), so the database is never readable by other users."""
    path = _sqlite_file(database_url)
    if path is not None and path.parent.is_dir() and not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _sqlite_file(database_url: str) -> Path | None:
    database = make_url(database_url).database
    return Path(database) if database and database != ":memory:" else None


def vault_exists(settings: Settings) -> bool:
    """True when the settings' database holds an initialised vault (False if unreachable
    SQLite file does not exist yet)."""
    path = _sqlite_file(settings.database_url) if settings.is_sqlite else None
    if path is not None and not path.exists():
        return False
    engine = create_engine(settings.database_url)
    try:
        check_connection(engine)
        return is_initialised(engine)
    finally:
        engine.dispose()
