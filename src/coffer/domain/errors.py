"""The error tree of coffer.

Every error a user can see is a ``CofferError`` with a stable ``code``. Entry points map the
families to HTTP statuses (``api/``) or exit codes (``cli/``); nothing below them knows either.

::

    CofferError                      code
    ├── InvalidInput                 invalid_input      a field breaks a rule (names the field)
    │   ├── InvalidQuery             invalid_query      a query parameter is malformed (422)
    │   ├── TooLarge                 too_large          a value or body exceeds its size limit
    │   └── PolicyViolation          policy_violation   a write breaks an environment policy
    ├── Unauthenticated              unauthenticated    no credential, or one that is not valid
    │   └── MfaRequired              mfa_required       the password was right; a TOTP code is due
    ├── AccessDenied                 access_denied      a valid credential without the right
    │   ├── ReasonRequired           reason_required    a read there must state a reason
    │   └── ApprovalRequired         approval_required  a second person must approve it first
    ├── NotFound                     not_found          the resource does not exist (or is hidden)
    │   └── Gone                     gone               it exists but is sealed (read limit reached)
    ├── Conflict                     conflict           the change clashes with current state
    ├── RateLimited                  rate_limited       too many requests; ``retry_after`` seconds
    ├── Contention                   contention         conflicting requests kept rolling it back
    ├── Unavailable                  unavailable        the database cannot be reached (retry)
    ├── DecryptionFailed             decryption_failed  any failure to open a ciphertext (opaque)
    ├── RotationFailed               rotation_failed    a rotator could not change a credential
    ├── ConfigError                  config_error       settings, key file or database unusable
    │   ├── WrongRootKey             wrong_root_key     the root key does not belong to this vault
    │   └── SchemaMismatch           schema_mismatch    the schema is older or newer than the code
    └── ServerUnreachable            server_unreachable the CLI could not reach the API

Messages never contain secret values.
"""

from __future__ import annotations


class CofferError(Exception):
    """Root of every error coffer reports to a user."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str]:
        """Returns the JSON shape shared by the API and the CLI's ``--json`` output."""
        body = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidInput(CofferError):
    """A field breaks a rule; ``field`` names it and the message states the rule."""

    code = "invalid_input"


class InvalidQuery(InvalidInput):
    """A query parameter is malformed (answered 422, naming the parameter)."""

    code = "invalid_query"


class TooLarge(InvalidInput):
    """A value or request body exceeds its configured size limit."""

    code = "too_large"


class PolicyViolation(InvalidInput):
    """A write (or a policy change) breaks an organization's environment policy; the message
    names the rule, for example ``production requires owner``."""

    code = "policy_violation"


class Unauthenticated(CofferError):
    """The caller sent no credential or one that is unknown, expired or revoked."""

    code = "unauthenticated"


class MfaRequired(Unauthenticated):
    """The account has MFA: the login needs a TOTP code or a recovery code as well."""

    code = "mfa_required"


class AccessDenied(CofferError):
    """The caller is known but may not do this."""

    code = "access_denied"


class ReasonRequired(AccessDenied):
    """The environment's policy requires every read to state a reason (recorded in the
    audit log), and this one did not."""

    code = "reason_required"


class ApprovalRequired(AccessDenied):
    """A policy requires a second person to approve this operation (separation of duties)
    and no approved, unused approval was given."""

    code = "approval_required"


class NotFound(CofferError):
    """The named resource does not exist."""

    code = "not_found"


class Gone(NotFound):
    """The resource exists but may not be read any more: a secret sealed at its read limit,
    kept until someone who may write it resets it."""

    code = "gone"


class Conflict(CofferError):
    """The request clashes with the current state (already exists, duplicate name, ...)."""

    code = "conflict"


class RateLimited(CofferError):
    """Too many requests from one address or for one identity; retry after ``retry_after``
    seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = max(1, int(retry_after))


class Contention(CofferError):
    """The database kept rolling the request back for conflicting with concurrent ones
    (deadlocks); nothing was changed, and retrying is safe."""

    code = "contention"


class Sealed(CofferError):
    """The vault is sealed: its Shamir-split root key waits for ``coffer unseal``."""

    code = "sealed"


class Unavailable(CofferError):
    """The server could not reach its database; nothing was changed and a retry may work."""

    code = "unavailable"


class DecryptionFailed(CofferError):
    """A ciphertext did not open. Deliberately says nothing about why."""

    code = "decryption_failed"

    def __init__(self, message: str = "decryption failed") -> None:
        super().__init__(message)


class RotationFailed(CofferError):
    """A rotator could not change a credential at its source. The old value stays current
    and working; the message says why (never a credential)."""

    code = "rotation_failed"


class ConfigError(CofferError):
    """Settings, the key file or the database cannot be used; the message names which."""

    code = "config_error"


class WrongRootKey(ConfigError):
    """The root key's check value does not match the one stored in the vault."""

    code = "wrong_root_key"


class SchemaMismatch(ConfigError):
    """The database schema is at another revision than this code's head: older (run
    ``coffer migrate``) or newer or unknown (upgrade coffer). ``database_revision`` and
    ``code_revision`` name both."""

    code = "schema_mismatch"

    def __init__(self, message: str, *, database_revision: str, code_revision: str) -> None:
        super().__init__(message)
        self.database_revision = database_revision
        self.code_revision = code_revision

    def to_dict(self) -> dict[str, str]:
        """The shared JSON shape, with both revisions."""
        return {
            **super().to_dict(),
            "database_revision": self.database_revision,
            "code_revision": self.code_revision,
        }


class ServerUnreachable(CofferError):
    """The CLI could not connect to the coffer server."""

    code = "server_unreachable"
