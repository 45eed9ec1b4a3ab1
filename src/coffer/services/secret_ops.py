"""Per-transaction building blocks shared by the secret, import and promotion use cases:
write a version (sealed by ``secret_cipher.SecretCipher``) with its audit entry,
read values with their audit entries, and keep the read limits of limited secrets (count
the read, burn or seal after the last one, destroy at the TTL). Callers own the
transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import sqlalchemy as sa

from coffer.audit.writer import AuditWriter, Metadata
from coffer.domain.errors import Gone, InvalidInput, NotFound, TooLarge
from coffer.domain.events import Event
from coffer.domain.inventory import InventoryChange
from coffer.domain.models import CallContext, Environment, Project, WriteResult
from coffer.domain.names import validate_key_name
from coffer.domain.read_limits import NO_LIMITS, LimitState, ReadLimits
from coffer.domain.secret_value import SecretValue
from coffer.services.limited_reads import count_read, counters, last_read_event, sealed_if_last
from coffer.services.policy_enforcement import check_write, record_inventory
from coffer.services.read_reasons import require_read_reason
from coffer.services.secret_cipher import SecretCipher
from coffer.storage import read_limits, secret_store
from coffer.storage.secret_store import ExpiredSecret, SecretRow, StoredVersion
from coffer.storage.tables import secrets

MAX_COMMENT_LENGTH = 1024
# How values are read that never leave the service (a rollback writes the value back as a
# new version; a rotator uses an admin connection's URL to reach the credential's source): no
# stated reason is needed for them.
_VALUE_STAYS = frozenset({"rollback", "rotator"})
MAX_VERSION = 2_147_483_647  # the database's integer range


@dataclass(frozen=True)
class Limits:
    """Size limits applied to every write."""

    max_value_bytes: int


def validate_write(key: str, value: SecretValue, comment: str | None, limits: Limits) -> None:
    """Raises InvalidInput/TooLarge naming the field when the key, value or comment breaks a
    rule; returns None when the write may go ahead."""
    validate_key_name(key)
    _require_utf8(value.reveal(), "value")
    if len(value) > limits.max_value_bytes:
        raise TooLarge(
            f"value of {key!r} is {len(value)} bytes; the limit is {limits.max_value_bytes} bytes "
            "(COFFER_MAX_VALUE_BYTES)",
            field="value",
        )
    if "\x00" in value.reveal():
        raise InvalidInput("value must not contain NUL characters", field="value")
    if comment is not None:
        _require_utf8(comment, "comment")
        if "\x00" in comment:
            raise InvalidInput("comment must not contain NUL characters", field="comment")
        if len(comment) > MAX_COMMENT_LENGTH:
            raise InvalidInput(
                f"comment must be at most {MAX_COMMENT_LENGTH} characters", field="comment"
            )


def _require_utf8(text: str, field: str) -> None:
    """Raises InvalidInput when ``text`` cannot be stored as UTF-8 (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"{field} must be valid Unicode text (it contains a lone surrogate)", field=field
        ) from None


def secret_not_found(key: str, environment: str) -> NotFound:
    """The error for a secret that does not exist, was burned or has expired (all alike)."""
    return NotFound(f"secret {key!r} not found in environment {environment!r}", field="key")


def secret_sealed(key: str) -> Gone:
    """The error for a secret sealed at its read limit."""
    return Gone(
        f"secret {key!r} is sealed: its read limit was reached; someone who may write it "
        "must reset it",
        field="key",
    )


def read_metadata(version: int, via: str, state: LimitState) -> dict[str, str | int | None]:
    """The metadata of a ``secret.read`` entry; a limited secret's adds its counters."""
    return {"version": version, "via": via, **counters(state)}


