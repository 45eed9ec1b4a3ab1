"""Rotating a project's data key: a new key version, every secret version re-encrypted under
it in steps, then the old keys destroyed and ``key.rotated`` recorded.

Each step is one transaction, so a crash at any moment loses at most the step under way: old
keys are destroyed only once no version needs them, and starting again resumes the rotation
that is under way instead of beginning another. Reads and writes go on meanwhile: a read
opens each version with the key it names, and writes use the new key from the moment the
rotation starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto.keys import DataKey
from coffer.domain.access import Action
from coffer.domain.errors import InvalidInput
from coffer.domain.events import Event
from coffer.domain.models import CallContext, Project
from coffer.services.access import AccessGate
from coffer.services.keyring import Keyring
from coffer.services.lookup import require_project
from coffer.services.secret_cipher import bound_aad
from coffer.storage import key_rotation_store as store

DEFAULT_BATCH = 2000
MAX_BATCH = 20000


@dataclass(frozen=True)
class KeyRotationStatus:
    """Where a project's key rotation stands: the current key version, the older versions
    still held (a rotation is under way while there are any), how many secret versions the
    project has and how many still wait for the new key."""

    project: str
    key_version: int
    retiring: tuple[int, ...]
    total: int
    remaining: int

    @property
    def running(self) -> bool:
        """True while older keys are held (a rotation started and did not finish)."""
        return bool(self.retiring)


@dataclass(frozen=True)
class KeyRotationStep:
    """What one step did: versions re-encrypted, where the next step starts (None at the
    end of a pass) and whether the rotation finished."""

    project: str
    key_version: int
    reencrypted: int
    cursor: str | None
    done: bool


def parse_batch(value: object) -> int:
    """Returns the batch size; raises InvalidInput naming ``batch`` unless it is an integer
    from 1 to MAX_BATCH."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BATCH:
        raise InvalidInput(f"batch must be an integer from 1 to {MAX_BATCH}", field="batch")
    return value


def parse_cursor(text: str | None) -> tuple[str, int] | None:
    """Returns the (secret id, version) a cursor names; raises InvalidInput naming
    ``cursor`` for anything a step did not hand out."""
    if text is None or text == "":
        return None
    secret_id, _, version = text.partition(":")
    well_formed = secret_id.isascii() and secret_id.isalnum() and len(secret_id) == 26
    if not (well_formed and version.isascii() and version.isdigit() and len(version) <= 9):
        raise InvalidInput("cursor must be a cursor returned by the previous step", field="cursor")
    return secret_id, int(version)


class KeyRotationService:
    """Starts, advances and reports project data-key rotations (admins only)."""

    def __init__(
        self, engine: Engine, keyring: Keyring, audit: AuditWriter, gate: AccessGate
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._audit = audit
        self._gate = gate

    def status(self, ctx: CallContext, project: str) -> KeyRotationStatus:
        """The project's rotation status; raises NotFound for an unknown project."""
        self._gate.require(ctx, Action.KEY_ROTATE, project=project)
        with self._engine.connect() as conn:
            return self._status(conn, require_project(conn, ctx.actor, project))

    def _status(self, conn: sa.Connection, project: Project) -> KeyRotationStatus:
        current = store.current_key_version(conn, project.id, lock=False)
        return KeyRotationStatus(
            project=project.name,
            key_version=current,
            retiring=tuple(v for v in store.key_versions(conn, project.id) if v < current),
            total=store.count_versions(conn, project.id, older_than=None),
            remaining=store.count_versions(conn, project.id, older_than=current),
        )

    def start(self, ctx: CallContext, project: str) -> KeyRotationStatus:
        """Starts a rotation (a new data-key version that new writes use at once) or, when
        one is under way, returns it to be resumed. Raises NotFound for an unknown project."""
        self._gate.require(ctx, Action.KEY_ROTATE, project=project)
        with self._engine.begin() as conn:
            found = require_project(conn, ctx.actor, project)
            current = store.current_key_version(conn, found.id, lock=False)
            under_way = any(v < current for v in store.key_versions(conn, found.id))
            if not under_way and store.advance_key_version(conn, found.id, current):
                self._keyring.create_data_key(conn, found, current + 1, time.time())
            return self._status(conn, found)

    def step(
        self, ctx: CallContext, project: str, *, batch: int = DEFAULT_BATCH, cursor: str | None
    ) -> KeyRotationStep:
        """Re-encrypts up to ``batch`` secret versions after ``cursor`` under the current key.
        At the end of a pass, when no version needs an older key, destroys the older keys and
        records ``key.rotated``; ``done`` is then true. Raises InvalidInput for a bad batch
        or cursor, NotFound for an unknown project."""
        self._gate.require(ctx, Action.KEY_ROTATE, project=project)
        batch = parse_batch(batch)
        after = parse_cursor(cursor)
        with self._engine.begin() as conn:
            found = require_project(conn, ctx.actor, project)
            current = store.current_key_version(conn, found.id, lock=False)
            page = store.versions_page(conn, found.id, after, batch)
            reencrypted = self._reencrypt(conn, found, current, page)
            if len(page) == batch:
                last = page[-1]
                next_cursor: str | None = f"{last.secret_id}:{last.version}"
                done = False
            else:
                next_cursor = None
                done = self._finish(conn, ctx, found, current)
        return KeyRotationStep(
            project=found.name,
            key_version=current,
            reencrypted=reencrypted,
            cursor=next_cursor,
            done=done,
        )

    def _reencrypt(
        self,
        conn: sa.Connection,
        project: Project,
        current: int,
        page: list[store.StoredSecretVersion],
    ) -> int:
        target = self._keyring.data_key(conn, project, current)
        old_keys: dict[int, DataKey] = {}
        updates = []
        for row in page:
            if row.key_version >= current:
                continue
            old = old_keys.get(row.key_version)
            if old is None:
                old = old_keys[row.key_version] = self._keyring.data_key(
                    conn, project, row.key_version
                )
            updates.append(
                {
                    "b_secret_id": row.secret_id,
                    "b_version": row.version,
                    "b_old_key_version": row.key_version,
                    "b_key_version": current,
                    "b_ciphertext": old.reseal(
                        row.ciphertext,
                        bound_aad(
                            project, row.environment_id, row.key, row.version, row.key_version
                        ),
                        target,
                        bound_aad(project, row.environment_id, row.key, row.version, current),
                    ),
                }
            )
        store.replace_ciphertexts(conn, updates)
        return len(updates)

    def _finish(
        self, conn: sa.Connection, ctx: CallContext, project: Project, current: int
    ) -> bool:
        """Destroys the older keys when no version needs them; True when the rotation is
        over (also when there was nothing to finish)."""
        retiring = [v for v in store.key_versions(conn, project.id) if v < current]
        if not retiring:
            return True
        if store.count_versions(conn, project.id, older_than=current):
            return False  # a version was missed (written as the rotation started): go again
        store.destroy_keys_before(conn, project.id, current)
        self._keyring.forget(project)
        self._audit.append(
            conn,
            ctx,
            Event.KEY_ROTATED,
            project=project.name,
            metadata={
                "key_version": current,
                "destroyed_key_versions": ",".join(str(v) for v in retiring),
                "versions": store.count_versions(conn, project.id, older_than=None),
            },
        )
        return True
