"""Attacks on the audit log, on the live database and on an export, each caught by
``POST /api/v1/audit/verify`` or by ``verify_export`` with the published public key, naming
the entry (or checkpoint) that was attacked.

Organization ``acme`` runs with checkpoints every 5 entries; activity over HTTP (a project,
secrets written and read) is created once per backend and its audit tables restored before
each test, which starts a fresh server on them and then attacks the tables directly with SQL
through an engine of its own, as someone with database access but without the vault's keys
would.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa

from coffer.audit.export import verify_export
from coffer.audit.records import canonical_from_values
from coffer.audit.sealer import SealRefused
from coffer.audit.verifier import VerifyReport
from coffer.bootstrap import build_services, initialise_vault
from coffer.config import Settings
from coffer.crypto.audit_keys import AuditPublicKey
from coffer.crypto.merkle import Frontier, leaf_hash
from coffer.storage import audit_store
from coffer.storage.json_text import canonical_json, json_text
from coffer.storage.tables import audit_checkpoints, audit_log, audit_tree
from tests.integration.team_helpers import (
    API,
    OWNER_EMAIL,
    PASSWORD,
    Team,
    bearer,
    cheap_settings,
    client_for,
    create_second_org,
    login,
)

AUDIT = f"{API}/audit"
EVERY = 5  # COFFER_AUDIT_CHECKPOINT_ENTRIES for these tests
KEYS = ["db/password", "db/user", "api/token", "smtp/password", "K1", "K2", "K3"]
LEAK = "TAMPER-LEAK-7d1f0c9e"


def _web_secret(key: str) -> str:
    return f"{API}/projects/web/environments/production/secrets/{key}"


@dataclass
class Log:
    """acme's server (HTTP client and services) and an attacker's own engine on its database."""

    team: Team
    attacker: sa.Engine
    values: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.team.owner)

    def post_verify(self, known: dict[str, Any] | None = None) -> Any:
        """POST /api/v1/audit/verify (with ``known`` as known_checkpoint) as acme's owner."""
        body = {"known_checkpoint": known} if known is not None else None
        return self.team.client.post(f"{AUDIT}/verify", json=body, headers=self.headers)

    def verify(self, known: dict[str, Any] | None = None) -> dict[str, Any]:
        """The verify report, asserting the request itself succeeded."""
        response = self.post_verify(known)
        assert response.status_code == 200, response.text
        report: dict[str, Any] = response.json()
        return report

    def read(self, key: str) -> None:
        """Reads a secret of project web over HTTP (one more audit entry)."""
        response = self.team.client.get(_web_secret(key), headers=self.headers)
        assert response.status_code == 200, response.text

    def seal(self) -> None:
        """Seals and signs a checkpoint, as the server's background sealer does."""
        self.team.services.audit.sealer.seal(checkpoint_now=True)

    def entries(self) -> list[dict[str, Any]]:
        """The sealed entries as stored, in leaf-index order."""
        with self.attacker.connect() as conn:
            rows = conn.execute(
                sa.select(audit_log)
                .where(audit_log.c.leaf_index.is_not(None))
                .order_by(audit_log.c.leaf_index)
            )
            return [dict(row._mapping) for row in rows]

    def entry(self, action: str, key: str) -> dict[str, Any]:
        """The sealed entry with this action and key (the first one)."""
        return next(e for e in self.entries() if e["action"] == action and e["key"] == key)

    def checkpoints(self) -> list[dict[str, Any]]:
        """The stored checkpoints by seq."""
        with self.attacker.connect() as conn:
            rows = conn.execute(sa.select(audit_checkpoints).order_by(audit_checkpoints.c.seq))
            return [dict(row._mapping) for row in rows]

    def run(self, *statements: sa.Executable) -> None:
        """Runs the attacker's statements in one transaction."""
        with self.attacker.begin() as conn:
            for statement in statements:
                conn.execute(statement)

    def rebuild_tree_state(self) -> None:
        """Recomputes the stored tree state (size and frontier) from the stored leaf hashes,
        as a careful attacker would after moving entries."""
        frontier = Frontier()
        frontier.extend(bytes(e["leaf_hash"]) for e in self.entries())
        self.run(
            sa.update(audit_tree).values(
                size=frontier.size, frontier=[h.hex() for h in frontier.subtrees]
            )
        )

    def row_values(self, entry_id: str) -> list[Any]:
        """The record values (RECORD_COLUMNS order, metadata as stored) of one entry."""
        with self.attacker.connect() as conn:
            row = audit_store.row_by_id(conn, entry_id)
        assert row is not None
        return list(row[:14])


