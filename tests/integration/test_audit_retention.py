"""Audit retention: ``POST /api/v1/audit/prune`` removes old entries up to a signed checkpoint
only, records ``audit.pruned``, and leaves a log that still verifies live and as an export.

Entry times are covered by their MACs, so the tests never rewrite them: they let the clock of
the audit service (``coffer.services.audit.time``) run ahead instead, which moves the prune
cutoff past the entries written before a chosen moment.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

import coffer.services.audit as audit_service
from coffer.audit.export import verify_export
from coffer.crypto.audit_keys import AuditPublicKey
from coffer.storage.tables import audit_checkpoints, audit_log
from tests.integration.team_helpers import (
    API,
    SECRET,
    Team,
    TeamFactory,
    bearer,
    member_token,
)

AUDIT = f"{API}/audit"
DAY = 86400.0
EVERY = 5


def _open(open_team: TeamFactory, **overrides: Any) -> Team:
    return open_team(audit_checkpoint_entries=EVERY, audit_seal_interval=3600.0, **overrides)


def _reads(team: Team, count: int) -> None:
    for _ in range(count):
        response = team.client.get(SECRET, headers=bearer(team.owner))
        assert response.status_code == 200, response.text


def _sealed(team: Team) -> list[dict[str, Any]]:
    """The sealed entries in the database, by leaf index."""
    with team.services.engine.connect() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.id, audit_log.c.leaf_index, audit_log.c.timestamp)
            .where(audit_log.c.leaf_index.is_not(None))
            .order_by(audit_log.c.leaf_index)
        )
        return [dict(row._mapping) for row in rows]


def _checkpoint_sizes(team: Team) -> list[int]:
    with team.services.engine.connect() as conn:
        return list(conn.execute(sa.select(audit_checkpoints.c.tree_size)).scalars())


def _clock_at(monkeypatch: pytest.MonkeyPatch, now: float) -> None:
    """Makes the audit service's clock read ``now`` (the prune cutoff is now minus days)."""
    monkeypatch.setattr(audit_service, "time", SimpleNamespace(time=lambda: now))


def _prune(team: Team, body: dict[str, Any] | None, token: str | None = None) -> Any:
    return team.client.post(f"{AUDIT}/prune", json=body, headers=bearer(token or team.owner))


def _pruned_entries(team: Team) -> list[dict[str, Any]]:
    response = team.client.get(AUDIT, params={"action": "audit.pruned"}, headers=bearer(team.owner))
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def _export_report(team: Team) -> tuple[dict[str, Any], Any]:
    response = team.client.get(f"{AUDIT}/export", headers=bearer(team.owner))
    assert response.status_code == 200, response.text
    key = AuditPublicKey.from_text(team.client.get(f"{AUDIT}/public-key").json()["pem"])
    lines = response.content.splitlines(keepends=True)
    return json.loads(lines[0]), verify_export(lines, key)


