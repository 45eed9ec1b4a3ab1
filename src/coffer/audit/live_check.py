"""Verifies the audit log stored in a vault database, seal and all.

Seals what is waiting and signs a fresh checkpoint first, so the check covers every entry
written so far. With the vault's keys at hand a failing range is re-read and each entry's
MAC checked, which names the altered entry even when its leaf hash was recomputed too; rows
that carry no valid MAC and were never sealed are reported as inserted by other means.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.checkpoints import Checkpoint
from coffer.audit.records import RECORD_WIDTH, canonical_from_values
from coffer.audit.sealer import AuditSealer, SealRefused, checkpoint_from_row
from coffer.audit.verifier import LogVerifier, Problem, VerifyReport
from coffer.crypto.audit_keys import AuditKeys
from coffer.crypto.merkle import Frontier
from coffer.storage import audit_store


def verify_database(
    engine: Engine,
    keys: AuditKeys,
    sealer: AuditSealer | None = None,
    *,
    known: Checkpoint | None = None,
) -> VerifyReport:
    """Verifies every stored entry against the signed checkpoints (after sealing with
    ``sealer`` when given). ``known`` is a checkpoint seen earlier that the log must still
    contain; the sealer's last signed checkpoint is used when none is given."""
    rejected: list[str] = []
    refused: SealRefused | None = None
    if sealer is not None:
        try:
            rejected = sealer.seal(checkpoint_now=True).rejected
        except SealRefused as exc:
            refused = exc
        known = known or sealer.highest_signed
    with engine.connect() as conn:
        return verify_stored_log(conn, keys, known=known, rejected=rejected, refused=refused)


def verify_stored_log(
    conn: sa.Connection,
    keys: AuditKeys,
    *,
    known: Checkpoint | None = None,
    rejected: Sequence[str] = (),
    refused: SealRefused | None = None,
) -> VerifyReport:
    """Verifies the log as ``conn`` sees it (no sealing): every sealed entry against the
    signed checkpoints, ``known`` included. ``rejected`` and ``refused`` are what a seal
    just before reported."""
    state = audit_store.read_tree(conn)
    checkpoints = [checkpoint_from_row(row) for row in audit_store.checkpoint_rows(conn)]
    start = state.pruned_before
    start_frontier = Frontier()
    missing_prefix = False
    if start:
        anchor = next((c for c in checkpoints if c.tree_size == start), None)
        if anchor is None:
            missing_prefix = True
            start = 0
        else:
            start_frontier = Frontier(start, anchor.frontier)

    def diagnose(first: int, stop: int) -> Problem | None:
        for row in audit_store.sealed_rows(conn, first, stop):
            values = row[:RECORD_WIDTH]
            if not keys.mac_matches(canonical_from_values(values, None), _bytes(row[-1])):
                return Problem(
                    "entry_changed",
                    f"entry #{values[0]} ({values[1]}) was altered or inserted outside "
                    "coffer: its MAC does not match its content",
                    int(values[0]),
                    str(values[1]),
                )
        return None

    verifier = LogVerifier(
        keys.public, start_index=start, start_frontier=start_frontier, diagnose=diagnose
    )
    if refused is not None:
        verifier.problem(Problem(refused.kind, refused.message))
    if missing_prefix:
        verifier.problem(
            Problem(
                "prefix_unverifiable",
                f"entries before #{state.pruned_before} were pruned but no checkpoint at "
                "that size remains to start from",
            )
        )
    if known is not None:
        verifier.watch(known)
    for checkpoint in checkpoints:
        verifier.add_checkpoint(checkpoint)
    for row in audit_store.sealed_rows(conn, start):
        values = row[:RECORD_WIDTH]
        index = int(values[0])
        verifier.add_entry(
            index,
            str(values[1]),
            canonical_from_values(values, index),
            _bytes(row[RECORD_WIDTH]),
        )
    for entry_id in rejected:
        verifier.problem(
            Problem(
                "entry_forged",
                f"entry {entry_id} was inserted outside coffer (no valid MAC); it was "
                "left out of the log",
                None,
                entry_id,
            )
        )
    return verifier.finish(known=known)


def _bytes(value: object) -> bytes | None:
    return None if value is None else bytes(value)  # type: ignore[call-overload]
