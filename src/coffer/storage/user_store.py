"""People: users, their MFA state and recovery codes, and invitations. Password hashes and
sealed TOTP seeds are stored here and never leave the services layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from coffer.domain.access import Role
from coffer.domain.team import InvitationInfo, MemberInfo
from coffer.storage.ids import new_id
from coffer.storage.tables import invitations, mfa_recovery_codes, organizations, users


@dataclass(frozen=True)
class UserRow:
    """A user's row as the services need it (the hash and seed stay out of ``repr``)."""

    id: str
    org_id: str
    email: str
    role: Role
    password_hash: str
    mfa_seed: bytes | None
    mfa_enabled_at: float | None
    mfa_last_step: int | None
    require_mfa: bool

    def __repr__(self) -> str:
        return f"UserRow(id={self.id!r}, email={self.email!r}, role={self.role.value!r})"


_USER_COLUMNS = (
    users.c.id,
    users.c.org_id,
    users.c.email,
    users.c.role,
    users.c.password_hash,
    users.c.mfa_seed,
    users.c.mfa_enabled_at,
    users.c.mfa_last_step,
    organizations.c.require_mfa,
)
_USERS = users.join(organizations, organizations.c.id == users.c.org_id)


def _user(row: Any) -> UserRow | None:
    if row is None:
        return None
    return UserRow(
        id=row[0],
        org_id=row[1],
        email=row[2],
        role=Role(row[3]),
        password_hash=row[4],
        mfa_seed=row[5],
        mfa_enabled_at=row[6],
        mfa_last_step=row[7],
        require_mfa=bool(row[8]),
    )


def find_user_by_email(
    conn: sa.Connection, email: str, *, for_update: bool = False
) -> UserRow | None:
    """Returns the user with this normalised e-mail address, or None."""
    query = sa.select(*_USER_COLUMNS).select_from(_USERS).where(users.c.email == email)
    return _user(conn.execute(query.with_for_update(of=users) if for_update else query).first())


def find_user(conn: sa.Connection, user_id: str, *, for_update: bool = False) -> UserRow | None:
    """Returns the user with this id, or None."""
    query = sa.select(*_USER_COLUMNS).select_from(_USERS).where(users.c.id == user_id)
    return _user(conn.execute(query.with_for_update(of=users) if for_update else query).first())


def insert_user(
    conn: sa.Connection, *, org_id: str, email: str, password_hash: str, role: Role, now: float
) -> str:
    """Creates a user and returns its id."""
    user_id = new_id()
    conn.execute(
        sa.insert(users).values(
            id=user_id,
            org_id=org_id,
            email=email,
            password_hash=password_hash,
            role=role.value,
            created_at=now,
            password_changed_at=now,
        )
    )
    return user_id


def update_user(conn: sa.Connection, user_id: str, **values: object) -> None:
    """Changes columns of one user (role, password_hash, mfa_* ...)."""
    conn.execute(sa.update(users).where(users.c.id == user_id).values(**values))


def delete_user(conn: sa.Connection, user_id: str) -> None:
    """Deletes a user (recovery codes go with it)."""
    conn.execute(sa.delete(users).where(users.c.id == user_id))


def list_members(conn: sa.Connection, org_id: str) -> list[MemberInfo]:
    """Returns the organization's people, by e-mail address."""
    rows = conn.execute(
        sa.select(
            users.c.id, users.c.email, users.c.role, users.c.created_at, users.c.mfa_enabled_at
        )
        .where(users.c.org_id == org_id)
        .order_by(users.c.email)
    ).all()
    return [
        MemberInfo(
            id=r[0], email=r[1], role=Role(r[2]), created_at=r[3], mfa_enabled=r[4] is not None
        )
        for r in rows
    ]


def replace_recovery_codes(conn: sa.Connection, user_id: str, code_hashes: list[str]) -> None:
    """Replaces the user's recovery codes with new ones (hashes only)."""
    conn.execute(sa.delete(mfa_recovery_codes).where(mfa_recovery_codes.c.user_id == user_id))
    if code_hashes:
        conn.execute(
            sa.insert(mfa_recovery_codes),
            [{"user_id": user_id, "code_hash": h, "used_at": None} for h in code_hashes],
        )


def use_recovery_code(conn: sa.Connection, user_id: str, code_hash: str, now: float) -> bool:
    """Marks an unused recovery code as used; True when there was one (each works once)."""
    result = conn.execute(
        sa.update(mfa_recovery_codes)
        .where(
            mfa_recovery_codes.c.user_id == user_id,
            mfa_recovery_codes.c.code_hash == code_hash,
            mfa_recovery_codes.c.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return result.rowcount == 1


def insert_invitation(
    conn: sa.Connection,
    *,
    org_id: str,
    email: str,
    role: Role,
    token_hash: str,
    invited_by: str,
    now: float,
    expires_at: float,
) -> InvitationInfo:
    """Stores an invitation (its token only as a hash) and returns it."""
    info = InvitationInfo(
        id=new_id(), email=email, role=role, created_at=now, expires_at=expires_at
    )
    conn.execute(
        sa.insert(invitations).values(
            id=info.id,
            org_id=org_id,
            email=email,
            role=role.value,
            token_hash=token_hash,
            invited_by=invited_by,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return info


def pending_invitations(
    conn: sa.Connection, org_id: str, now: float, *, email: str | None = None
) -> list[InvitationInfo]:
    """Returns the organization's unaccepted, unexpired invitations."""
    query = sa.select(
        invitations.c.id,
        invitations.c.email,
        invitations.c.role,
        invitations.c.created_at,
        invitations.c.expires_at,
    ).where(
        invitations.c.org_id == org_id,
        invitations.c.accepted_at.is_(None),
        invitations.c.expires_at > now,
    )
    if email is not None:
        query = query.where(invitations.c.email == email)
    rows = conn.execute(query.order_by(invitations.c.created_at)).all()
    return [InvitationInfo(r[0], r[1], Role(r[2]), r[3], r[4]) for r in rows]


def claim_invitation(
    conn: sa.Connection, token_hash: str, now: float
) -> tuple[str, InvitationInfo] | None:
    """Marks the pending invitation with this token hash accepted and returns
    (org_id, invitation); None when there is no such pending invitation."""
    row = conn.execute(
        sa.select(
            invitations.c.org_id,
            invitations.c.id,
            invitations.c.email,
            invitations.c.role,
            invitations.c.created_at,
            invitations.c.expires_at,
        ).where(
            invitations.c.token_hash == token_hash,
            invitations.c.accepted_at.is_(None),
            invitations.c.expires_at > now,
        )
    ).first()
    if row is None:
        return None
    claimed = conn.execute(
        sa.update(invitations)
        .where(invitations.c.id == row[1], invitations.c.accepted_at.is_(None))
        .values(accepted_at=now)
    )
    if claimed.rowcount != 1:
        return None
    return row[0], InvitationInfo(row[1], row[2], Role(row[3]), row[4], row[5])


def cancel_invitations(conn: sa.Connection, org_id: str, email: str, now: float) -> int:
    """Withdraws pending invitations for an address; returns how many."""
    return conn.execute(
        sa.update(invitations)
        .where(
            invitations.c.org_id == org_id,
            invitations.c.email == email,
            invitations.c.accepted_at.is_(None),
        )
        .values(expires_at=now)
    ).rowcount
