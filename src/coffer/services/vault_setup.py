"""Opening a vault at start-up and initialising a new one."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto.audit_keys import AuditKeys
from coffer.crypto.keys import verify_key_check_value
from coffer.crypto.providers.base import NewRootKek
from coffer.crypto.providers.configured import RootProviders
from coffer.crypto.providers.local import LocalRootProvider
from coffer.crypto.providers.shamir import split_identity
from coffer.crypto.tokens import hash_token, mint_token
from coffer.domain.access import Role
from coffer.domain.errors import ConfigError, Conflict
from coffer.domain.events import Event
from coffer.domain.models import Actor, ActorKind, CallContext, Organization
from coffer.domain.names import validate_resource_name
from coffer.domain.root_keys import ProviderName, RootKeyRecord, RootKeyState
from coffer.services.kek_ring import KekRing
from coffer.storage import database, meta_store, root_key_store, schema, token_store, user_store
from coffer.storage.ids import new_id

KEY_CHECK_META = "root_key_check_value"
SHAMIR_SPLIT_META = "shamir_split"
BOOTSTRAP_TOKEN_KIND = "boot"


@dataclass(frozen=True)
class OwnerAccount:
    """The first owner's normalised e-mail address and Argon2id password hash."""

    email: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True)
class InitResult:
    """A new vault's organization, its bootstrap owner token and, for a Shamir-split root,
    the shares (all shown once)."""

    organization: Organization
    token: str
    shares: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"InitResult(organization={self.organization!r}, token='********')"


def is_initialised(engine: Engine) -> bool:
    """True when the database holds an initialised vault."""
    if schema.current_revision(engine) is None:
        return False
    with engine.connect() as conn:
        return meta_store.get_meta(conn, KEY_CHECK_META) is not None


@dataclass(frozen=True)
class OpenedVault:
    """An open vault's key-encryption keys and audit keys (memory only)."""

    keks: KekRing
    audit_keys: AuditKeys


def initialise(
    engine: Engine,
    root: NewRootKek,
    provider: ProviderName,
    org_name: str,
    owner: OwnerAccount | None = None,
) -> InitResult:
    """Creates the schema, records root-key generation 1 (``root``'s provider, key id and
    wrapped KEK, and new audit keys sealed under the KEK), the first organization, its
    bootstrap owner token and, when given, its owner's account. Raises Conflict when the
    vault is already initialised."""
    validate_resource_name(org_name, field="org")
    database.check_connection(engine)
    schema.upgrade_to_head(engine)
    now = time.time()
    audit_keys = AuditKeys.derive(root.kek)
    with engine.begin() as conn:
        if meta_store.get_meta(conn, KEY_CHECK_META) is not None:
            raise Conflict("this vault is already initialised")
        meta_store.set_meta(conn, KEY_CHECK_META, root.key_id)
        meta_store.set_meta(conn, "initialised_at", repr(now))
        if root.shares:
            identifier, threshold = split_identity(root.shares[0])
            meta_store.set_meta(conn, SHAMIR_SPLIT_META, f"{identifier}:{threshold}")
        root_key_store.insert(
            conn,
            RootKeyRecord(
                generation=1,
                state=RootKeyState.ACTIVE,
                provider=provider,
                key_id=root.key_id,
                kek_check=root.kek.check_value(),
                created_at=now,
                activated_at=now,
                wrapped_kek=root.wrapped_kek,
                audit_keys_sealed=audit_keys.seal(root.kek),
            ),
        )
        return create_organization(conn, org_name, AuditWriter(audit_keys), now, owner)


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


def active_root(engine: Engine, providers: RootProviders) -> RootKeyRecord:
    """Checks the database is reachable, at this code's schema revision and initialised, and
    returns the active root-key generation (recording generation 1 of a vault made before
    generations existed, which needs its local root key). It never migrates. Raises
    ConfigError (SchemaMismatch naming both revisions for a schema older or newer than the
    code, WrongRootKey for a key of another vault)."""
    database.check_connection(engine)
    schema.check_schema(engine)
    if not is_initialised(engine):
        raise ConfigError("the database is not an initialised coffer vault; run `coffer init`")
    with engine.begin() as conn:
        active = root_key_store.in_state(conn, RootKeyState.ACTIVE)
        if active is None:
            active = _record_first_generation(conn, providers)
    return active


def _record_first_generation(conn: sa.Connection, providers: RootProviders) -> RootKeyRecord:
    """Generation 1 of a vault initialised before root-key generations: its local root key,
    checked against the stored check value, and its audit keys (derived as they were)."""
    stored = meta_store.get_meta(conn, KEY_CHECK_META)
    assert stored is not None
    local = providers.get(ProviderName.LOCAL)
    assert isinstance(local, LocalRootProvider)
    verify_key_check_value(local.root(), stored)
    root = local.new_kek(1, rotate=False)
    now = time.time()
    record = RootKeyRecord(
        generation=1,
        state=RootKeyState.ACTIVE,
        provider=ProviderName.LOCAL,
        key_id=root.key_id,
        kek_check=root.kek.check_value(),
        created_at=now,
        activated_at=now,
        audit_keys_sealed=AuditKeys.derive(root.kek).seal(root.kek),
    )
    root_key_store.insert(conn, record)
    return record


def shamir_split(engine: Engine) -> tuple[int, int]:
    """The (identifier, threshold) of the vault's Shamir share set, recorded at init."""
    with engine.connect() as conn:
        recorded = meta_store.get_meta(conn, SHAMIR_SPLIT_META)
    if recorded is None:
        raise ConfigError("the vault records no Shamir share set; it cannot be unsealed")
    identifier, threshold = (int(part) for part in recorded.split(":"))
    return identifier, threshold


def expect_shamir_split(engine: Engine, providers: RootProviders) -> None:
    """Tells the process's Shamir unsealer which share set is the vault's (recorded at init),
    so it refuses shares of any other."""
    providers.shamir().expect(*shamir_split(engine))


def open_vault(engine: Engine, providers: RootProviders) -> OpenedVault:
    """Opens the active root-key generation (and a pending one: a root rotation under way)
    through its provider and returns the KEKs and audit keys. Raises ConfigError naming what
    is wrong (WrongRootKey for a key of another vault); a Shamir-split root must have been
    unsealed first."""
    active = active_root(engine, providers)
    keks = KekRing(providers)
    kek = keks.open_generation(active)
    providers.get(active.provider).finish_rotation(active)  # a move cut short by a crash
    with engine.connect() as conn:
        pending = root_key_store.in_state(conn, RootKeyState.PENDING)
    if pending is not None:
        keks.open_generation(pending)
    assert active.audit_keys_sealed is not None
    return OpenedVault(keks=keks, audit_keys=AuditKeys.unseal(kek, active.audit_keys_sealed))
