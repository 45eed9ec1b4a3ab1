"""Identifiers: ULIDs (time-ordered, 26 characters)."""

from __future__ import annotations

from ulid import ULID


def new_id() -> str:
    """Returns a new ULID as its 26-character Crockford base32 text."""
    return str(ULID())