def test_prune_stops_at_a_checkpoint_records_itself_and_stays_verifiable(
    open_team: TeamFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pruning with the cutoff between two phases of activity removes the old entries up to
    the newest checkpoint before the cutoff, keeps the old entries after it, records
    audit.pruned with the count, and the rest verifies live and as an export."""
    team = _open(open_team)
    _reads(team, 9)
    team.services.audit.sealer.seal()
    while len(_sealed(team)) in _checkpoint_sizes(team):
        _reads(team, 1)  # the cutoff must fall inside a checkpoint range
        team.services.audit.sealer.seal()
    old = _sealed(team)
    time.sleep(0.01)
    cutoff = time.time()
    time.sleep(0.01)
    _reads(team, 7)
    team.services.audit.sealer.seal(checkpoint_now=True)
    boundary = max(size for size in _checkpoint_sizes(team) if size <= len(old))
    assert 0 < boundary < len(old)

    _clock_at(monkeypatch, cutoff + DAY)
    response = _prune(team, {"days": 1})
    assert response.status_code == 200, response.text
    assert response.json() == {"removed": boundary, "before_index": boundary}
    monkeypatch.undo()

    kept = _sealed(team)
    assert kept[0]["leaf_index"] == boundary
    assert [e["id"] for e in kept[: len(old) - boundary]] == [e["id"] for e in old[boundary:]]
    assert all(e["timestamp"] < cutoff for e in kept[: len(old) - boundary])
    (pruned,) = _pruned_entries(team)
    assert pruned["metadata"] == {
        "removed": boundary,
        "before_index": boundary,
        "retention_days": 1,
    }
    assert pruned["result"] == "success"

    report = team.client.post(f"{AUDIT}/verify", headers=bearer(team.owner)).json()
    assert report["ok"] is True, report
    assert report["start_index"] == boundary
    assert report["entries_checked"] == report["tree_size"] - boundary

    header, exported = _export_report(team)
    assert header["start_index"] == boundary
    assert exported.ok, exported.to_json()
    assert exported.start_index == boundary
    assert exported.entries == header["checkpoint"]["tree_size"] - boundary


def test_pruning_again_with_the_same_cutoff_removes_nothing(
    open_team: TeamFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second prune with the same cutoff removes nothing more, records audit.pruned with
    zero, and the log still verifies."""
    team = _open(open_team)
    _reads(team, 12)
    team.services.audit.sealer.seal(checkpoint_now=True)
    _clock_at(monkeypatch, time.time() + DAY)  # every entry so far is older than a day
    first = _prune(team, {"days": 1}).json()
    second = _prune(team, {"days": 1}).json()
    monkeypatch.undo()
    assert first["removed"] > 0
    assert second == {"removed": 0, "before_index": first["before_index"]}
    assert [e["metadata"]["removed"] for e in _pruned_entries(team)] == [0, first["removed"]]
    report = team.client.post(f"{AUDIT}/verify", headers=bearer(team.owner)).json()
    assert report["ok"] is True, report


def test_recent_entries_are_never_pruned(open_team: TeamFactory) -> None:
    """Pruning entries older than a day removes nothing from a log written just now."""
    team = _open(open_team)
    _reads(team, 6)
    before = _sealed(team)
    response = _prune(team, {"days": 1})
    assert response.status_code == 200, response.text
    assert response.json() == {"removed": 0, "before_index": 0}
    assert [e["id"] for e in _sealed(team)[: len(before)]] == [e["id"] for e in before]


def test_prune_uses_the_retention_setting(
    open_team: TeamFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With COFFER_AUDIT_RETENTION_DAYS set, the server's retention job runs (removing
    nothing recent) and a prune without days uses the setting."""
    team = _open(open_team, audit_retention_days=3)
    deadline = time.monotonic() + 5
    while not _pruned_entries(team):  # the retention job's first turn, at start-up
        assert time.monotonic() < deadline, "the retention job did not run"
        time.sleep(0.02)
    (job,) = _pruned_entries(team)
    assert job["actor"]["kind"] == "system" and job["metadata"]["removed"] == 0
    _reads(team, 12)
    team.services.audit.sealer.seal(checkpoint_now=True)
    _clock_at(monkeypatch, time.time() + 3 * DAY)
    response = _prune(team, None)
    monkeypatch.undo()
    assert response.status_code == 200, response.text
    assert response.json()["removed"] > 0
    ours = [e for e in _pruned_entries(team) if e["actor"]["kind"] != "system"]
    assert ours[0]["metadata"]["retention_days"] == 3
    assert ours[0]["metadata"]["removed"] == response.json()["removed"]


def test_prune_without_retention_or_days_is_400_naming_days(open_team: TeamFactory) -> None:
    """Without a retention setting, a prune without a positive number of days is refused
    with 400 naming ``days`` and removes nothing."""
    team = _open(open_team)
    _reads(team, 6)
    team.services.audit.sealer.seal(checkpoint_now=True)
    before = _sealed(team)
    for body in (None, {}, {"days": None}, {"days": 0}, {"days": -3}, {"days": "x"}):
        response = _prune(team, body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["field"] == "days", body
    assert _sealed(team) == before
    assert _pruned_entries(team) == []


def test_only_the_owner_may_prune(open_team: TeamFactory) -> None:
    """An admin is refused with 403 and nothing is removed."""
    team = _open(open_team)
    admin = member_token(team.client, team.owner, "admin@acme.test", "admin")
    team.services.audit.sealer.seal(checkpoint_now=True)
    before = _sealed(team)
    response = _prune(team, {"days": 1}, admin)
    assert response.status_code == 403, response.text
    assert _sealed(team) == before
