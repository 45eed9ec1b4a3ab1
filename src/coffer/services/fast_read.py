"""The authenticated read of a secret's current value, as lean as it can be.

Every application hits this on every deploy. It runs on the event loop: the token's identity
and grants and the secret's current ciphertext come from node caches (``read_cache``, kept
fresh across nodes by ``cache_epochs``) or, on a miss, from two short queries; the policy
decides with the same function as everywhere else; the value is decrypted with a cached
data key; and the ``secret.read`` entry joins the next group commit (``audit_batcher``).
The value is returned only once that entry is committed.

Anything but the plain success (bad token, session token, denied access, unknown name,
missing secret, decryption failure, a secret with a TTL or read limit, an environment whose
policy wants reads to state a reason, a rate limit) returns None and the caller takes the
full path, which produces the exact error; the rules therefore live in one place and this
path only short-cuts success. (A request that states a reason has a query string, so it
never comes here.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ParamSpec, Protocol, TypeVar

from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto.tokens import hash_token, token_kind
from coffer.domain.access import Action
from coffer.domain.errors import DecryptionFailed, RateLimited
from coffer.domain.events import Event
from coffer.domain.models import CallContext, RevealedSecret
from coffer.domain.names import is_valid_key_name, is_valid_resource_name
from coffer.services.access import decision_for
from coffer.services.audit_batcher import AuditBatcher
from coffer.services.auth import SESSION_TOKEN_KIND
from coffer.services.read_cache import EpochCache, Stamp
from coffer.services.secret_cipher import SecretCipher
from coffer.services.throttle import Throttle
from coffer.services.token_holders import TokenHolders
from coffer.storage.database import DATABASE_UNAVAILABLE
from coffer.storage.policy_store import READ_REASON_QUERY, reason_required_from_row
from coffer.storage.raw_statements import CompiledStatement, raw_reads
from coffer.storage.secret_store import READ_QUERY, ReadBundle, read_bundle_from_row

_log = logging.getLogger("coffer.read")
P = ParamSpec("P")
R = TypeVar("R")

SecretAddress = tuple[str, str, str, str]  # org id, project, environment, key


class NeedsReason:
    """Cached in place of a bundle for a secret whose environment's policy wants reads to
    state a reason: the full path refuses or serves those reads."""


NEEDS_REASON = NeedsReason()
CachedRead = ReadBundle | NeedsReason


class BlockingCall(Protocol):
    """Runs a blocking call from the event loop (inline on SQLite, in a thread otherwise)."""

    async def __call__(self, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Returns ``func(*args, **kwargs)``."""
        ...


class FastSecretReader:
    """Reads the current value of one secret for a bearer token, or returns None."""

    def __init__(
        self,
        engine: Engine,
        cipher: SecretCipher,
        audit: AuditWriter,
        batcher: AuditBatcher,
        throttle: Throttle,
        holders: TokenHolders,
        bundles: EpochCache[SecretAddress, CachedRead],
    ) -> None:
        self._engine = engine
        self._throttle = throttle
        self._cipher = cipher
        self._audit = audit
        self._batcher = batcher
        self._holders = holders
        self._bundles = bundles
        self._read_query = CompiledStatement(READ_QUERY, engine)
        self._reason_query = CompiledStatement(READ_REASON_QUERY, engine)

    @property
    def holders(self) -> TokenHolders:
        """The node's token holders (shared with the authenticator)."""
        return self._holders

    async def read(
        self,
        run: BlockingCall,
        token: str,
        project: str,
        environment: str,
        key: str,
        *,
        source_ip: str | None,
        user_agent: str | None,
    ) -> RevealedSecret | None:
        """Returns the current version with its value, its ``secret.read`` entry committed;
        None when the full path must decide, also when the database cannot be reached or
        the audit entry could not be written (the value is then not returned)."""
        try:
            return await self._read(
                run, token, project, environment, key, source_ip=source_ip, user_agent=user_agent
            )
        except DATABASE_UNAVAILABLE as exc:
            # The full path meets the same problem and answers 503 (or, if the database is
            # back, serves and audits the read itself).
            _log.warning("hot read path: database unavailable: %s", type(exc).__name__)
            return None

    async def _read(
        self,
        run: BlockingCall,
        token: str,
        project: str,
        environment: str,
        key: str,
        *,
        source_ip: str | None,
        user_agent: str | None,
    ) -> RevealedSecret | None:
        if token_kind(token) in (None, SESSION_TOKEN_KIND) or not (
            is_valid_resource_name(project)
            and is_valid_resource_name(environment)
            and is_valid_key_name(key)
        ):
            return None
        now = time.time()
        token_hash = hash_token(token)
        holder = self._holders.cached(token_hash, now)
        if holder is None:
            holder = await run(self._holders.load, token_hash, now, self._holders.stamp(now))
        if holder is None or not holder.active(now):
            return None
        actor = holder.actor
        ctx = CallContext(actor=actor, source_ip=source_ip, user_agent=user_agent)
        if not decision_for(
            ctx, Action.SECRET_READ, project=project, environment=environment, now=now
        ).allowed:
            return None
        address = (actor.org_id, project, environment, key)
        bundle = self._bundles.get(address, now)
        if bundle is None:
            bundle = await run(self._load_bundle, address, self._bundles.stamp(now))
            if bundle is None:
                return None
        if isinstance(bundle, NeedsReason):
            return None  # refused (or served with the reason given) by the full path
        if bundle.limits.limited:
            return None  # counted reads and expiry are the full path's
        if not self._within_rate(actor.id):
            return None  # counted here; the full path counts once more and answers 429
        try:
            value = self._cipher.open_bundle(bundle, key)
        except DecryptionFailed:
            return None
        stored = bundle.stored
        await self._batcher.append(
            self._audit.entry(
                ctx,
                Event.SECRET_READ,
                project=project,
                environment=environment,
                key=key,
                metadata={"version": stored.version, "via": "get"},
            )
        )
        return RevealedSecret(
            key=key,
            version=stored.version,
            value=value,
            created_at=stored.created_at,
            comment=stored.comment,
        )

    def _load_bundle(self, address: SecretAddress, stamp: Stamp | None) -> CachedRead | None:
        """The secret's current version from the database (``NEEDS_REASON`` instead when
        its environment's policy wants reads to state a reason), cached under ``stamp``
        (environment policies move the same epoch as secrets); None, not cached, when there
        is no such secret."""
        org_id, project, environment, key = address
        with raw_reads(self._engine) as tx:
            row = tx.fetch_one(
                self._read_query,
                {
                    "org_id": org_id,
                    "project": project,
                    "environment": environment,
                    "key": key,
                    "version": None,
                },
            )
            if row is None:
                return None
            policy = tx.fetch_one(
                self._reason_query, {"org_id": org_id, "environment": environment}
            )
        if reason_required_from_row(policy):
            self._bundles.put(address, NEEDS_REASON, stamp)
            return NEEDS_REASON
        bundle = read_bundle_from_row(row, org_id=org_id, project=project, environment=environment)
        self._bundles.put(address, bundle, stamp)
        return bundle

    def _within_rate(self, identity_id: str) -> bool:
        """Counts the request against the identity's limit; False when over it (the full
        path then counts again and answers 429)."""
        try:
            self._throttle.hit("api_per_identity", identity_id)
        except RateLimited:
            return False
        return True
