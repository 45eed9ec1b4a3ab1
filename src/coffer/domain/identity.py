"""Rules for e-mail addresses, passwords and display names of people and machines.

E-mail addresses are normalised once, here, so that a variant spelling (case, surrounding
or inner whitespace, Unicode compatibility forms such as full-width letters) names the same
person everywhere: lockouts, invitations, roles and logins.
"""

from __future__ import annotations

import re
import unicodedata

from coffer.domain.errors import InvalidInput

MAX_EMAIL_LENGTH = 254
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024

_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")


def normalize_email(text: object, *, field: str = "email") -> str:
    """Returns the canonical form of an e-mail address (NFKC, trimmed, case-folded).
    Raises InvalidInput naming ``field`` when it is not ``local@domain.tld``."""
    if not isinstance(text, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    normalized = unicodedata.normalize("NFKC", text).strip().casefold()
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise InvalidInput(f"{field} must be at most {MAX_EMAIL_LENGTH} characters", field=field)
    if not _EMAIL.fullmatch(normalized) or any(not c.isprintable() for c in normalized):
        raise InvalidInput(f"{field} must be an e-mail address like name@example.com", field=field)
    return normalized


def validate_password(password: object, *, field: str = "password") -> str:
    """Returns the password unchanged when it is acceptable; raises InvalidInput naming
    ``field`` and the rule otherwise. The message never contains the password."""
    if not isinstance(password, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"{field} must be at least {MIN_PASSWORD_LENGTH} characters", field=field
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"{field} must be at most {MAX_PASSWORD_LENGTH} characters", field=field)
    if "\x00" in password:
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    return password
