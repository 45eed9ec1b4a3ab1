"""The CLI's exit codes: the one place where error families become numbers."""

from __future__ import annotations

from coffer.domain.errors import (
    AccessDenied,
    CofferError,
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    RateLimited,
    Sealed,
    ServerUnreachable,
    Unauthenticated,
    Unavailable,
)

OK = 0
FAILURE = 1
INVALID_INPUT = 2
NOT_FOUND = 3
UNAUTHENTICATED = 4
CONFLICT = 5
UNREACHABLE = 6
CONFIG = 7
RATE_LIMITED = 8
VERIFY_FAILED = 9  # `coffer audit verify`/`proof`: the log or proof does not verify (not an error)

_CODES: tuple[tuple[type[CofferError], int], ...] = (
    (InvalidInput, INVALID_INPUT),
    (NotFound, NOT_FOUND),
    (Unauthenticated, UNAUTHENTICATED),
    (AccessDenied, UNAUTHENTICATED),
    (Conflict, CONFLICT),
    (ServerUnreachable, UNREACHABLE),
    (Sealed, UNREACHABLE),
    (Unavailable, UNREACHABLE),
    (ConfigError, CONFIG),
    (RateLimited, RATE_LIMITED),
)


def exit_code_for(error: CofferError) -> int:
    """Returns the exit code of an error family (1 for anything unlisted)."""
    for family, code in _CODES:
        if isinstance(error, family):
            return code
    return FAILURE
