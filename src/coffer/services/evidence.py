"""The sections of an evidence pack for a period, as JSON-ready data (see
``ComplianceService.evidence``). Everything is read inside the caller's read snapshot;
people keep their identity ids and their names (a person may be deleted later).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from coffer.domain.events import Event
from coffer.domain.evidence import CurrentMember as Current
from coffer.domain.evidence import (
    EvidencePeriod,
    MembershipEvent,
    PastMember,
    by_area_and_week,
    count_by,
    iso_time,
    maybe_iso,
    members_at,
    permission_matrix,
    week_starts,
)
from coffer.domain.inventory import Sensitivity
from coffer.domain.rotation_schedule import RotationState
from coffer.services.compliance_facts import Deployment, SecretStanding, standings
from coffer.services.retention_text import retention_policy
from coffer.storage import access_store, evidence_store, user_store
from coffer.storage.compliance_access_store import identity_names

UNSET = "unset"
STATE_ORDER = [state.value for state in reversed(RotationState)]  # ok first
_ROTATOR_MATCH_SECONDS = 5.0


def build(
    conn: sa.Connection, org_id: str, period: EvidencePeriod, now: float, deployment: Deployment
) -> dict[str, Any]:
    """Returns every section of the evidence of ``period`` (the control table is added by
    the service)."""
    start, end = period.start, period.data_end(now)
    names = identity_names(conn, org_id)
    secrets = standings(conn, org_id, now)
    leavers = evidence_store.offboardings_all(conn, org_id)
    schedule = sorted(
        (s for s in secrets if s.standing.next_due is not None),
        key=lambda s: (s.standing.next_due or 0.0, s.row.name),
    )
    return {
        "inventory": [_secret_json(s) for s in secrets],
        "rotation_history": _rotation_history(conn, org_id, start, end, names),
        "overdue": [
            _secret_json(s)
            for s in secrets
            if s.standing.state in (RotationState.OVERDUE, RotationState.ROTATE_NOW)
        ],
        "rotation_schedule": [_secret_json(s) for s in schedule],
        "access_requests": [
            _named(r, names, "requester_id", "decided_by")
            for r in evidence_store.requests_in(conn, org_id, start, end)
        ],
        "approvals": [
            _named(a, names, "requested_by", "decided_by")
            for a in evidence_store.approvals_in(conn, org_id, start, end)
        ],
        "access_reviews": _reviews(conn, org_id, start, end, names),
        "offboardings": [
            _named(o, names, "offboarded_by")
            for o in leavers
            if period.contains(o["offboarded_at"])
        ],
        "key_rotations": _key_rotations(conn, org_id, start, end, names),
        "people": _people(conn, org_id, end, leavers),
        "permission_matrix": permission_matrix(),
        "grants": _grants(conn, org_id, now),
        "retention": retention_policy(deployment, evidence_store.oldest_audit_entry(conn), now),
        "charts": _charts(conn, org_id, start, end, secrets),
    }


def _time_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every ``*_at`` Unix time as an RFC 3339 string."""
    return {
        name: maybe_iso(value) if name.endswith("_at") and not isinstance(value, str) else value
        for name, value in row.items()
    }


def _named(row: dict[str, Any], names: dict[str, str], *id_fields: str) -> dict[str, Any]:
    """The row with its times as text and, next to each identity id field, its name."""
    out = _time_fields(row)
    out.pop("org_id", None)
    for field in id_fields:
        identity = row.get(field)
        out[f"{field.removesuffix('_id')}_name"] = (
            names.get(identity, identity) if identity else None
        )
    return out


def _secret_json(s: SecretStanding) -> dict[str, Any]:
    row, standing = s.row, s.standing
    return {
        "project": row.project,
        "environment": row.environment,
        "key": row.key,
        "owner": row.owner,
        "system": row.system,
        "description": row.description,
        "sensitivity": row.sensitivity,
        "rotation_days": standing.period_days,
        "rotation_days_from": standing.period_source.value if standing.period_source else None,
        "current_version": row.current_version,
        "created_at": iso_time(row.created_at),
        "last_rotated": iso_time(row.last_rotated),
        "next_due": maybe_iso(standing.next_due),
        "state": standing.state.value,
        "why": standing.why(),
        "exposed": bool(standing.exposures),
        "flagged": bool(standing.flags),
        "rotator": row.rotator,
        "policy_violations": list(s.violations),
    }


def _rotation_history(
    conn: sa.Connection, org_id: str, start: float, end: float, names: dict[str, str]
) -> list[dict[str, Any]]:
    """Every version written in the period: who wrote it, when, whether a rotator did
    (a ``rotation.completed`` entry for that secret naming the version, or written within
    a few seconds of it)."""
    runs = evidence_store.audit_entries(
        conn, org_id, (Event.ROTATION_COMPLETED,), start=start, end=end + _ROTATOR_MATCH_SECONDS
    )
    history = []
    for version in evidence_store.versions_in(conn, org_id, start, end):
        place = (version["project"], version["environment"], version["key"])
        by_rotator = any(
            (run["project"], run["environment"], run["key"]) == place
            and (
                (run["metadata"] or {}).get("version") == version["version"]
                or abs(run["timestamp"] - version["created_at"]) <= _ROTATOR_MATCH_SECONDS
            )
            for run in runs
        )
        author = version["author_id"]
        history.append(
            {
                **_time_fields(version),
                "author": names.get(author, f"{version['author_kind']} {author}"),
                "change": "created" if version["version"] == 1 else "rotated",
                "by_rotator": by_rotator,
            }
        )
    return history


