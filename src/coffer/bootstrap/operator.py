"""Local operator commands on a vault (``rotate-root``, ``backup``): the vault opened with
its root key in this process, and backups written and restored on this machine."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.engine import Engine

from coffer.bootstrap import node_epochs, vault_exists
from coffer.bootstrap.sqlite_files import create_private_sqlite_file, sqlite_file
from coffer.config import Settings
from coffer.crypto.backup_archive import read_header
from coffer.crypto.keys import load_root_key, write_root_key_file
from coffer.crypto.providers.configured import RootProviders
from coffer.crypto.providers.shamir import UnsealProgress, split_identity
from coffer.domain.errors import ConfigError, Conflict, InvalidInput
from coffer.domain.root_keys import ProviderName, RootKeyRecord
from coffer.services.backups import BackupSummary, create_backup, restore_into, root_of_header
from coffer.services.vault_setup import (
    OpenedVault,
    active_root,
    is_initialised,
    open_vault,
    shamir_split,
)
from coffer.storage.database import check_connection, create_engine, scrub_deleted


@dataclass(frozen=True)
class OperatorVault:
    """A vault opened by a local operator command (rotate-root, backup): its engine, the
    process's root key providers and the opened keys."""

    engine: Engine
    providers: RootProviders
    opened: OpenedVault


ShareSource = Callable[[UnsealProgress], str]
"""Asks the operator for the next Shamir share, given the progress so far."""


def unseal_locally(
    providers: RootProviders,
    record: RootKeyRecord,
    ask_share: ShareSource | None,
    expected: tuple[int, int] | None = None,
) -> None:
    """Rebuilds a Shamir-split root in this process from shares ``ask_share`` gives, for the
    set ``expected`` (identifier, threshold) or, offline with a backup, the first share's.
    Raises ConfigError when there is no way to ask, InvalidInput for a bad share and
    WrongRootKey for shares of another root."""
    if ask_share is None:
        raise ConfigError(
            "this vault's root key is split into Shamir shares: give them on standard input, "
            "one per line"
        )
    shamir = providers.shamir()
    if expected is None:
        first = ask_share(shamir.progress())
        shamir.expect(*split_identity(first))
        shamir.add_share(first, record)
    else:
        shamir.expect(*expected)
    while shamir.sealed:
        shamir.add_share(ask_share(shamir.progress()), record)


@contextmanager
def operator_vault(
    settings: Settings, ask_share: ShareSource | None = None
) -> Iterator[OperatorVault]:
    """Opens the settings' vault with its root key for a local operator command and closes
    it afterwards; a Shamir-split root is rebuilt from shares ``ask_share`` gives. Raises
    ConfigError when the database or the root key cannot be opened. What it changes makes
    running nodes drop what they cached from it (``node_epochs``)."""
    providers = RootProviders(settings)
    engine = create_engine(settings.database_url)
    epochs = node_epochs(settings, engine)
    try:
        active = active_root(engine, providers)
        if active.provider is ProviderName.SHAMIR:
            unseal_locally(providers, active, ask_share, shamir_split(engine))
        yield OperatorVault(engine, providers, open_vault(engine, providers))
    finally:
        engine.dispose()
        epochs.close()


def backup_vault(
    settings: Settings, destination: Path, ask_share: ShareSource | None = None
) -> BackupSummary:
    """Writes an encrypted backup of the settings' vault to ``destination`` (see
    ``services.backups.create_backup``)."""
    with operator_vault(settings, ask_share) as vault:
        opened = vault.opened
        return create_backup(vault.engine, opened.keks, opened.audit_keys, destination)


def restore_vault(
    settings: Settings,
    source: Path,
    *,
    root_key_file: Path | None = None,
    ask_share: ShareSource | None = None,
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
    _unseal_for_backup(source, providers, ask_share)
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
    # The key goes in first: a crash after the vault is in place must not leave it keyless
    # (a rerun then finds the same key there and goes on).
    if new_key is not None:
        write_root_key_file(settings.root_key_file, new_key)
    complete = False
    try:
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
        complete = True
    finally:
        if new_key is not None and not complete:
            settings.root_key_file.unlink(missing_ok=True)
    return summary


def verify_backup(
    settings: Settings, source: Path, ask_share: ShareSource | None = None
) -> BackupSummary:
    """Checks the backup at ``source`` completely by restoring it into a temporary SQLite
    vault that is then deleted; raises as ``restore_vault`` does."""
    providers = RootProviders(settings)
    _unseal_for_backup(source, providers, ask_share)
    with tempfile.TemporaryDirectory(prefix="coffer-verify-") as scratch:
        target = settings.with_overrides(
            directory=Path(scratch), database_url=f"sqlite:///{Path(scratch) / 'coffer.db'}"
        )
        with _open_source(source) as handle:
            return _restore_sqlite(target, handle, providers)


def _unseal_for_backup(
    source: Path, providers: RootProviders, ask_share: ShareSource | None
) -> None:
    """Rebuilds the root of a backup made under a Shamir-split root (nothing otherwise)."""
    with _open_source(source) as handle:
        header, _ = read_header(handle)
    record = root_of_header(header)
    if record.provider is ProviderName.SHAMIR:
        unseal_locally(providers, record, ask_share)


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
    final = sqlite_file(settings.database_url)
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
    create_private_sqlite_file(f"sqlite:///{work}")
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
    for suffix in ("", "-wal", "-shm", "-journal", "-writer.lock"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def vault_root_provider(settings: Settings) -> ProviderName:
    """The provider of the settings' vault's active root key (for the server to know whether
    it must start sealed). Raises ConfigError when the database cannot be opened."""
    engine = create_engine(settings.database_url)
    try:
        return active_root(engine, RootProviders(settings)).provider
    finally:
        engine.dispose()
