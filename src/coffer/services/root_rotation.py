"""Rotating the root key: a new root-key generation under the configured provider (a new key
file, HSM key or KMS key), every KEK-sealed blob re-sealed under it in steps, then the new
generation made active and ``key.root_rotated`` recorded.

A crash at any moment leaves both generations openable: the new one is recorded (pending)
before anything moves to it, and the old one is retired only in the transaction that finds
nothing left under it. Running the rotation again resumes the pending generation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto.aad import data_key_aad, ephemeral_secret_aad, mfa_secret_aad, webhook_secret_aad
from coffer.crypto.audit_keys import AuditKeys
from coffer.crypto.keys import generation_prefix
from coffer.crypto.providers.configured import RootProviders
from coffer.domain.errors import ConfigError, DecryptionFailed
from coffer.domain.events import Event
from coffer.domain.root_keys import RootKeyRecord, RootKeyState, RootKeyStatus
from coffer.services.approvals import use_root_approvals
from coffer.services.kek_ring import KekRing
from coffer.storage import root_key_store as store
from coffer.storage.root_key_store import SealedBlob

DEFAULT_BATCH = 500


def sealed_aad(item: SealedBlob) -> bytes:
    """The associated data ``item``'s blob was sealed with."""
    if item.kind == "data_key":
        org_id, project_id, version = item.bound_to
        return data_key_aad(org_id=org_id, project_id=project_id, key_version=int(version))
    if item.kind == "mfa_seed":
        return mfa_secret_aad(user_id=item.bound_to[0])
    if item.kind == "webhook_secret":
        org_id, webhook_id = item.bound_to
        return webhook_secret_aad(org_id=org_id, webhook_id=webhook_id)
    org_id, secret_id, key = item.bound_to
    return ephemeral_secret_aad(org_id=org_id, secret_id=secret_id, key=key)


def root_key_status(engine: Engine) -> RootKeyStatus:
    """The active generation, a pending one and how many blobs still wait for it, and the
    history. Needs no key. Raises ConfigError when the vault has no generations yet (opened
    before by a version without them: start the server once)."""
    with engine.connect() as conn:
        history = store.all_generations(conn)
        active = next((r for r in history if r.state is RootKeyState.ACTIVE), None)
        pending = next((r for r in history if r.state is RootKeyState.PENDING), None)
        remaining = (
            store.count_not_under(conn, generation_prefix(pending.generation)) if pending else 0
        )
    if active is None:
        raise ConfigError("the vault records no root key yet; start the server once")
    return RootKeyStatus(
        active=active, pending=pending, remaining=remaining, history=tuple(history)
    )


class RootRotation:
    """Runs a root rotation in this process, which holds the vault's keys."""

    def __init__(
        self,
        engine: Engine,
        keks: KekRing,
        providers: RootProviders,
        audit_keys: AuditKeys,
    ) -> None:
        self._engine = engine
        self._keks = keks
        self._providers = providers
        self._audit_keys = audit_keys
        self._writer = AuditWriter(audit_keys)

    def start(self, approvals: Sequence[str] = ()) -> RootKeyRecord:
        """Returns the pending generation: the one under way, else a new one under the
        configured provider. A new one needs a second person's ``root.rotate`` approval
        (among ``approvals``, ids) for every organization whose settings ask for one: they
        are used in the transaction that records the new generation
        (``approvals.use_root_approvals``), before any key is made. Raises ApprovalRequired
        naming what is missing (nothing is changed), ConfigError when the provider cannot
        make a key."""
        with self._engine.begin() as conn:
            active = store.in_state(conn, RootKeyState.ACTIVE)
            assert active is not None
            # One start at a time (PostgreSQL; SQLite runs one writer anyway): a second
            # operator waits here, then finds the first one's pending generation and resumes.
            store.lock_generation(conn, active.generation)
            pending = store.in_state(conn, RootKeyState.PENDING)
            if pending is not None:
                self._keks.open_generation(pending)
                return pending
            use_root_approvals(conn, self._writer, approvals, time.time())
            generation = active.generation + 1
            provider = self._providers.get(self._providers.configured)
            new = provider.new_kek(generation, rotate=True)
            record = RootKeyRecord(
                generation=generation,
                state=RootKeyState.PENDING,
                provider=provider.name,
                key_id=new.key_id,
                kek_check=new.kek.check_value(),
                created_at=time.time(),
                wrapped_kek=new.wrapped_kek,
                audit_keys_sealed=self._audit_keys.seal(new.kek),
            )
            store.insert(conn, record)
        self._keks.open_generation(record)
        return record

    def step(self, pending: RootKeyRecord, batch: int = DEFAULT_BATCH) -> int:
        """Re-seals up to ``batch`` blobs under ``pending`` in one transaction; returns how
        many moved (0 when none is left). Raises ConfigError naming a blob that does not
        open under any generation (it cannot move, and the rotation cannot finish)."""
        prefix = generation_prefix(pending.generation)
        with self._engine.begin() as conn:
            items = store.batch_not_under(conn, prefix, batch)
            for item in items:
                try:
                    blob = self._keks.rewrap(item.blob, sealed_aad(item), pending.generation, conn)
                except DecryptionFailed:
                    raise ConfigError(
                        f"cannot re-seal {item.kind} {':'.join(map(str, item.row_key))}: it "
                        "does not open under any root-key generation of this vault"
                    ) from None
                store.replace_blob(conn, item, blob)
        return len(items)

    def remaining(self, pending: RootKeyRecord) -> int:
        """How many blobs still wait for ``pending``."""
        with self._engine.connect() as conn:
            return store.count_not_under(conn, generation_prefix(pending.generation))

    def finish(self, pending: RootKeyRecord) -> RootKeyRecord | None:
        """Makes ``pending`` active when nothing is left under an older generation (checked
        in the transaction that retires the old one) and records ``key.root_rotated``;
        returns the active record, or None when blobs are left (sealed meanwhile: step
        again)."""
        now = time.time()
        with self._engine.begin() as conn:
            active = store.in_state(conn, RootKeyState.ACTIVE)
            assert active is not None
            store.lock_generation(conn, active.generation)
            if store.count_not_under(conn, generation_prefix(pending.generation)):
                return None
            store.activate(conn, pending.generation, active.generation, now)
            self._record(conn, active, pending)
        done = replace(pending, state=RootKeyState.ACTIVE, activated_at=now)
        self._providers.get(pending.provider).finish_rotation(done)
        return done

    def run(
        self, pending: RootKeyRecord, batch: int, advance: Callable[[int], None]
    ) -> tuple[RootKeyRecord, int]:
        """Steps ``pending`` to the end (``advance`` hears each step's count) and finishes
        it, stepping again while blobs sealed meanwhile hold it back; returns the active
        record and how many blobs moved."""
        moved = 0
        while True:
            count = self.step(pending, batch)
            moved += count
            advance(count)
            if count:
                continue
            done = self.finish(pending)
            if done is not None:
                return done, moved

    def _record(self, conn: sa.Connection, old: RootKeyRecord, new: RootKeyRecord) -> None:
        self._writer.append(
            conn,
            None,
            Event.ROOT_KEY_ROTATED,
            metadata={
                "generation": new.generation,
                "provider": new.provider.value,
                "key_id": new.key_id,
                "previous_generation": old.generation,
                "previous_provider": old.provider.value,
            },
        )