@dataclass
class World:
    """acme's vault as the activity left it: settings, the owner's token, the secret values
    written, and a snapshot of the audit tables to restore before each attack."""

    settings: Settings
    owner: str
    values: dict[str, str]
    attacker: sa.Engine
    snapshot: dict[str, list[dict[str, Any]]]


def _snapshot(engine: sa.Engine) -> dict[str, list[dict[str, Any]]]:
    columns = [c for c in audit_log.c if c.name != "metadata"]
    with engine.connect() as conn:
        log_rows = conn.execute(
            sa.select(*columns, json_text(audit_log.c.metadata).label("metadata"))
        )
        return {
            "log": [dict(row._mapping) for row in log_rows],
            "checkpoints": [dict(r._mapping) for r in conn.execute(sa.select(audit_checkpoints))],
            "tree": [dict(r._mapping) for r in conn.execute(sa.select(audit_tree))],
        }


def _restore(engine: sa.Engine, snapshot: dict[str, list[dict[str, Any]]]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(audit_log))
        conn.execute(sa.delete(audit_checkpoints))
        conn.execute(sa.delete(audit_tree))
        conn.execute(sa.insert(audit_log), snapshot["log"])
        conn.execute(sa.insert(audit_checkpoints), snapshot["checkpoints"])
        conn.execute(sa.insert(audit_tree), snapshot["tree"])


