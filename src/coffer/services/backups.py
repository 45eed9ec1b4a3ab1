"""Backups: a consistent, encrypted, integrity-checked archive of the whole vault, and its
restore into an empty vault.

The archive holds every table as stored (wrapped keys and ciphertexts only, never a
plaintext) and, in its header, the root-key generation that opens it and the latest signed
audit checkpoint. A restore checks everything before the vault becomes usable: every chunk's
integrity, the row counts, every data key and secret version opening, and the audit log
verifying against the checkpoint; anything wrong rolls the whole restore back.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer import __version__
from coffer.audit.checkpoints import Checkpoint
from coffer.audit.live_check import verify_stored_log
from coffer.audit.sealer import AuditSealer, CheckpointPolicy, checkpoint_from_row
from coffer.audit.writer import AuditWriter
from coffer.crypto import backup_archive
from coffer.crypto.audit_keys import AuditKeys
from coffer.crypto.keys import KeyEncryptionKey
from coffer.crypto.providers.configured import RootProviders
from coffer.domain.errors import ConfigError, Conflict, DecryptionFailed, InvalidInput
from coffer.domain.events import Event
from coffer.domain.models import Project
from coffer.domain.root_keys import ProviderName, RootKeyRecord, RootKeyState
from coffer.services.kek_ring import KekRing
from coffer.services.keyring import Keyring
from coffer.services.secret_cipher import bound_aad
from coffer.storage import (
    audit_store,
    backup_tables,
    key_rotation_store,
    project_store,
    root_key_store,
    schema,
)
from coffer.storage.database import read_snapshot

ROWS_PER_INSERT = 1000


@dataclass(frozen=True)
class BackupSummary:
    """What a backup holds (or a restore brought back): rows per table, secret versions,
    the root-key generation that opens it, the audit log's size at its checkpoint."""

    rows: dict[str, int]
    secret_versions: int
    generation: int
    provider: str
    key_id: str
    audit_entries: int
    created_at: float
    size_bytes: int = 0
    seconds: float = 0.0


def _root_json(record: RootKeyRecord) -> dict[str, Any]:
    return {
        "generation": record.generation,
        "provider": record.provider.value,
        "key_id": record.key_id,
        "kek_check": record.kek_check,
        "wrapped_kek": record.wrapped_kek.hex() if record.wrapped_kek is not None else None,
    }


def root_of_header(header: dict[str, Any]) -> RootKeyRecord:
    """The root-key generation a backup's header says opens it; raises InvalidInput (field
    ``file``) when it names none."""
    root = header.get("root")
    try:
        assert isinstance(root, dict)
        wrapped = root.get("wrapped_kek")
        return RootKeyRecord(
            generation=int(root["generation"]),
            state=RootKeyState.ACTIVE,
            provider=ProviderName(root["provider"]),
            key_id=str(root["key_id"]),
            kek_check=str(root["kek_check"]),
            created_at=0.0,
            wrapped_kek=bytes.fromhex(wrapped) if wrapped is not None else None,
        )
    except (AssertionError, KeyError, ValueError, TypeError):
        raise InvalidInput(
            "the backup file is not valid: its header names no usable root key", field="file"
        ) from None


def create_backup(
    engine: Engine, keks: KekRing, audit_keys: AuditKeys, destination: Path
) -> BackupSummary:
    """Writes the archive to ``destination`` (mode 0600) through a ``.partial`` file moved
    into place only when complete, so ``destination`` is never half-written. Seals the audit
    log first so the archive's checkpoint covers every entry, then reads one consistent
    snapshot while the vault keeps serving. Records ``backup.created``. Raises Conflict when
    ``destination`` exists or a root rotation is under way."""
    started = time.perf_counter()
    if destination.exists():
        raise Conflict(f"{destination} already exists; refusing to overwrite it", field="file")
    if not destination.parent.is_dir():
        raise InvalidInput(
            f"cannot write {destination}: directory {destination.parent} does not exist",
            field="file",
        )
    AuditSealer(engine, audit_keys, CheckpointPolicy()).seal(checkpoint_now=True)
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        summary = _write_archive(engine, keks, partial)
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)  # left only when the archive was not finished
    _fsync_directory(destination.parent)
    with engine.begin() as conn:
        AuditWriter(audit_keys).append(
            conn,
            None,
            Event.BACKUP_CREATED,
            metadata={
                "file": destination.name,
                "generation": summary.generation,
                "audit_entries": summary.audit_entries,
                "secret_versions": summary.secret_versions,
            },
        )
    return replace(
        summary, size_bytes=destination.stat().st_size, seconds=time.perf_counter() - started
    )


