"""Per-transaction building blocks shared by the secret, import and promotion use cases:
seal/open a version under its bound associated data, write a version with its audit entry,
and read values with their audit entries. Callers own the transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from coffer.audit.writer import AuditWriter
from coffer.crypto.aad import secret_version_aad
from coffer.crypto.keys import DataKey
from coffer.domain.errors import InvalidInput, TooLarge
from coffer.domain.events import Event
from coffer.domain.models import CallContext, Environment, Project, WriteResult
from coffer.domain.names import validate_key_name
from coffer.domain.secret_value import SecretValue
from coffer.services.keyring import Keyring
from coffer.storage import secret_store
from coffer.storage.secret_store import ReadBundle, StoredVersion

MAX_COMMENT_LENGTH = 1024
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


def _bound_aad(
    project: Project, env: Environment, key: str, version: int, key_version: int
) -> bytes:
    """The associated data binding a version to its org, project, environment, key, version
    and data-key version: a ciphertext copied to any other row does not open."""
    return secret_version_aad(
        org_id=project.org_id,
        project_id=project.id,
        environment_id=env.id,
        key=key,
        version=version,
        key_version=key_version,
    )


class SecretCipher:
    """Seals and opens secret versions, binding each to org, project, environment, key,
    version and data-key version."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def seal(
        self,
        conn: sa.Connection,
        project: Project,
        env: Environment,
        key: str,
        version: int,
        value: SecretValue,
    ) -> bytes:
        """Returns the envelope of ``value`` under the project's current data key."""
        aad = _bound_aad(project, env, key, version, project.key_version)
        return self._keyring.data_key(conn, project, project.key_version).seal(
            value.reveal_bytes(), aad
        )

    def open(
        self,
        conn: sa.Connection,
        project: Project,
        env: Environment,
        key: str,
        stored: StoredVersion,
    ) -> SecretValue:
        """Returns the plaintext of a stored version; raises DecryptionFailed when it does not
        open (tampered, moved to another row, or its data key destroyed)."""
        data_key = self._keyring.data_key(conn, project, stored.key_version)
        return self.open_with(data_key, project, env, key, stored)

    def open_with(
        self,
        data_key: DataKey,
        project: Project,
        env: Environment,
        key: str,
        stored: StoredVersion,
    ) -> SecretValue:
        """Like ``open`` with the version's data key already in hand."""
        aad = _bound_aad(project, env, key, stored.version, stored.key_version)
        return SecretValue(data_key.open(stored.ciphertext, aad).decode("utf-8"))

    def open_bundle(self, bundle: ReadBundle, key: str) -> SecretValue:
        """Opens the version of a one-query read bundle."""
        stored = bundle.stored
        data_key = self._keyring.unwrap(bundle.project, stored.key_version, bundle.wrapped_key)
        return self.open_with(data_key, bundle.project, bundle.environment, key, stored)


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
    ) -> WriteResult:
        """Appends a new version of ``key`` (creating the secret if needed) and audits it.
        With ``skip_unchanged`` an identical current value writes nothing ("unchanged")."""
        now = time.time()
        row = secret_store.ensure_secret(conn, environment_id=env.id, key=key, now=now)
        if skip_unchanged and row.current_version > 0:
            current = secret_store.get_version(conn, row.id, row.current_version)
            if current is not None and self.cipher.open(conn, project, env, key, current) == value:
                return WriteResult(key=key, outcome="unchanged", version=row.current_version)
        version = row.current_version + 1
        secret_store.insert_version(
            conn,
            secret_id=row.id,
            version=version,
            ciphertext=self.cipher.seal(conn, project, env, key, version, value),
            key_version=project.key_version,
            author_id=ctx.actor.id,
            author_kind=str(ctx.actor.kind),
            comment=comment,
            now=now,
        )
        created = version == 1
        self.audit.append(
            conn,
            ctx,
            Event.SECRET_CREATED if created else Event.SECRET_UPDATED,
            project=project.name,
            environment=env.name,
            key=key,
            metadata={"version": version, **(metadata or {})},
        )
        return WriteResult(key=key, outcome="created" if created else "updated", version=version)

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
    ) -> SecretValue:
        """Decrypts a stored version and records ``secret.read`` (``via`` says how)."""
        value = self.cipher.open(conn, project, env, key, stored)
        self.record_read(conn, ctx, project, env, key, stored, via=via)
        return value

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
    ) -> None:
        """Appends the ``secret.read`` entry for a value about to leave the service."""
        self.audit.append(
            conn,
            ctx,
            Event.SECRET_READ,
            project=project.name,
            environment=env.name,
            key=key,
            metadata={"version": stored.version, "via": via},
        )