@pytest.fixture(scope="module")
def world(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """acme with checkpoints every 5 entries and a project ``web`` whose seven secrets were
    each written and read over HTTP, everything sealed (once per module and backend)."""
    settings = cheap_settings(
        module_database_url,
        tmp_path_factory.mktemp("tamper"),
        audit_checkpoint_entries=EVERY,
        audit_seal_interval=3600.0,  # the tests seal when the background job would
    )
    initialise_vault(settings, "acme", owner_email=OWNER_EMAIL, owner_password=PASSWORD)
    services = build_services(settings)
    values: dict[str, str] = {}
    try:
        with client_for(services, settings) as client:
            owner = login(client, OWNER_EMAIL)["token"]
            headers = bearer(owner)
            response = client.post(f"{API}/projects", json={"name": "web"}, headers=headers)
            assert response.status_code == 201, response.text
            for number, key in enumerate(KEYS):
                values[key] = f"{LEAK}-{number}"
                response = client.put(
                    _web_secret(key), json={"value": values[key]}, headers=headers
                )
                assert response.status_code == 200, response.text
                assert client.get(_web_secret(key), headers=headers).status_code == 200
        services.audit.sealer.seal(checkpoint_now=True)
    finally:
        services.close()
    attacker = sa.create_engine(settings.database_url)
    try:
        yield World(settings, owner, values, attacker, _snapshot(attacker))
    finally:
        attacker.dispose()


@pytest.fixture
def log(world: World) -> Iterator[Log]:
    """The world's audit tables restored, a freshly started server on them whose sealer has
    just sealed one more read and signed the latest checkpoint, and the attacker's engine."""
    _restore(world.attacker, world.snapshot)
    services = build_services(world.settings)
    try:
        with client_for(services, world.settings) as client:
            log = Log(Team(client, services, world.settings, world.owner), world.attacker)
            log.values = world.values
            log.read("db/password")
            log.seal()
            assert len(log.checkpoints()) >= 5
            yield log
    finally:
        services.close()


def _first(report: dict[str, Any]) -> dict[str, Any]:
    assert report["ok"] is False, report
    problem: dict[str, Any] = report["first_problem"]
    assert problem is not None
    return problem


def test_untouched_log_verifies(log: Log) -> None:
    """Without an attack the live log verifies: every entry and checkpoint checked."""
    entries = log.entries()
    report = log.verify()
    assert report["ok"] is True, report
    assert report["first_problem"] is None and report["problems"] == []
    assert report["entries_checked"] == len(entries) == report["tree_size"]
    assert report["checkpoints_checked"] == len(log.checkpoints())
    assert report["latest_checkpoint"]["tree_size"] == len(entries)
    again = log.verify()  # the first verify's own entry is sealed and checked too
    assert again["ok"] is True and again["tree_size"] == len(entries) + 1


# -- Entries changed, deleted, inserted or moved in the live database -------------------------

FIELD_EDITS: dict[str, Any] = {
    "key": "api/other",
    "action": "secret.updated",
    "actor_id": "01JD3ZQ3T0000000000000000X",
    "metadata": {"version": 2, "via": "get"},
    "timestamp": -3600.0,  # added: an hour earlier
}
FIELD_POSITION = {"key": 9, "action": 3, "actor_id": 4, "metadata": 13, "timestamp": 2}


def _edited(target: dict[str, Any], name: str) -> Any:
    value = FIELD_EDITS[name]
    return target["timestamp"] + value if name == "timestamp" else value


@pytest.mark.parametrize("name", FIELD_EDITS)
def test_changed_field_is_named(log: Log, name: str) -> None:
    """Changing one field of a sealed entry makes verify fail naming that entry's id and
    index."""
    target = log.entry("secret.read", "api/token")
    log.run(
        sa.update(audit_log)
        .where(audit_log.c.id == target["id"])
        .values({name: _edited(target, name)})
    )
    problem = _first(log.verify())
    assert problem["kind"] == "entry_changed"
    assert problem["entry_id"] == target["id"]
    assert problem["index"] == target["leaf_index"]


@pytest.mark.parametrize("name", FIELD_EDITS)
def test_changed_field_with_recomputed_leaf_is_named_by_its_mac(log: Log, name: str) -> None:
    """An attacker who knows the scheme changes a field and recomputes the entry's leaf hash;
    the root no longer matches and the entry's MAC names it."""
    target = log.entry("secret.read", "api/token")
    values = log.row_values(target["id"])
    new_value = _edited(target, name)
    values[FIELD_POSITION[name]] = canonical_json(new_value) if name == "metadata" else new_value
    new_leaf = leaf_hash(canonical_from_values(values, target["leaf_index"]))
    assert new_leaf != target["leaf_hash"]
    log.run(
        sa.update(audit_log)
        .where(audit_log.c.id == target["id"])
        .values({name: new_value, "leaf_hash": new_leaf})
    )
    problem = _first(log.verify())
    assert problem["kind"] == "entry_changed"
    assert problem["entry_id"] == target["id"]
    assert problem["index"] == target["leaf_index"]
    assert "MAC" in problem["message"]


def test_deleted_middle_entry_is_named(log: Log) -> None:
    """Deleting a sealed entry in the middle makes verify fail at its index."""
    target = log.entry("secret.created", "smtp/password")
    log.run(sa.delete(audit_log).where(audit_log.c.id == target["id"]))
    problem = _first(log.verify())
    assert problem["kind"] == "entry_missing"
    assert problem["index"] == target["leaf_index"]
    assert f"#{target['leaf_index']}" in problem["message"]


def _forged_row(like: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of entry ``like`` under a new id, unsealed, with ``changes``."""
    row = {k: v for k, v in like.items() if k != "seq"}
    row.update(id="01JD3ZQ3T00000000000FORGED", leaf_index=None, leaf_hash=None)
    row.update(changes)
    return row


@pytest.mark.parametrize("mac", ["none", "copied"])
def test_inserted_unsealed_entry_is_named(log: Log, mac: str) -> None:
    """A row inserted into the table without a valid MAC (none, or another entry's) is
    refused by the sealer and named by verify."""
    like = log.entry("secret.read", "db/user")
    forged = _forged_row(like, key="db/root", mac=None if mac == "none" else like["mac"])
    log.run(sa.insert(audit_log).values(forged))
    report = log.verify()
    problem = _first(report)
    assert problem["kind"] == "entry_forged"
    assert problem["entry_id"] == forged["id"]
    assert all(e["id"] != forged["id"] for e in log.entries())  # never sealed


@pytest.mark.parametrize(
    "recompute_moved",
    [
        True,
        False,
    ],
    ids=["moved-leaves-recomputed", "moved-leaves-kept"],
)
def test_inserted_entry_with_shifted_indexes_is_named(log: Log, recompute_moved: bool) -> None:
    """A forged entry given a leaf index in the middle (later entries moved up one place, its
    leaf hash and the tree state recomputed) makes verify fail naming the forged entry."""
    like = log.entry("secret.read", "db/user")
    at = like["leaf_index"]
    forged = _forged_row(like, key="db/root", leaf_index=at)
    values = log.row_values(like["id"])
    values[1], values[9] = forged["id"], "db/root"
    forged["leaf_hash"] = leaf_hash(canonical_from_values(values, at))
    log.run(
        # Two steps around the unique index: away to negative numbers, then back, plus one.
        sa.update(audit_log)
        .where(audit_log.c.leaf_index >= at)
        .values(leaf_index=-audit_log.c.leaf_index - 2),
        sa.update(audit_log)
        .where(audit_log.c.leaf_index < 0)
        .values(leaf_index=-audit_log.c.leaf_index - 1),
        sa.insert(audit_log).values(forged),
    )
    if recompute_moved:
        log.run(
            *(
                sa.update(audit_log)
                .where(audit_log.c.id == e["id"])
                .values(
                    leaf_hash=leaf_hash(
                        canonical_from_values(log.row_values(e["id"]), e["leaf_index"])
                    )
                )
                for e in log.entries()
                if e["leaf_index"] > at
            )
        )
    log.rebuild_tree_state()
    problem = _first(log.verify())
    assert problem["index"] == at
    assert problem["entry_id"] == forged["id"]


def test_forged_entry_at_the_next_index_is_reported_on_every_verify(log: Log) -> None:
    """A forged entry placed at the next free leaf index (with a correct leaf hash) fails
    verify naming it, and keeps failing it after more activity (verify still answers)."""
    like = log.entry("secret.read", "db/user")
    size = len(log.entries())
    forged = _forged_row(like, key="db/root", leaf_index=size)
    values = log.row_values(like["id"])
    values[1], values[9] = forged["id"], "db/root"
    forged["leaf_hash"] = leaf_hash(canonical_from_values(values, size))
    log.run(sa.insert(audit_log).values(forged))
    problem = _first(log.verify())
    assert (problem["kind"], problem["entry_id"]) == ("entry_forged", forged["id"])
    log.read("K1")
    response = log.post_verify()
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is False


def test_swapped_leaf_indexes_are_named(log: Log) -> None:
    """Swapping the leaf indexes of two sealed entries makes verify fail at the earlier
    position, naming one of the two."""
    first = log.entry("secret.created", "db/user")
    second = log.entry("secret.read", "api/token")
    i, j = first["leaf_index"], second["leaf_index"]
    log.run(
        sa.update(audit_log).where(audit_log.c.id == first["id"]).values(leaf_index=-1),
        sa.update(audit_log).where(audit_log.c.id == second["id"]).values(leaf_index=i),
        sa.update(audit_log).where(audit_log.c.id == first["id"]).values(leaf_index=j),
    )
    problem = _first(log.verify())
    assert problem["index"] == i
    assert problem["entry_id"] in {first["id"], second["id"]}


def test_swapped_entries_with_recomputed_leaves_fail_at_their_range(log: Log) -> None:
    """Swapping two entries' places and recomputing both leaf hashes still fails verify at
    the checkpoint range that holds them."""
    first = log.entry("secret.created", "db/user")
    second = log.entry("secret.read", "db/user")
    i, j = first["leaf_index"], second["leaf_index"]
    assert j == i + 1
    leaf_i = leaf_hash(canonical_from_values(log.row_values(second["id"]), i))
    leaf_j = leaf_hash(canonical_from_values(log.row_values(first["id"]), j))
    log.run(
        sa.update(audit_log).where(audit_log.c.id == first["id"]).values(leaf_index=-1),
        sa.update(audit_log)
        .where(audit_log.c.id == second["id"])
        .values(leaf_index=i, leaf_hash=leaf_i),
        sa.update(audit_log)
        .where(audit_log.c.id == first["id"])
        .values(leaf_index=j, leaf_hash=leaf_j),
    )
    problem = _first(log.verify())
    start = max(c["tree_size"] for c in log.checkpoints() if c["tree_size"] <= i)
    stop = min(c["tree_size"] for c in log.checkpoints() if c["tree_size"] > i)
    assert problem["kind"] == "root_mismatch"
    assert problem["index"] == start
    assert f"entries #{start} to #{stop - 1} " in problem["message"]


# -- Truncation, checkpoints and replays in the live database -----------------------------------


def test_truncated_tail_is_named(log: Log) -> None:
    """Deleting the newest sealed entries makes verify fail at the first one removed."""
    size = len(log.entries())
    log.run(sa.delete(audit_log).where(audit_log.c.leaf_index >= size - 3))
    problem = _first(log.verify())
    assert problem["kind"] == "truncated"
    assert problem["index"] == size - 3


def test_damaged_tree_state_is_reported(log: Log) -> None:
    """A tree state row whose frontier was emptied (so it no longer fits its size) makes
    verify answer with ok=false rather than fail."""
    log.run(sa.update(audit_tree).values(frontier=[]))
    log.read("K1")
    response = log.post_verify()
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is False


def _truncate_to_checkpoint(log: Log, *, roll_back_tree: bool) -> dict[str, Any]:
    """Deletes the entries after checkpoint #2 and every later checkpoint (and, with
    ``roll_back_tree``, sets the tree state back to #2's); returns #2."""
    keep = next(c for c in log.checkpoints() if c["seq"] == 2)
    statements: list[sa.Executable] = [
        sa.delete(audit_log).where(audit_log.c.leaf_index >= keep["tree_size"]),
        sa.delete(audit_checkpoints).where(audit_checkpoints.c.seq > keep["seq"]),
    ]
    if roll_back_tree:
        statements.append(
            sa.update(audit_tree).values(size=keep["tree_size"], frontier=keep["frontier"])
        )
    log.run(*statements)
    return keep


def test_truncation_with_its_checkpoints_deleted_is_named(log: Log) -> None:
    """Deleting the newest entries and the checkpoints that cover them still fails verify
    at the first entry removed."""
    keep = _truncate_to_checkpoint(log, roll_back_tree=False)
    problem = _first(log.verify())
    assert problem["index"] == keep["tree_size"]


def test_rollback_to_an_old_checkpoint_is_caught_by_the_running_sealer(log: Log) -> None:
    """Truncating entries, their checkpoints and the tree state back to an old checkpoint is
    caught against the checkpoint the running server signed last."""
    signed_last = log.checkpoints()[-1]
    keep = _truncate_to_checkpoint(log, roll_back_tree=True)
    problem = _first(log.verify())
    assert problem["kind"] in {"rolled_back", "truncated"}
    assert f"size {signed_last['tree_size']}" in problem["message"]
    assert f"size {keep['tree_size']}" in problem["message"]


def test_rollback_followed_by_new_activity_is_caught_by_the_running_sealer(log: Log) -> None:
    """A rollback to an old checkpoint stays caught when users keep working before the next
    verify (the running server remembers the checkpoint it signed)."""
    _truncate_to_checkpoint(log, roll_back_tree=True)
    log.read("K1")
    with pytest.raises(SealRefused):
        log.seal()  # the background sealer's next turn refuses to sign over the rollback
    problem = _first(log.verify())
    assert problem["kind"] in {"rolled_back", "forked", "checkpoint_replayed"}


def test_rollback_is_caught_against_a_known_checkpoint_after_a_restart(log: Log) -> None:
    """An auditor's saved checkpoint (from an earlier verify report) catches a rollback even
    after new activity and a server restart, which lose the running sealer's memory."""
    saved = log.verify()["latest_checkpoint"]
    _truncate_to_checkpoint(log, roll_back_tree=True)
    settings = log.team.settings
    services = build_services(settings)
    try:
        with client_for(services, settings) as client:
            token = login(client, OWNER_EMAIL, PASSWORD)["token"]
            client.get(_web_secret("K1"), headers=bearer(token))
            response = client.post(
                f"{AUDIT}/verify", json={"known_checkpoint": saved}, headers=bearer(token)
            )
            assert response.status_code == 200, response.text
            problem = _first(response.json())
    finally:
        services.close()
    assert problem["kind"] in {"rolled_back", "forked"}
    assert f"#{saved['seq']}" in problem["message"]


CHECKPOINT_EDITS: dict[str, Any] = {
    "root_hash": lambda c: bytes(32),
    "signature": lambda c: bytes(64),
    "tree_size": lambda c: c["tree_size"] + 1,
    "timestamp": lambda c: c["timestamp"] + 1.0,
}


@pytest.mark.parametrize("name", CHECKPOINT_EDITS)
def test_edited_checkpoint_is_named(log: Log, name: str) -> None:
    """Editing a stored checkpoint's root, signature, size or time makes verify fail naming
    that checkpoint."""
    second = log.checkpoints()[1]
    assert second["seq"] == 2
    log.run(
        sa.update(audit_checkpoints)
        .where(audit_checkpoints.c.seq == 2)
        .values({name: CHECKPOINT_EDITS[name](second)})
    )
    problem = _first(log.verify())
    assert problem["kind"] == "checkpoint_signature"
    assert "checkpoint #2 " in problem["message"]


def test_deleted_middle_checkpoint_is_named(log: Log) -> None:
    """Deleting a checkpoint in the middle makes verify fail naming the missing number."""
    log.run(sa.delete(audit_checkpoints).where(audit_checkpoints.c.seq == 3))
    problem = _first(log.verify())
    assert problem["kind"] == "checkpoint_missing"
    assert "#3" in problem["message"]


def test_replayed_checkpoint_under_a_new_number_is_named(log: Log) -> None:
    """A copy of checkpoint #1 stored under the next free number fails verify naming it."""
    first = log.checkpoints()[0]
    seq = log.checkpoints()[-1]["seq"] + 1
    log.run(sa.insert(audit_checkpoints).values({**first, "seq": seq}))
    problem = _first(log.verify())
    assert problem["kind"] in {"checkpoint_signature", "checkpoint_replayed"}
    assert f"#{seq}" in problem["message"]


def test_replayed_checkpoint_after_deleting_newer_ones_is_caught(log: Log) -> None:
    """Deleting every checkpoint after #1, so that the old one is the latest again, fails
    verify against the checkpoint the running server signed last."""
    log.run(sa.delete(audit_checkpoints).where(audit_checkpoints.c.seq > 1))
    problem = _first(log.verify())
    assert problem["kind"] in {"rolled_back", "checkpoint_replayed", "forked"}


def test_replayed_checkpoint_after_deleting_newer_ones_fails_a_known_checkpoint(
    log: Log,
) -> None:
    """With the checkpoint an auditor saved, deleting every checkpoint after #1 fails
    verify naming the saved checkpoint."""
    saved = log.verify()["latest_checkpoint"]
    log.run(sa.delete(audit_checkpoints).where(audit_checkpoints.c.seq > 1))
    problem = _first(log.verify(known=saved))
    assert problem["kind"] in {"rolled_back", "forked"}
    assert f"#{saved['seq']}" in problem["message"]


# -- Exports ----------------------------------------------------------------------------------


@dataclass
class Export:
    """An export's lines (without newlines) and the key that verifies it."""

    lines: list[bytes]
    key: AuditPublicKey

    def verify(self, lines: list[bytes] | None = None) -> VerifyReport:
        return verify_export(
            [line + b"\n" for line in (self.lines if lines is None else lines)], self.key
        )

    def entry_positions(self) -> dict[int, int]:
        """Leaf index -> line number (0-based) of every entry line."""
        return {
            json.loads(line)["index"]: n
            for n, line in enumerate(self.lines)
            if line.startswith(b'{"_leaf"')
        }


def _public_key(log: Log) -> AuditPublicKey:
    response = log.team.client.get(f"{AUDIT}/public-key", params={"format": "pem"})
    assert response.status_code == 200, response.text
    key = AuditPublicKey.from_text(response.text)
    body = log.team.client.get(f"{AUDIT}/public-key").json()
    assert body["key_id"] == key.key_id
    assert AuditPublicKey.from_text(body["public_key"]).raw == key.raw
    return key


def _export(log: Log, **params: Any) -> Export:
    response = log.team.client.get(f"{AUDIT}/export", params=params, headers=log.headers)
    assert response.status_code == 200, response.text
    return Export(response.content.splitlines(), _public_key(log))


@pytest.fixture
def export(log: Log) -> Export:
    """A JSONL export of acme's log as its owner downloads it."""
    return _export(log)


def _problem(report: VerifyReport) -> Any:
    assert not report.ok, report.to_json()
    problem = report.first_problem()
    assert problem is not None
    return problem


def test_untouched_export_verifies(log: Log, export: Export) -> None:
    """An export as downloaded verifies with the public key: all entries, every checkpoint."""
    report = export.verify()
    assert report.ok, report.to_json()
    header = json.loads(export.lines[0])
    assert header["start_index"] == 0
    assert report.entries == header["checkpoint"]["tree_size"] == report.tree_size
    assert report.entries == len(export.entry_positions())
    assert report.checkpoints >= report.entries // EVERY
    assert report.latest is not None and report.latest.seq == header["checkpoint"]["seq"]


def _target_line(export: Export, key: str = "api/token") -> tuple[int, dict[str, Any]]:
    for n, line in enumerate(export.lines):
        if line.startswith(b'{"_leaf"'):
            data = json.loads(line)
            if data["key"] == key and data["action"] == "secret.read":
                return n, data
    raise AssertionError(f"no read of {key} in the export")


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("ascii")


LINE_EDITS: dict[str, Any] = {
    "key": ("key", "api/other"),
    "action": ("action", "secret.updated"),
    "actor": ("actor", {"id": "01JD3ZQ3T0000000000000000X", "kind": "user"}),
    "metadata": ("metadata", {"version": 2, "via": "get"}),
    "time": ("time", 1.0),
    "result": ("result", "failure"),
}


@pytest.mark.parametrize("name", LINE_EDITS)
def test_export_with_an_edited_line_is_named(export: Export, name: str) -> None:
    """Editing one field of an entry line makes the export fail naming that entry."""
    n, data = _target_line(export)
    assert _dump(data) == export.lines[n]  # the line is canonical JSON
    lines = list(export.lines)
    lines[n] = _dump({**data, name: LINE_EDITS[name][1]})
    problem = _problem(export.verify(lines))
    assert problem.kind == "entry_changed"
    assert problem.entry_id == data["id"]
    assert problem.index == data["index"]


def test_export_with_an_edited_line_and_recomputed_leaf_fails_at_its_range(
    export: Export,
) -> None:
    """Editing an entry line and recomputing its leaf hash fails at the checkpoint range
    that holds it."""
    n, data = _target_line(export)
    edited = {**data, "key": "api/other"}
    del edited["_leaf"]
    edited["_leaf"] = leaf_hash(_dump(edited)).hex()
    lines = list(export.lines)
    lines[n] = _dump(edited)
    problem = _problem(export.verify(lines))
    sizes = [
        json.loads(line)["tree_size"]
        for line in export.lines[1:]
        if json.loads(line).get("type") == "checkpoint"
    ]
    start = max(size for size in sizes if size <= data["index"])
    stop = min(size for size in sizes if size > data["index"])
    assert problem.kind == "root_mismatch"
    assert problem.index == start
    assert f"entries #{start} to #{stop - 1} " in problem.message


def test_export_with_a_deleted_line_is_named(export: Export) -> None:
    """Deleting an entry line makes the export fail at its index."""
    n, data = _target_line(export)
    problem = _problem(export.verify(export.lines[:n] + export.lines[n + 1 :]))
    assert problem.kind == "entry_missing"
    assert problem.index == data["index"]


def test_export_with_an_inserted_copy_is_named(export: Export) -> None:
    """A copy of an entry line inserted further on makes the export fail naming the copy."""
    n, data = _target_line(export, "db/user")
    later, _ = _target_line(export, "K1")
    lines = [*export.lines[: later + 1], export.lines[n], *export.lines[later + 1 :]]
    problem = _problem(export.verify(lines))
    assert problem.kind == "entry_out_of_order"
    assert problem.entry_id == data["id"]


def test_export_with_swapped_lines_is_named(export: Export) -> None:
    """Swapping two adjacent entry lines makes the export fail at the first of them."""
    positions = export.entry_positions()
    index = next(i for i in sorted(positions) if positions.get(i + 1) == positions[i] + 1)
    a, b = positions[index], positions[index + 1]
    lines = list(export.lines)
    lines[a], lines[b] = lines[b], lines[a]
    problem = _problem(export.verify(lines))
    assert problem.index == index


def test_truncated_export_is_named(export: Export) -> None:
    """Cutting the newest entry lines (and the checkpoint lines after them) off an export
    makes it fail at the first entry removed, against the header's checkpoint."""
    positions = export.entry_positions()
    cut = max(positions) - 2
    problem = _problem(export.verify(export.lines[: positions[cut]]))
    assert problem.kind == "truncated"
    assert problem.index == cut


def test_export_with_an_old_checkpoint_appended_is_named(export: Export) -> None:
    """Appending a copy of an earlier checkpoint line makes the export fail as a replay."""
    old = next(line for line in export.lines[1:] if json.loads(line).get("type") == "checkpoint")
    problem = _problem(export.verify([*export.lines, old]))
    assert problem.kind == "checkpoint_replayed"
    assert f"#{json.loads(old)['seq']}" in problem.message


def test_export_with_an_older_header_is_named(log: Log, export: Export) -> None:
    """Replacing an export's header with the header of an older export makes it fail as a
    replay of the older checkpoint."""
    for key in ("K1", "K2", "K3"):
        log.read(key)
    newer = _export(log)
    old_header = json.loads(export.lines[0])["checkpoint"]
    report = export.verify([export.lines[0], *newer.lines[1:]])
    problem = _problem(report)
    assert problem.index == old_header["tree_size"]  # nothing after it is vouched for
    replays = [p for p in report.problems if p.kind == "checkpoint_replayed"]
    assert replays and f"#{old_header['seq']}" in replays[0].message
    assert newer.verify().ok


def test_export_since_verifies_from_its_prefix(log: Log) -> None:
    """An export from ``since`` starts at the first entry written then and verifies from its
    header's prefix."""
    entries = log.entries()
    middle = entries[len(entries) // 2 + 1]
    export = _export(log, since=repr(middle["timestamp"]))
    header = json.loads(export.lines[0])
    assert header["start_index"] == middle["leaf_index"]
    assert min(export.entry_positions()) == middle["leaf_index"]
    report = export.verify()
    assert report.ok, report.to_json()
    assert report.start_index == middle["leaf_index"]
    assert report.entries == header["checkpoint"]["tree_size"] - middle["leaf_index"]
    # the prefix is part of what verifies: a wrong one fails
    broken = {**header, "prefix": [bytes(32).hex()] * len(header["prefix"])}
    assert header["prefix"]
    assert not export.verify([_dump(broken), *export.lines[1:]]).ok


def test_other_organizations_export_redacts_acme_and_verifies(log: Log) -> None:
    """Another organization's owner exports the same log with acme's entries reduced to
    their leaf hashes, and the export still verifies."""
    team = log.team
    create_second_org(team.services, team.settings, "globex", "owner@globex.test")
    token = login(team.client, "owner@globex.test")["token"]
    assert (
        team.client.post(
            f"{API}/projects", json={"name": "gadgets"}, headers=bearer(token)
        ).status_code
        == 201
    )
    acme_org = team.client.get(f"{API}/whoami", headers=log.headers).json()["org_id"]
    acme_ids = [e["id"] for e in log.entries() if e["org_id"] == acme_org]
    response = team.client.get(f"{AUDIT}/export", headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.content
    export = Export(body.splitlines(), _public_key(log))
    report = export.verify()
    assert report.ok, report.to_json()
    redacted = [line for line in export.lines if line.endswith(b',"redacted":true}')]
    assert len(acme_ids) > 2 * len(KEYS)
    assert len(redacted) >= len(acme_ids)
    for entry_id in acme_ids:
        assert entry_id.encode() not in body
    for key in KEYS:
        assert f'"{key}"'.encode() not in body
    assert b"gadgets" in body


# -- Secret values stay out of every audit output ------------------------------------------------


def test_secret_values_never_reach_audit_rows_exports_or_reports(log: Log) -> None:
    """Values written and read appear in no audit row or checkpoint, no export format and no
    verify report (as text, hex or base64)."""
    headers = log.headers
    env = f"{API}/projects/web/environments/production"
    response = log.team.client.get(f"{env}/export", params={"format": "dotenv"}, headers=headers)
    assert response.status_code == 200 and LEAK in response.text  # the values were read
    outputs = [json.dumps(log.verify()).encode()]
    for fmt in ("jsonl", "cef", "syslog"):
        response = log.team.client.get(f"{AUDIT}/export", params={"format": fmt}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.content.count(b"\n") > len(KEYS)
        outputs.append(response.content)
    with log.attacker.connect() as conn:
        for table in (audit_log, audit_checkpoints, audit_tree):
            for row in conn.execute(sa.select(table)):
                outputs.append(repr(tuple(row)).encode())
                outputs.extend(bytes(c) for c in row if isinstance(c, bytes | memoryview))
    blob = b"\n".join(outputs)
    assert b"api/token" in blob  # names are recorded
    for value in log.values.values():
        raw = value.encode()
        for form in (raw, raw.hex().encode(), base64.b64encode(raw)):
            assert form not in blob
    assert LEAK.encode() not in blob
