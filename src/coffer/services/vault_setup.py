"""Opening a vault at start-up and initialising a new one."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto.keys import KeyEncryptionKey, RootKey, key_check_value, verify_key_check_value
from coffer.crypto.tokens import hash_token, mint_token
from coffer.domain.access import Role
from coffer.domain.errors import ConfigError, Conflict
from coffer.domain.events import Event
from coffer.domain.models import Actor, ActorKind, CallContext, Organization
from coffer.domain.names import validate_resource_name
from coffer.storage import database, meta_store, schema, token_store, user_store
from coffer.storage.ids import new_id

KEY_CHECK_META = "root_key_check_value"
BOOTSTRAP_TOKEN_KIND = "boot"


@dataclass(frozen=True)
class OwnerAccount:
    """The first owner's normalised e-mail address and Argon2id password hash."""

    email: str
    password_hash: str = field(repr=False)


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


def initialise(
    engine: Engine,
    root: RootKey,
    org_name: str,
    audit: AuditWriter,
    owner: OwnerAccount | None = None,
) -> InitResult:
    """Creates the schema, records the root key's check value, the first organization, its
    bootstrap owner token and, when given, its owner's account. Raises Conflict when the
    vault is already initialised."""
    validate_resource_name(org_name, field="org")
    database.check_connection(engine)
    schema.upgrade_to_head(engine)
    now = time.time()
    with engine.begin() as conn:
        if meta_store.get_meta(conn, KEY_CHECK_META) is not None:
            raise Conflict("this vault is already initialised")
        meta_store.set_meta(conn, KEY_CHECK_META, key_check_value(root))
        meta_store.set_meta(conn, "initialised_at", repr(now))
        return create_organization(conn, org_name, audit, now, owner)


def create_organization(
    conn: sa.Connection,
    org_name: str,
    audit: AuditWriter,
    now: float,
    owner: OwnerAccount | None = None,
) -> InitResult:
    """Creates an organization with a bootstrap owner token and, when given, an owner
    account, inside the caller's transaction. Raises Conflict for a taken name or e-mail."""
    validate_resource_name(org_name, field="org")
    if token_store.find_organization_id(conn, org_name) is not None:
        raise Conflict(f"organization {org_name!r} already exists", field="org")
    if owner is not None and user_store.find_user_by_email(conn, owner.email) is not None:
        raise Conflict(f"{owner.email} already has an account", field="email")
    token = mint_token(BOOTSTRAP_TOKEN_KIND)
    identity_id = new_id()
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
    if owner is not None:
        user_store.insert_user(
            conn,
            org_id=org.id,
            email=owner.email,
            password_hash=owner.password_hash,
            role=Role.OWNER,
            now=now,
        )
        audit.append(
            conn, ctx, Event.MEMBER_JOINED, metadata={"email": owner.email, "role": "owner"}
        )
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