def _write_archive(engine: Engine, keks: KekRing, path: Path) -> BackupSummary:
    now = time.time()
    with read_snapshot(engine) as conn:
        if root_key_store.in_state(conn, RootKeyState.PENDING) is not None:
            raise Conflict("a root rotation is under way; finish it (`coffer rotate-root`) first")
        active = root_key_store.in_state(conn, RootKeyState.ACTIVE)
        assert active is not None
        kek = keks.kek(active.generation, conn)
        latest = audit_store.latest_checkpoint_row(conn)
        checkpoint = checkpoint_from_row(latest) if latest is not None else None
        tables = backup_tables.backup_tables()
        header = {
            "created_at": now,
            "coffer_version": __version__,
            "schema_revision": schema.head_revision(),
            "root": _root_json(active),
            "checkpoint": checkpoint.to_json() if checkpoint is not None else None,
            "tables": [[t.name, backup_tables.column_names(t)] for t in tables],
        }
        counts: dict[str, int] = {}
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError as exc:
            raise InvalidInput(f"cannot write {path}: {exc.strerror}", field="file") from None
        with os.fdopen(fd, "wb") as out:
            writer = backup_archive.ArchiveWriter(out, header, kek)
            for number, table in enumerate(tables):
                counts[table.name] = 0
                for row in backup_tables.read_rows(conn, table):
                    writer.write(_line([number, row]))
                    counts[table.name] += 1
            writer.write(_line({"end": counts}))
            writer.close()
            out.flush()
            os.fsync(out.fileno())
    return BackupSummary(
        rows=counts,
        secret_versions=counts.get("secret_versions", 0),
        generation=active.generation,
        provider=active.provider.value,
        key_id=active.key_id,
        audit_entries=checkpoint.tree_size if checkpoint is not None else 0,
        created_at=now,
    )


