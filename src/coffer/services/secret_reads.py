"""Reading one secret for ``SecretService.get``: the one-query read with its stated reason
and counted read, the error naming what a failed read lacked, and the destruction of a
secret found past its TTL (``read_secret`` and ``expire`` each own their transaction), with
the checks of a version number and of a row's TTL that the other secret use cases share."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.domain.errors import CofferError, InvalidInput, NotFound
from coffer.domain.events import Event
from coffer.domain.models import CallContext, RevealedSecret
from coffer.services.lookup import require_scope
from coffer.services.read_reasons import require_read_reason
from coffer.services.reference_reader import expand_secret
from coffer.services.secret_ops import MAX_VERSION, SecretOps, secret_not_found
from coffer.storage import secret_store
from coffer.storage.database import scrub_deleted, serialize_counted_reads
from coffer.storage.secret_store import ExpiredSecret, SecretRow


def check_version(key: str, version: int | None) -> None:
    """Raises InvalidInput for a version below 1 and NotFound for one no secret can have."""
    if version is None:
        return
    if version < 1:
        raise InvalidInput("version must be a positive integer", field="version")
    if version > MAX_VERSION:
        raise NotFound(f"secret {key!r} has no version {version}", field="version")


def live(row: SecretRow | None, now: float) -> SecretRow | None:
    """The row unless it is missing or past its TTL (then it is as good as never existed)."""
    return None if row is None or row.limits.expired(now) else row


def read_secret(
    engine: Engine,
    ops: SecretOps,
    ctx: CallContext,
    project: str,
    environment: str,
    key: str,
    *,
    version: int | None,
    expand: bool,
) -> RevealedSecret:
    """Reads the current (or given) version in one transaction (the caller checked the
    key, version and access): the stated reason where the policy wants one, the counted
    read of a limited secret, references expanded with ``expand``. Raises ReasonRequired,
    NotFound naming what was missing (a secret found past its TTL is destroyed first),
    Gone for a sealed one."""
    now = time.time()
    with engine.begin() as conn:
        require_read_reason(conn, ctx, environment)
        if expand:  # references may count further limited secrets
            serialize_counted_reads(conn, ctx.actor.org_id)
        bundle = secret_store.fetch_for_read(
            conn,
            org_id=ctx.actor.org_id,
            project=project,
            environment=environment,
            key=key,
            version=version,
        )
        if bundle is None:
            raise _why_missing(conn, ctx, project, environment, key, version, now)
        if not bundle.limits.expired(now):
            found, env, stored = bundle.project, bundle.environment, bundle.stored
            value = ops.cipher.open_bundle(bundle, key, conn)
            state = ops.counted_read(
                conn,
                ctx,
                found,
                env,
                key,
                stored,
                secret_id=bundle.secret_id,
                limits=bundle.limits,
                updated_at=bundle.updated_at,
                via="get",
                reason_checked=True,
            )
            if expand:
                value = expand_secret(conn, ctx, ops, found, env, key, value)
            return RevealedSecret(
                key=key,
                version=stored.version,
                value=value,
                created_at=stored.created_at,
                comment=stored.comment,
                limits=state,
            )
    expire(engine, ops, ctx, project, environment, key)
    raise secret_not_found(key, environment)


def expire(
    engine: Engine, ops: SecretOps, ctx: CallContext, project: str, environment: str, key: str
) -> None:
    """Destroys the secret found past its TTL (``secret.expired``), if it still is."""
    now = time.time()
    with engine.begin() as conn:
        found, env = require_scope(conn, ctx.actor, project, environment)
        row = secret_store.find_secret(conn, env.id, key, for_update=True)
        if row is None or not row.limits.expired(now):
            return
        place = ExpiredSecret.of(row, found, env)
        ops.destroy_expired(conn, ctx, place, Event.SECRET_EXPIRED)
    scrub_deleted(engine)


def _why_missing(
    conn: sa.Connection,
    ctx: CallContext,
    project: str,
    environment: str,
    key: str,
    version: int | None,
    now: float,
) -> CofferError:
    """Returns the error naming what a failed one-query read lacked (project, environment,
    secret or version)."""
    _, env = require_scope(conn, ctx.actor, project, environment)
    if live(secret_store.find_secret(conn, env.id, key), now) is None:
        return secret_not_found(key, environment)
    return NotFound(f"secret {key!r} has no version {version}", field="version")
