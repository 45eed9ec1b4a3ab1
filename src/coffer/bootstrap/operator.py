"""Local operator commands on a vault (``rotate-root``, ``backup``): the vault opened with
its root key in this process, and backups written and restored on this machine."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.engine import Engine

from coffer.bootstrap import _create_private_sqlite_file, _sqlite_file, vault_exists
from coffer.config import Settings
from coffer.crypto.keys import load_root_key, write_root_key_file
from coffer.crypto.providers.configured import RootProviders
from coffer.domain.errors import ConfigError, Conflict, InvalidInput
from coffer.domain.root_keys import ProviderName
from coffer.services.backups import BackupSummary, create_backup, restore_into
from coffer.services.vault_setup import OpenedVault, active_root, is_initialised, open_vault
from coffer.storage.database import check_connection, create_engine, scrub_deleted


@dataclass(frozen=True)
class OperatorVault:
    """A vault opened by a local operator command (rotate-root, backup): its engine, the
    process's root key providers and the opened keys."""

    engine: Engine
    providers: RootProviders
    opened: OpenedVault


@contextmanager
def operator_vault(settings: Settings) -> Iterator[OperatorVault]:
    """Opens the settings' vault with its root key for a local operator command and closes
    it afterwards. Raises ConfigError when the database or the root key cannot be opened (a
    Shamir-split root cannot: it opens only in a server, through `coffer unseal`)."""
    providers = RootProviders(settings)
    engine = create_engine(settings.database_url)
    try:
        if active_root(engine, providers).provider is ProviderName.SHAMIR:
            raise ConfigError(
                "this vault's root key is split into Shamir shares, which only a running "
                "server can take (`coffer unseal`)"
            )
        yield OperatorVault(engine, providers, open_vault(engine, providers))
    finally:
        engine.dispose()


def backup_vault(settings: Settings, destination: Path) -> BackupSummary:
    """Writes an encrypted backup of the settings' vault to ``destination`` (see
    ``services.backups.create_backup``)."""
    with operator_vault(settings) as vault:
        opened = vault.opened
        return create_backup(vault.engine, opened.keks, opened.audit_keys, destination)


def restore_vault(
    settings: Settings, source: Path, *, root_key_file: Path | None = None
) -> BackupSummary:
    """Restores the backup at ``source`` into the settings' vault, which must not exist yet.
    The root key comes from the settings or, with ``root_key_file``, from that file (copied
    to the vault's key file once the restore succeeded). A SQLite vault is built in a
    ``.restoring`` file moved into place only when complete, so a crash leaves no vault
    (running the restore again starts afresh); PostgreSQL restores in one transaction.
    Raises Conflict when a vault exists, ConfigError when the root key does not open the
    backup, InvalidInput (field ``file``) for an edited, truncated or foreign file."""
    key_settings = settings
    if root_key_file is not None:
        key_settings = settings.with_overrides(root_key_b64=None, root_key_file=root_key_file)
    providers = RootProviders(key_settings)
    new_key = None
    if root_key_file is not None:
        new_key = load_root_key(env_value=None, key_file=root_key_file)
        if settings.root_key_file.exists():
            if load_root_key(env_value=None, key_file=settings.root_key_file) != new_key:
                raise Conflict(
                    f"{settings.root_key_file} holds another root key; remove it or leave out "
                    "--root-key-file",
                    field="root_key_file",
                )
            new_key = None
    with _open_source(source) as handle:
        if not settings.is_sqlite:
            engine = create_engine(settings.database_url)
            try:
                check_connection(engine)
                if is_initialised(engine):
                    raise Conflict("the target database already holds a vault")
                summary = restore_into(handle, engine, providers)
            finally:
                engine.dispose()
        else:
            summary = _restore_sqlite(settings, handle, providers)
    if new_key is not None:
        write_root_key_file(settings.root_key_file, new_key)
    return summary


def verify_backup(settings: Settings, source: Path) -> BackupSummary:
    """Checks the backup at ``source`` completely by restoring it into a temporary SQLite
    vault that is then deleted; raises as ``restore_vault`` does."""
    providers = RootProviders(settings)
    with tempfile.TemporaryDirectory(prefix="coffer-verify-") as scratch:
        target = settings.with_overrides(
            directory=Path(scratch), database_url=f"sqlite:///{Path(scratch) / 'coffer.db'}"
        )
        with _open_source(source) as handle:
            return _restore_sqlite(target, handle, providers)


@contextmanager
def _open_source(source: Path) -> Iterator[BinaryIO]:
    try:
        handle = source.open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {source}: {exc.strerror}", field="file") from None
    with handle:
        yield handle


def _restore_sqlite(
    settings: Settings, handle: BinaryIO, providers: RootProviders
) -> BackupSummary:
    final = _sqlite_file(settings.database_url)
    if final is None:
        raise ConfigError("restore needs a SQLite file or a PostgreSQL database")
    if vault_exists(settings):
        raise Conflict(f"{final} already holds a vault; restore needs an empty vault")
    try:
        final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the vault directory {final.parent}: {exc.strerror}"
        ) from None
    work = final.with_name(final.name + ".restoring")
    _remove_sqlite_files(work)
    _create_private_sqlite_file(f"sqlite:///{work}")
    engine = create_engine(f"sqlite:///{work}")
    complete = False
    try:
        summary = restore_into(handle, engine, providers)
        scrub_deleted(engine)  # checkpoint: the whole vault is in the main file
        complete = True
    finally:
        engine.dispose()
        if not complete:
            _remove_sqlite_files(work)
    _remove_sqlite_files(final)
    work.replace(final)
    _remove_sqlite_files(work)
    return summary


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def vault_root_provider(settings: Settings) -> ProviderName:
    """The provider of the settings' vault's active root key (for the server to know whether
    it must start sealed). Raises ConfigError when the database cannot be opened."""
    engine = create_engine(settings.database_url)
    try:
        return active_root(engine, RootProviders(settings)).provider
    finally:
        engine.dispose()
