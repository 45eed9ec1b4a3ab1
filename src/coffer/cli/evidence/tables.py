"""The CSV files of an evidence pack: which section of the evidence each holds and its
columns. Cells are spreadsheet-safe (``cli.csv_cells``)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from coffer.cli.csv_cells import cell

Rows = Callable[[dict[str, Any]], Iterable[dict[str, Any]]]


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """A CSV document with a header line and one line per row (missing fields empty)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(column)) for column in columns])
    return out.getvalue()


@dataclass(frozen=True)
class CsvFile:
    """A CSV file of the pack: its name, what it holds, its columns and its rows."""

    name: str
    about: str
    columns: tuple[str, ...]
    rows: Rows


def _section(name: str) -> Rows:
    def rows(evidence: dict[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = evidence.get(name) or []
        return found

    return rows


def _key_rotation_rows(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = evidence["key_rotations"]["events"]
    return events


def _data_key_rows(evidence: dict[str, Any]) -> list[dict[str, Any]]:
    keys: list[dict[str, Any]] = evidence["key_rotations"]["data_keys"]
    return keys


SECRET_COLUMNS = (
    "project",
    "environment",
    "key",
    "owner",
    "system",
    "description",
    "sensitivity",
    "rotation_days",
    "rotation_days_from",
    "current_version",
    "last_rotated",
    "next_due",
    "state",
    "why",
    "exposed",
    "flagged",
    "rotator",
    "policy_violations",
)

CSV_FILES = (
    CsvFile(
        "controls.csv",
        "the control table: SOC 2 criterion, status, reason, every failing item",
        ("criterion", "id", "title", "status", "reason", "checks", "failures", "evidence"),
        _section("controls"),
    ),
    CsvFile(
        "inventory.csv",
        "every secret with owner, system, sensitivity, rotation period and state",
        SECRET_COLUMNS,
        _section("inventory"),
    ),
    CsvFile(
        "rotation-history.csv",
        "every secret version written in the period, its author, and whether a rotator wrote it",
        (
            "created_at",
            "project",
            "environment",
            "key",
            "version",
            "change",
            "author",
            "author_id",
            "author_kind",
            "by_rotator",
        ),
        _section("rotation_history"),
    ),
    CsvFile(
        "rotation-schedule.csv",
        "secrets with a rotation period, by next due date",
        (
            "next_due",
            "project",
            "environment",
            "key",
            "rotation_days",
            "last_rotated",
            "state",
            "owner",
        ),
        _section("rotation_schedule"),
    ),
    CsvFile(
        "overdue.csv",
        "secrets overdue for rotation or to rotate now (exposed or flagged)",
        SECRET_COLUMNS,
        _section("overdue"),
    ),
    CsvFile(
        "access-requests.csv",
        "access requests made or decided in the period",
        (
            "created_at",
            "id",
            "requester_name",
            "requester_id",
            "project",
            "environment",
            "access",
            "reason",
            "duration_seconds",
            "status",
            "decided_by_name",
            "decided_by",
            "decided_at",
            "decision_note",
            "expires_at",
            "grant_id",
        ),
        _section("access_requests"),
    ),
    CsvFile(
        "approvals.csv",
        "second-person approvals (environment export, root key rotation) in the period",
        (
            "created_at",
            "id",
            "operation",
            "target",
            "reason",
            "requested_by_name",
            "requested_by",
            "status",
            "decided_by_name",
            "decided_by",
            "decided_at",
            "used_at",
            "expires_at",
        ),
        _section("approvals"),
    ),
    CsvFile(
        "offboardings.csv",
        "members offboarded in the period and what was revoked",
        ("offboarded_at", "email", "user_id", "offboarded_by_name", "offboarded_by", "summary"),
        _section("offboardings"),
    ),
    CsvFile(
        "key-rotations.csv",
        "data key and root key rotations in the period (from the audit log)",
        ("time", "action", "actor", "project", "result", "metadata"),
        _key_rotation_rows,
    ),
    CsvFile(
        "data-keys.csv",
        "the data key versions each project holds now (never a key)",
        ("project", "version", "created_at", "current"),
        _data_key_rows,
    ),
    CsvFile(
        "users-and-roles.csv",
        "people (with their role at the period's end) and machine identities",
        (
            "kind",
            "name",
            "id",
            "role",
            "status",
            "joined_at",
            "mfa_enabled",
            "allowed_ips",
            "grants",
        ),
        _section("people"),
    ),
    CsvFile(
        "permission-matrix.csv",
        "what each role (and a machine identity) may do without a grant",
        ("action", "viewer", "admin", "owner", "machine"),
        _section("permission_matrix"),
    ),
    CsvFile(
        "grants.csv",
        "every grant: who, where, what access, until when, from which request",
        (
            "identity",
            "identity_kind",
            "identity_id",
            "project",
            "environment",
            "access",
            "expires_at",
            "active",
            "created_at",
            "request_id",
            "id",
        ),
        _section("grants"),
    ),
)