def _line(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8") + b"\n"


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def open_backup_kek(
    header: dict[str, Any], providers: RootProviders
) -> tuple[RootKeyRecord, KeyEncryptionKey]:
    """The KEK that opens the archive, from the root-key generation its header names.
    Raises ConfigError (WrongRootKey) saying which root key the backup needs."""
    record = root_of_header(header)
    needs = (
        f"this backup needs root key generation {record.generation} "
        f"({record.provider.value}, key {record.key_id})"
    )
    try:
        kek = providers.get(record.provider).open_kek(record)
    except ConfigError as exc:
        raise type(exc)(f"{needs}: {exc.message}") from None
    if kek.check_value() != record.kek_check:
        raise ConfigError(f"{needs}: the configured root key is another one")
    return record, kek


class _Restorer:
    """Streams an archive's rows into an empty database inside one transaction."""

    def __init__(self, header: dict[str, Any]) -> None:
        tables = {t.name: t for t in backup_tables.backup_tables()}
        listed = header.get("tables")
        if not isinstance(listed, list) or not all(
            isinstance(item, list) and len(item) == 2 for item in listed
        ):
            raise InvalidInput("the backup file is not valid: it lists no tables", field="file")
        self.order: list[sa.Table] = []
        for name, columns in listed:
            table = tables.get(name)
            if table is None or columns != backup_tables.column_names(table):
                raise InvalidInput(
                    f"the backup file does not match this coffer's schema (table {name})",
                    field="file",
                )
            self.order.append(table)
        self.counts: dict[str, int] = {t.name: 0 for t in self.order}
        self.trailer: dict[str, int] | None = None

    def load(self, conn: sa.Connection, payload: Iterator[bytes]) -> None:
        pending: list[list[Any]] = []
        current: sa.Table | None = None
        tail = b""
        for chunk in payload:
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for line in lines:
                item = json.loads(line)
                if isinstance(item, dict):
                    self.trailer = item.get("end")
                    continue
                table = self.order[int(item[0])]
                if table is not current:
                    if current is not None:
                        backup_tables.insert_rows(conn, current, pending)
                    pending, current = [], table
                pending.append(item[1])
                self.counts[table.name] += 1
                if len(pending) >= ROWS_PER_INSERT:
                    backup_tables.insert_rows(conn, table, pending)
                    pending = []
        if current is not None:
            backup_tables.insert_rows(conn, current, pending)
        if tail or self.trailer != self.counts:
            raise InvalidInput(
                "the backup file is not valid: its row counts do not match its contents",
                field="file",
            )


def restore_into(source: BinaryIO, engine: Engine, providers: RootProviders) -> BackupSummary:
    """Restores the archive read from ``source`` into ``engine``'s database, which must hold
    no vault, in one transaction; checks every secret version and the audit log before it
    commits. Raises Conflict for a database that holds a vault, ConfigError when the
    configured root key does not open the archive, InvalidInput (field ``file``) for an
    edited, truncated or foreign archive. Nothing is left behind on failure but the schema."""
    started = time.perf_counter()
    header, header_bytes = backup_archive.read_header(source)
    record, kek = open_backup_kek(header, providers)
    revision = header.get("schema_revision")
    if revision != schema.head_revision():
        raise InvalidInput(
            f"the backup's schema revision is {revision}; this coffer's is "
            f"{schema.head_revision()} (restore with the coffer version that made it)",
            field="file",
        )
    restorer = _Restorer(header)
    schema.upgrade_to_head(engine)
    with engine.begin() as conn:
        if root_key_store.all_generations(conn):
            raise Conflict("the target database already holds a vault")
        backup_tables.clear_all(conn)  # rows the migrations seed, or a failed restore's
        try:
            restorer.load(conn, backup_archive.read_payload(source, header, header_bytes, kek))
        except DecryptionFailed:  # the KEK is right (its check value matched): edited
            raise InvalidInput(
                "the backup file is not valid: its archive key does not open (edited)",
                field="file",
            ) from None
        except (ValueError, IndexError, TypeError, KeyError, sa.exc.StatementError):
            raise InvalidInput(
                "the backup file is not valid: its rows do not fit the schema", field="file"
            ) from None
        backup_tables.reset_sequences(conn)
        versions, audit_entries = _check_restored(conn, providers, header)
    return BackupSummary(
        rows=restorer.counts,
        secret_versions=versions,
        generation=record.generation,
        provider=record.provider.value,
        key_id=record.key_id,
        audit_entries=audit_entries,
        created_at=float(header.get("created_at") or 0.0),
        seconds=time.perf_counter() - started,
    )


def _check_restored(
    conn: sa.Connection, providers: RootProviders, header: dict[str, Any]
) -> tuple[int, int]:
    """Opens every data key and secret version and verifies the audit log against the
    archive's checkpoint; returns (versions, audit entries). Raises InvalidInput naming the
    first failure."""
    active = root_key_store.in_state(conn, RootKeyState.ACTIVE)
    if active is None or active.audit_keys_sealed is None:
        raise InvalidInput("the backup file holds no active root key", field="file")
    keks = KekRing(providers)
    kek = keks.open_generation(active)
    keyring = Keyring(keks)
    versions = sum(
        _open_versions(conn, keyring, project) for project in project_store.all_projects(conn)
    )
    known = header.get("checkpoint")
    report = verify_stored_log(
        conn,
        AuditKeys.unseal(kek, active.audit_keys_sealed),
        known=Checkpoint.from_json(known) if known is not None else None,
    )
    problem = report.first_problem()
    if problem is not None:
        raise InvalidInput(
            f"the backup's audit log does not verify: {problem.message}", field="file"
        )
    return versions, report.tree_size


def _open_versions(conn: sa.Connection, keyring: Keyring, project: Project) -> int:
    opened = 0
    after: tuple[str, int] | None = None
    while page := key_rotation_store.versions_page(conn, project.id, after, 5000):
        for row in page:
            try:
                keyring.data_key(conn, project, row.key_version).open(
                    row.ciphertext,
                    bound_aad(project, row.environment_id, row.key, row.version, row.key_version),
                )
            except DecryptionFailed:
                raise InvalidInput(
                    f"the backup's secret {row.key!r} version {row.version} in project "
                    f"{project.name!r} does not decrypt",
                    field="file",
                ) from None
            opened += 1
        after = (page[-1].secret_id, page[-1].version)
    return opened