class SecretOps:
    """Writes and reads inside a caller's transaction, always with an audit entry."""

    def __init__(self, cipher: SecretCipher, audit: AuditWriter) -> None:
        self.cipher = cipher
        self.audit = audit

    def write(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        project: Project,
        env: Environment,
        key: str,
        value: SecretValue,
        *,
        comment: str | None = None,
        skip_unchanged: bool = False,
        metadata: dict[str, str | int | None] | None = None,
        limits: ReadLimits | None = None,
        inventory: InventoryChange | None = None,
    ) -> WriteResult:
        """Appends a new version of ``key`` (creating the secret if needed) and audits it.
        With ``skip_unchanged`` an identical current value writes nothing ("unchanged").
        ``inventory`` changes the secret's metadata too (``inventory.updated``). Raises
        PolicyViolation, before writing anything, when the secret would break its
        environment's policy (``policy_enforcement.check_write``).

        A new version starts its read count afresh (and unseals a sealed secret). ``limits``
        with a TTL or read limit replace the secret's; without them the secret keeps its
        own. A secret past its TTL is destroyed first (``secret.expired``), so the write
        creates it anew at version 1."""
        now = time.time()
        row = secret_store.ensure_secret(conn, environment_id=env.id, key=key, now=now)
        if row.limits.expired(now):
            place = ExpiredSecret.of(row, project, env)
            self.destroy_expired(conn, ctx, place, Event.SECRET_EXPIRED)
            row = secret_store.ensure_secret(conn, environment_id=env.id, key=key, now=now)
        if skip_unchanged and row.current_version > 0 and not (limits and limits.limited):
            current = secret_store.get_version(conn, row.id, row.current_version)
            if current is not None and self.cipher.open(conn, project, env, key, current) == value:
                return WriteResult(
                    key=key, outcome="unchanged", version=row.current_version, limits=row.limits
                )
        version = row.current_version + 1
        fields = check_write(
            conn, project.org_id, env.name, row.id, key, inventory, new_secret=version == 1
        )
        ciphertext, key_version = self.cipher.seal(conn, project, env, key, version, value)
        secret_store.insert_version(
            conn,
            secret_id=row.id,
            version=version,
            ciphertext=ciphertext,
            key_version=key_version,
            author_id=ctx.actor.id,
            author_kind=str(ctx.actor.kind),
            comment=comment,
            now=now,
        )
        state = row.limits
        if limits is not None and limits.limited:
            read_limits.apply_limits(conn, secrets, row.id, limits, now)
            state = limits.state_from(now)
        elif row.limits.read_count or row.limits.sealed_at is not None:
            read_limits.reset_reads(conn, secrets, row.id)
            state = replace(row.limits, read_count=0, sealed_at=None)
        created = version == 1
        limit_fields = limits.audit_fields() if limits is not None and limits.limited else {}
        self.audit.append(
            conn,
            ctx,
            Event.SECRET_CREATED if created else Event.SECRET_UPDATED,
            project=project.name,
            environment=env.name,
            key=key,
            metadata={"version": version, **limit_fields, **(metadata or {})},
        )
        if inventory is not None and fields is not None:
            where = (project.name, env.name, key)
            record_inventory(conn, ctx, self.audit, where, row.id, fields, inventory, now)
        return WriteResult(
            key=key, outcome="created" if created else "updated", version=version, limits=state
        )

    def count_read(
        self,
        conn: sa.Connection,
        secret_id: str,
        limits: LimitState,
        *,
        updated_at: float,
        key: str,
        environment: str,
        now: float,
    ) -> LimitState:
        """Counts one read of a limited secret as of ``updated_at`` (see
        ``limited_reads.count_read``): raises Gone when it is sealed and NotFound when it is
        gone, expired or out of reads."""
        return count_read(
            conn,
            secrets,
            secret_id,
            limits,
            updated_at=updated_at,
            now=now,
            missing=secret_not_found(key, environment),
            sealed=secret_sealed(key),
        )

    def read_stored(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        project: Project,
        env: Environment,
        key: str,
        stored: StoredVersion,
        *,
        via: str,
        reason_checked: bool = False,
    ) -> SecretValue:
        """Decrypts a stored version and records ``secret.read`` (``via`` says how), without
        counting it against a read limit. Raises ReasonRequired as ``record_read`` does."""
        value = self.cipher.open(conn, project, env, key, stored)
        self.record_read(
            conn, ctx, project, env, key, stored, via=via, reason_checked=reason_checked
        )
        return value

    def reveal_current(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        project: Project,
        env: Environment,
        row: SecretRow,
        *,
        via: str,
        reason_checked: bool = False,
    ) -> tuple[SecretValue, LimitState]:
        """Decrypts the current version of ``row`` for a caller, counting the read against
        its limits (see ``count_read``, whose errors it raises) and recording it (see
        ``record_read``, whose ReasonRequired it raises)."""
        stored = secret_store.get_version(conn, row.id, row.current_version)
        if stored is None:
            raise secret_not_found(row.key, env.name)
        value = self.cipher.open(conn, project, env, row.key, stored)
        state = self.counted_read(
            conn,
            ctx,
            project,
            env,
            row.key,
            stored,
            secret_id=row.id,
            limits=row.limits,
            updated_at=row.updated_at,
            via=via,
            reason_checked=reason_checked,
        )
        return value, state

    def counted_read(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        project: Project,
        env: Environment,
        key: str,
        stored: StoredVersion,
        *,
        secret_id: str,
        limits: LimitState,
        updated_at: float,
        via: str,
        reason_checked: bool = False,
    ) -> LimitState:
        """Counts a read of an opened version of the secret as it was at ``updated_at``
        (``count_read``), records it (``record_read``) and, after the last allowed read,
        burns or seals the secret (``after_read``); returns the state after the read."""
        state = self.count_read(
            conn,
            secret_id,
            limits,
            updated_at=updated_at,
            key=key,
            environment=env.name,
            now=time.time(),
        )
        self.record_read(
            conn,
            ctx,
            project,
            env,
            key,
            stored,
            via=via,
            state=state,
            reason_checked=reason_checked,
        )
        self.after_read(conn, ctx, project.name, env.name, key, secret_id, state)
        return sealed_if_last(state)

    def record_read(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        project: Project,
        env: Environment,
        key: str,
        stored: StoredVersion,
        *,
        via: str,
        state: LimitState = NO_LIMITS,
        reason_checked: bool = False,
    ) -> None:
        """Appends the ``secret.read`` entry for a value about to leave the service, with
        the caller's stated reason. Raises ReasonRequired when the environment's policy
        wants a reason and the caller gave none, unless the caller already checked that
        (``reason_checked``) or the value stays in the service (a rollback writes it back);
        the caller's transaction then rolls back whatever it counted."""
        if not reason_checked and via not in _VALUE_STAYS:
            require_read_reason(conn, ctx, env.name)
        self.audit.append(
            conn,
            ctx,
            Event.SECRET_READ,
            project=project.name,
            environment=env.name,
            key=key,
            metadata=read_metadata(stored.version, via, state),
        )

    def after_read(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        project: str,
        environment: str,
        key: str,
        secret_id: str,
        state: LimitState,
    ) -> bool:
        """After the read that reached the limit, burns the secret (``secret.burned``) or
        seals it (``secret.sealed``). Returns True when it burned it."""
        event = last_read_event(state)
        if event is None:
            return False
        metadata: Metadata = {"read_count": state.read_count, "max_reads": state.max_reads}
        if event is Event.SECRET_SEALED:
            read_limits.seal_row(conn, secrets, secret_id, time.time())
        else:
            metadata = {
                **metadata,
                "versions_destroyed": secret_store.delete_secret(conn, secret_id),
            }
        self.audit.append(
            conn,
            ctx,
            event,
            project=project,
            environment=environment,
            key=key,
            metadata=metadata,
        )
        return event is Event.SECRET_BURNED

    def destroy_expired(
        self,
        conn: sa.Connection,
        ctx: CallContext | None,
        place: ExpiredSecret,
        event: Event,
    ) -> bool:
        """Destroys a secret past its TTL and records ``event`` (``secret.expired`` when
        found on access, ``secret.pruned`` by the pruner, whose ``ctx`` may be None).
        Returns False, recording nothing, when someone else destroyed it first."""
        versions = secret_store.delete_secret(conn, place.id)
        if not versions:
            return False
        self.audit.append(
            conn,
            ctx,
            event,
            project=place.project,
            environment=place.environment,
            key=place.key,
            metadata={"expired_at": int(place.expires_at), "versions_destroyed": versions},
            org_id=place.org_id,
        )
        return True
