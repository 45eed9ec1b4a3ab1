"""Opening a vault at start-up and initialising a new one."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto.keys import KeyEncryptionKey, RootKey, key_check_value, verify_key_check_value
from coffer.crypto.tokens import hash_token, mint_token
from coffer.domain.errors import ConfigError, Conflict
from coffer.domain.events import Event
from coffer.domain.models import Actor, ActorKind, CallContext, Organization
from coffer.domain.names import validate_resource_name
from coffer.storage import database, meta_store, schema, token_store
from coffer.storage.ids import new_id

KEY_CHECK_META = "root_key_check_value"
BOOTSTRAP_TOKEN_KIND = "boot"


@dataclass(frozen=True)
class InitResult:
    """A new vault's organization and its bootstrap owner token (shown once)."""

    organization: Organization
    token: str

    def __repr__(self) -> str:
        return f"InitResult(organization={self.organization!r}, token='********')"


def is_initialised(engine: Engine) -> bool:
    """True when the database holds an initialised vault."""
    if schema.current_revision(engine) is None:
        return False
    with engine.connect() as conn:
        return meta_store.get_meta(conn, KEY_CHECK_META) is not None


def initialise(engine: Engine, root: RootKey, org_name: str, audit: AuditWriter) -> InitResult:
    """Creates the schema, records the root key's check value, the first organization and a
    bootstrap owner token. Raises Conflict when the vault is already initialised."""
    validate_resource_name(org_name, field="org")
    database.check_connection(engine)
    schema.upgrade_to_head(engine)
    now = time.time()
    token = mint_token(BOOTSTRAP_TOKEN_KIND)
    identity_id = new_id()
    with engine.begin() as conn:
        if meta_store.get_meta(conn, KEY_CHECK_META) is not None:
            raise Conflict("this vault is already initialised")
        meta_store.set_meta(conn, KEY_CHECK_META, key_check_value(root))
        meta_store.set_meta(conn, "initialised_at", repr(now))
        org = token_store.insert_organization(conn, org_name, now)
        token_store.insert_token(
            conn,
            org_id=org.id,
            token_hash=hash_token(token),
            kind=BOOTSTRAP_TOKEN_KIND,
            name="bootstrap owner",
            identity_id=identity_id,
            identity_kind=str(ActorKind.BOOTSTRAP),
            now=now,
        )
        ctx = CallContext(
            actor=Actor(id=identity_id, kind=ActorKind.BOOTSTRAP, org_id=org.id, name="init")
        )
        audit.append(conn, ctx, Event.ORG_CREATED, metadata={"name": org_name})
        audit.append(conn, ctx, Event.TOKEN_CREATED, metadata={"kind": BOOTSTRAP_TOKEN_KIND})
    return InitResult(organization=org, token=token)


def open_vault(engine: Engine, root: RootKey) -> KeyEncryptionKey:
    """Checks the database is reachable and initialised, migrates it, verifies the root key
    against the stored check value and returns the key-encryption key. Raises ConfigError
    (WrongRootKey for a root key of another vault)."""
    database.check_connection(engine)
    if not is_initialised(engine):
        raise ConfigError("the database is not an initialised coffer vault; run `coffer init`")
    schema.upgrade_to_head(engine)
    with engine.connect() as conn:
        stored = meta_store.get_meta(conn, KEY_CHECK_META)
    assert stored is not None
    verify_key_check_value(root, stored)
    return KeyEncryptionKey.derive(root)