def _reviews(
    conn: sa.Connection, org_id: str, start: float, end: float, names: dict[str, str]
) -> list[dict[str, Any]]:
    reviews = []
    for review in evidence_store.reviews_in(conn, org_id, start, end):
        items = [
            _named({k: v for k, v in item.items() if k != "review_id"}, names, "decided_by")
            for item in review.pop("items")
        ]
        reviews.append({**_named(review, names, "created_by", "signed_off_by"), "items": items})
    return reviews


def _key_rotations(
    conn: sa.Connection, org_id: str, start: float, end: float, names: dict[str, str]
) -> dict[str, Any]:
    entries = evidence_store.audit_entries(
        conn,
        org_id,
        evidence_store.KEY_ACTIONS,
        start=start,
        end=end,
        system_too=True,
    )
    return {
        "events": [
            {
                "time": iso_time(e["timestamp"]),
                "action": e["action"],
                "actor": names.get(e["actor_id"], e["actor_kind"]) if e["actor_id"] else "system",
                "project": e["project"],
                "result": e["result"],
                "metadata": e["metadata"],
            }
            for e in entries
        ],
        "data_keys": [
            {
                "project": k["project"],
                "version": k["version"],
                "created_at": iso_time(k["created_at"]),
                "current": k["version"] == k["current_version"],
            }
            for k in evidence_store.data_key_versions(conn, org_id)
        ],
    }


def _membership_events(conn: sa.Connection, org_id: str) -> list[MembershipEvent]:
    events: list[MembershipEvent] = []
    for entry in evidence_store.audit_entries(conn, org_id, evidence_store.MEMBERSHIP_ACTIONS):
        at, meta = float(entry["timestamp"]), entry["metadata"] or {}
        action = entry["action"]
        if action == Event.OWNERSHIP_TRANSFERRED:
            events.append(MembershipEvent(at, "owner_to", str(meta.get("to", ""))))
            events += [
                MembershipEvent(at, "owner_from", email)
                for email in str(meta.get("from", "")).split(",")
                if "@" in email
            ]
        elif "email" in meta:
            kind = {
                Event.MEMBER_JOINED: "joined",
                Event.ROLE_CHANGED: "role_changed",
            }.get(action, "left")
            role = meta.get("role") if kind == "joined" else meta.get("to")
            events.append(MembershipEvent(at, kind, str(meta["email"]), role, meta.get("from")))
    return events


def _summary_role(offboarding: dict[str, Any]) -> str | None:
    summary = offboarding.get("summary")
    role = summary.get("role") if isinstance(summary, dict) else None
    return role if isinstance(role, str) else None


def _people(
    conn: sa.Connection, org_id: str, end: float, leavers: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Who was a member at the period's end, with their role then, and the machine
    identities that existed by then."""
    events = _membership_events(conn, org_id)
    current = [
        Current(m.id, m.email, m.role.value, m.created_at, m.mfa_enabled)
        for m in user_store.list_members(conn, org_id)
    ]
    departed = [
        PastMember(o["user_id"], o["email"], o["offboarded_at"], "offboarded", _summary_role(o))
        for o in leavers
    ] + [PastMember(None, e.email, e.at, "removed") for e in events if e.kind == "left"]
    grants_of: dict[str, list[str]] = {}
    for grant in access_store.list_grants(conn, org_id):
        scope = f"{grant.project}/{grant.environment}" if grant.environment else grant.project
        grants_of.setdefault(grant.identity_id, []).append(f"{scope}:{grant.access.value}")
    people = [
        {
            "kind": "person",
            "id": m.id,
            "name": m.email,
            "role": m.role,
            "joined_at": maybe_iso(m.joined_at),
            "status": m.status,
            "mfa_enabled": m.mfa_enabled,
            "grants": grants_of.get(m.id or "", []),
        }
        for m in members_at(end, current, departed, events)
    ]
    machines = [
        {
            "kind": "machine",
            "id": machine.id,
            "name": machine.name,
            "role": None,
            "joined_at": iso_time(machine.created_at),
            "status": "machine",
            "allowed_ips": list(machine.allowed_ips),
            "grants": grants_of.get(machine.id, []),
        }
        for machine in access_store.list_machines(conn, org_id)
        if machine.created_at <= end
    ]
    return people + machines


def _grants(conn: sa.Connection, org_id: str, now: float) -> list[dict[str, Any]]:
    by_grant = evidence_store.requests_by_grant(conn, org_id)
    return [
        {
            "id": g.id,
            "identity_id": g.identity_id,
            "identity_kind": g.identity_kind,
            "identity": g.identity_name,
            "project": g.project,
            "environment": g.environment,
            "access": g.access.value,
            "expires_at": maybe_iso(g.expires_at),
            "created_at": iso_time(g.created_at),
            "active": g.expires_at is None or g.expires_at > now,
            "request_id": by_grant.get(g.id),
        }
        for g in access_store.list_grants(conn, org_id)
    ]


def _charts(
    conn: sa.Connection, org_id: str, start: float, end: float, secrets: list[SecretStanding]
) -> dict[str, Any]:
    weeks = week_starts(start, end)
    counts = evidence_store.audit_week_counts(conn, org_id, start, end)
    reads = [0] * len(weeks)
    for week, action, count in counts:
        if action == Event.SECRET_READ and 0 <= week < len(weeks):
            reads[week] += count
    sensitivities = [s.value for s in Sensitivity] + [UNSET]
    return {
        "secrets_by_sensitivity": count_by(
            (s.row.sensitivity or UNSET for s in secrets), sensitivities
        ),
        "rotation_states": count_by((s.standing.state.value for s in secrets), STATE_ORDER),
        "weeks": [iso_time(week)[:10] for week in weeks],
        "audit_events_per_week": by_area_and_week(counts, len(weeks)),
        "reads_per_week": reads,
    }
