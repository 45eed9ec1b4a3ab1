"""Sealing and opening secret versions: every version's envelope is bound (as associated
data) to its org, project, environment, key, version and data-key version, so a ciphertext
copied to any other row does not open."""

from __future__ import annotations

import sqlalchemy as sa

from coffer.crypto.aad import secret_version_aad
from coffer.crypto.keys import DataKey
from coffer.domain.models import Environment, Project
from coffer.domain.secret_value import SecretValue
from coffer.services.keyring import Keyring
from coffer.storage import key_rotation_store
from coffer.storage.secret_store import ReadBundle, StoredVersion


def bound_aad(
    project: Project, environment_id: str, key: str, version: int, key_version: int
) -> bytes:
    """The associated data binding a version to its org, project, environment, key, version
    and data-key version: a ciphertext copied to any other row does not open."""
    return secret_version_aad(
        org_id=project.org_id,
        project_id=project.id,
        environment_id=environment_id,
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
    ) -> tuple[bytes, int]:
        """Returns the envelope of ``value`` under the project's current data key, and that
        key's version. The version is read afresh and share-locked, so a key rotation that
        starts meanwhile waits for this write and then re-encrypts it."""
        key_version = key_rotation_store.current_key_version(conn, project.id, lock=True)
        aad = bound_aad(project, env.id, key, version, key_version)
        data_key = self._keyring.data_key(conn, project, key_version)
        return data_key.seal(value.reveal_bytes(), aad), key_version

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
        aad = bound_aad(project, env.id, key, stored.version, stored.key_version)
        return SecretValue(data_key.open(stored.ciphertext, aad).decode("utf-8"))

    def open_bundle(
        self, bundle: ReadBundle, key: str, conn: sa.Connection | None = None
    ) -> SecretValue:
        """Opens the version of a one-query read bundle (see ``Keyring.unwrap`` for
        ``conn``)."""
        stored = bundle.stored
        data_key = self._keyring.unwrap(
            bundle.project, stored.key_version, bundle.wrapped_key, conn
        )
        return self.open_with(data_key, bundle.project, bundle.environment, key, stored)
