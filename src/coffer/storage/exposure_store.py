"""Secret exposures (see ``domain.exposures``) and the reads that the vault match and the
rotation report need. Values are only ever ciphertext here."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from coffer.domain.exposures import ExposureRecord
from coffer.storage.database import dialect_insert
from coffer.storage.ids import new_id
from coffer.storage.read_limits import not_expired
from coffer.storage.secret_store import StoredVersion
from coffer.storage.tables import secret_exposures, secret_versions, secrets


@dataclass(frozen=True)
class CandidateVersion:
    """A stored version a scan's fingerprints are compared with."""

    secret_id: str
    key: str
    current_version: int
    stored: StoredVersion


def matchable(now: float) -> sa.ColumnElement[bool]:
    """The condition on ``secrets`` a match compares a secret under: one a read would
    answer, that is unexpired, unsealed and with reads left (a sealed or used-up secret
    must not confirm guesses about a value its readers can no longer see). The comparison
    itself counts no read: the value never leaves the service."""
    return sa.and_(
        not_expired(secrets, now),
        secrets.c.sealed_at.is_(None),
        sa.or_(secrets.c.max_reads.is_(None), secrets.c.read_count < secrets.c.max_reads),
    )


def recent_versions(
    conn: sa.Connection, environment_id: str, now: float, per_secret: int
) -> list[CandidateVersion]:
    """Returns the newest ``per_secret`` versions of every ``matchable`` secret of the
    environment (versions are numbered 1, 2, ... with no gaps, so they are those above
    ``current_version - per_secret``)."""
    rows = conn.execute(
        sa.select(
            secrets.c.id,
            secrets.c.key,
            secrets.c.current_version,
            secret_versions.c.version,
            secret_versions.c.ciphertext,
            secret_versions.c.key_version,
            secret_versions.c.created_at,
            secret_versions.c.comment,
        )
        .join(secret_versions, secret_versions.c.secret_id == secrets.c.id)
        .where(
            secrets.c.environment_id == environment_id,
            matchable(now),
            secret_versions.c.version > secrets.c.current_version - per_secret,
        )
        .order_by(secrets.c.key, secret_versions.c.version)
    )
    return [
        CandidateVersion(
            secret_id=row[0], key=row[1], current_version=row[2], stored=StoredVersion(*row[3:])
        )
        for row in rows
    ]


def count_recent_versions(
    conn: sa.Connection, environment_ids: Sequence[str], now: float, per_secret: int
) -> int:
    """Returns how many versions ``recent_versions`` would return for these environments in
    all (one query, nothing decrypted)."""
    if not environment_ids:
        return 0
    count: int = conn.execute(
        sa.select(sa.func.count())
        .select_from(secrets)
        .join(secret_versions, secret_versions.c.secret_id == secrets.c.id)
        .where(
            secrets.c.environment_id.in_(environment_ids),
            matchable(now),
            secret_versions.c.version > secrets.c.current_version - per_secret,
        )
    ).scalar_one()
    return count


def lock_current_version(conn: sa.Connection, secret_id: str, now: float) -> int | None:
    """Returns the secret's current version, locking its row (PostgreSQL) so that it is
    neither deleted nor given a new version until the transaction ends; None when it is
    gone or no longer ``matchable`` (sealed, used up or expired since it was compared)."""
    version: int | None = conn.execute(
        sa.select(secrets.c.current_version)
        .where(secrets.c.id == secret_id, matchable(now))
        .with_for_update()
    ).scalar_one_or_none()
    return version


def record_exposure(
    conn: sa.Connection,
    *,
    secret_id: str,
    version: int,
    rule_id: str,
    location: str,
    reported_by: str | None,
    reported_by_kind: str,
    now: float,
) -> bool:
    """Records that ``version`` of the secret was found at ``location``. Returns False, and
    records nothing, when that version was already recorded at that place."""
    insert = dialect_insert(conn)(secret_exposures).values(
        id=new_id(),
        secret_id=secret_id,
        version=version,
        detected_at=now,
        rule_id=rule_id,
        location=location,
        reported_by=reported_by,
        reported_by_kind=reported_by_kind,
    )
    inserted = conn.execute(
        insert.on_conflict_do_nothing(
            index_elements=["secret_id", "version", "location"]
        ).returning(secret_exposures.c.id)
    ).first()
    return inserted is not None


@dataclass(frozen=True)
class CurrentSecret:
    """An unexpired secret of an environment with the time its current version was written."""

    secret_id: str
    key: str
    current_version: int
    last_rotated: float


def current_secrets(conn: sa.Connection, environment_id: str, now: float) -> list[CurrentSecret]:
    """Returns the environment's unexpired secrets with their current versions' times, by
    key."""
    rows = conn.execute(
        sa.select(
            secrets.c.id, secrets.c.key, secrets.c.current_version, secret_versions.c.created_at
        )
        .join(
            secret_versions,
            sa.and_(
                secret_versions.c.secret_id == secrets.c.id,
                secret_versions.c.version == secrets.c.current_version,
            ),
        )
        .where(secrets.c.environment_id == environment_id, not_expired(secrets, now))
        .order_by(secrets.c.key)
    )
    return [CurrentSecret(*row) for row in rows]


def exposures_in(conn: sa.Connection, environment_id: str) -> dict[str, list[ExposureRecord]]:
    """Returns the recorded exposures of the environment's secrets, keyed by secret id,
    newest first."""
    rows = conn.execute(
        sa.select(
            secret_exposures.c.secret_id,
            secret_exposures.c.version,
            secret_exposures.c.detected_at,
            secret_exposures.c.rule_id,
            secret_exposures.c.location,
            secret_exposures.c.reported_by,
        )
        .join(secrets, secrets.c.id == secret_exposures.c.secret_id)
        .where(secrets.c.environment_id == environment_id)
        .order_by(secret_exposures.c.detected_at.desc(), secret_exposures.c.id.desc())
    )
    found: dict[str, list[ExposureRecord]] = defaultdict(list)
    for row in rows:
        found[row[0]].append(
            ExposureRecord(
                version=row[1],
                detected_at=row[2],
                rule_id=row[3],
                location=row[4],
                reported_by=row[5] or "",
            )
        )
    return found
