"""Mints a token, stores its hash, and hands the token back once."""

from __future__ import annotations

import sqlalchemy as sa

from coffer.crypto.tokens import hash_token, mint_token
from coffer.domain.team import IssuedToken
from coffer.storage import token_store

# Token kinds, the second part of ``coffer_<kind>_...``.
CLI_TOKEN = "cli"
SESSION_TOKEN = "sess"
API_KEY = "key"
MACHINE_TOKEN = "mach"
INVITATION_TOKEN = "inv"


def issue_token(
    conn: sa.Connection,
    *,
    org_id: str,
    kind: str,
    name: str,
    identity_id: str,
    identity_kind: str,
    now: float,
    expires_at: float | None,
    idle_timeout: float | None = None,
) -> IssuedToken:
    """Stores a new token of ``kind`` for the identity and returns it with its metadata."""
    token = mint_token(kind)
    info = token_store.insert_token(
        conn,
        org_id=org_id,
        token_hash=hash_token(token),
        kind=kind,
        name=name,
        identity_id=identity_id,
        identity_kind=identity_kind,
        now=now,
        expires_at=expires_at,
        idle_timeout=idle_timeout,
    )
    return IssuedToken(info=info, token=token)
