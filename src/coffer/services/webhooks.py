"""Webhooks: an organization's HTTP endpoints that receive signed audit events.

A webhook belongs to one organization, optionally narrowed to one project, and subscribes to
event patterns (``secret.read``, ``secret.*``, ``*``). Deliveries are made in the background
(``coffer.services.webhook_delivery``); this module creates, lists, deletes and tests
webhooks, and signs and sends one request.

Every request is a ``POST`` of JSON ``{"id", "event", "created_at", "entry"}`` (``id`` is
the delivery id, ``created_at`` Unix seconds, ``entry`` the public audit record) with the
headers ``X-Coffer-Event``, ``X-Coffer-Delivery``, ``X-Coffer-Timestamp`` (Unix seconds) and
``X-Coffer-Signature: sha256=<hex>``, the HMAC-SHA256 under the webhook's secret (the whole
``whsec_...`` text as UTF-8) of ``f"{timestamp}.".encode() + body``. Receivers recompute it
with ``verify_signature`` and refuse timestamps more than ``REPLAY_WINDOW_SECONDS`` away from
their clock, so a captured request cannot be replayed later.

URLs must be http(s) and are checked against the SSRF guard (``check_outbound_url``) when a
webhook is created and again before every send, and the connection goes to an address that
check approved (DNS rebinding). Redirects are never followed: a 3xx is a failed delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.outbound import check_outbound_url
from coffer.audit.records import RECORD_WIDTH, Record, record_from_values
from coffer.audit.writer import AuditWriter
from coffer.crypto.aad import webhook_secret_aad
from coffer.domain.access import Action
from coffer.domain.errors import DecryptionFailed, InvalidInput, InvalidQuery, NotFound
from coffer.domain.events import Event, parse_event_pattern
from coffer.domain.models import CallContext
from coffer.services.access import AccessGate
from coffer.services.kek_ring import KekRing
from coffer.services.lookup import require_project
from coffer.storage import audit_store, webhook_store
from coffer.storage.ids import new_id
from coffer.storage.json_text import canonical_json
from coffer.storage.webhook_store import DeliveryRow, WebhookRow

SECRET_PREFIX = "whsec_"
SIGNATURE_PREFIX = "sha256="
REPLAY_WINDOW_SECONDS = 300
DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_EVENTS = 50
MAX_URL_CHARS = 2048
MAX_DESCRIPTION_CHARS = 200
MAX_DELIVERIES_SHOWN = 1000


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Returns the ``X-Coffer-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str | int,
    body: bytes,
    header: str,
    now: float,
    tolerance: float = REPLAY_WINDOW_SECONDS,
) -> bool:
    """True when ``header`` (the ``X-Coffer-Signature`` value) signs ``body`` with
    ``secret`` at ``timestamp`` (the ``X-Coffer-Timestamp`` value) and that timestamp is
    within ``tolerance`` seconds of ``now``. Never raises on malformed input."""
    text = str(timestamp)
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        return False
    sent = int(text)
    if abs(now - sent) > tolerance:
        return False
    expected = sign(secret, sent, body)
    return hmac.compare_digest(expected.encode(), str(header).strip().encode("utf-8", "replace"))


def url_origin(url: str) -> str:
    """Returns ``scheme://host:port`` of ``url``: what logs and audit entries may show (a
    webhook URL's path or query can hold a token)."""
    parts = urlsplit(url)
    port = parts.port if parts.port else (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


@dataclass(frozen=True)
class WebhookInfo:
    """A webhook as its organization's admins see it (never its secret)."""

    id: str
    url: str
    events: tuple[str, ...]
    project: str | None
    description: str | None
    created_at: float
    created_by: str | None


@dataclass(frozen=True)
class CreatedWebhook:
    """A new webhook and its signing secret, shown this once (masked in ``repr``)."""

    info: WebhookInfo
    secret: str = field(repr=False)


@dataclass(frozen=True)
class SendOutcome:
    """How one request went: delivered (2xx) or not, with the status code, the time to the
    response headers in milliseconds, and a short reason when it failed."""

    delivered: bool
    status_code: int | None
    latency_ms: float | None
    error: str | None


def payload(delivery_id: str, event: str, created_at: float, record: Record) -> bytes:
    """Returns the JSON body of a delivery (compact, sorted keys, ASCII)."""
    body = {"id": delivery_id, "event": event, "created_at": created_at, "entry": record}
    return canonical_json(body).encode("ascii")


class WebhookPoster:
    """Sends signed webhook requests, each to an address the SSRF guard approved just
    before (``allow`` is COFFER_OUTBOUND_ALLOW). Thread-safe: no connection is kept alive,
    so a TLS connection made for one host name is never reused for another."""

    def __init__(
        self, *, allow: tuple[str, ...], timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self.allow = allow
        self.timeout_seconds = timeout_seconds
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def post(
        self, url: str, secret: str, *, delivery_id: str, event: str, body: bytes
    ) -> SendOutcome:
        """POSTs ``body`` signed with ``secret``; returns the outcome (never raises for a
        refused URL or a failed request)."""
        try:
            target = check_outbound_url(url, allow=self.allow)
        except InvalidInput as exc:
            return SendOutcome(False, None, None, f"refused: {exc.message}")
        parts = urlsplit(url)
        timestamp = int(time.time())
        headers = {
            "Host": parts.netloc,
            "Content-Type": "application/json",
            "User-Agent": "coffer-webhooks",
            "X-Coffer-Event": event,
            "X-Coffer-Delivery": delivery_id,
            "X-Coffer-Timestamp": str(timestamp),
            "X-Coffer-Signature": sign(secret, timestamp, body),
        }
        started = time.perf_counter()
        status: int | None = None
        failure = "connection failed"
        # Each approved address in turn (a name may resolve to IPv6 and IPv4); only a failure
        # to connect moves on, so a request is never sent twice.
        for address in target.addresses:
            netloc = f"[{address}]" if ":" in address else address
            pinned = urlunsplit(
                (parts.scheme, f"{netloc}:{target.port}", parts.path or "/", parts.query, "")
            )
            try:
                with self._client.stream(
                    "POST",
                    pinned,
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": target.host},
                ) as response:
                    status = response.status_code
                break
            except httpx.ConnectError:
                failure = "connection failed (ConnectError)"
            except httpx.TimeoutException:
                return SendOutcome(False, None, None, f"timed out after {self.timeout_seconds:g} s")
            except httpx.HTTPError as exc:
                return SendOutcome(False, None, None, f"connection failed ({type(exc).__name__})")
        if status is None:
            return SendOutcome(False, None, None, failure)
        latency = round((time.perf_counter() - started) * 1000, 3)
        if 200 <= status < 300:
            return SendOutcome(True, status, latency, None)
        reason = f"HTTP {status}"
        if 300 <= status < 400:
            reason += " (redirects are not followed)"
        return SendOutcome(False, status, latency, reason)

    def close(self) -> None:
        """Releases the HTTP client."""
        self._client.close()


def _info(row: WebhookRow) -> WebhookInfo:
    return WebhookInfo(
        id=row.id,
        url=row.url,
        events=row.events,
        project=row.project,
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _patterns(events: Sequence[str]) -> tuple[str, ...]:
    if isinstance(events, str) or not events:
        raise InvalidInput("events: give at least one event pattern", field="events")
    if len(events) > MAX_EVENTS:
        raise InvalidInput(f"events: at most {MAX_EVENTS} patterns", field="events")
    parsed: list[str] = []
    for text in events:
        if not isinstance(text, str):
            raise InvalidInput("events: every pattern must be text", field="events")
        try:
            pattern = parse_event_pattern(text, field="events")
        except InvalidInput as exc:
            raise InvalidInput(exc.message, field="events") from None
        if pattern not in parsed:
            parsed.append(pattern)
    return tuple(parsed)


class WebhookService:
    """Manages an organization's webhooks (admins and owners)."""

    def __init__(
        self,
        engine: Engine,
        keks: KekRing,
        audit: AuditWriter,
        gate: AccessGate,
        poster: WebhookPoster,
    ) -> None:
        self._engine = engine
        self._keks = keks
        self._audit = audit
        self._gate = gate
        self.poster = poster

    def create(
        self,
        ctx: CallContext,
        url: str,
        events: Sequence[str],
        *,
        project: str | None = None,
        description: str | None = None,
    ) -> CreatedWebhook:
        """Creates a webhook for ``events`` (patterns) of the caller's organization, or of
        one ``project``, and returns it with its new signing secret (shown only now).
        Raises InvalidInput naming ``url`` (not http(s), or refused by the SSRF guard),
        ``events`` or ``description``; NotFound naming ``project``."""
        if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
            raise InvalidInput(f"url: at most {MAX_URL_CHARS} characters", field="url")
        patterns = _patterns(events)
        if description is not None and len(description) > MAX_DESCRIPTION_CHARS:
            raise InvalidInput(
                f"description: at most {MAX_DESCRIPTION_CHARS} characters", field="description"
            )
        self._gate.require(ctx, Action.WEBHOOK_MANAGE)
        check_outbound_url(url, allow=self.poster.allow)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        webhook_id = new_id()
        with self._engine.begin() as conn:
            if project is not None:
                require_project(conn, ctx.actor, project)
            row = self._new_row(conn, ctx, webhook_id, secret, project, url, patterns, description)
            webhook_store.insert_webhook(conn, row)
            self._audit.append(
                conn,
                ctx,
                Event.WEBHOOK_CREATED,
                project=project,
                metadata={
                    "webhook_id": webhook_id,
                    "target": url_origin(url),
                    "events": ",".join(patterns),
                },
            )
        return CreatedWebhook(_info(row), secret)

    def _new_row(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        webhook_id: str,
        secret: str,
        project: str | None,
        url: str,
        patterns: tuple[str, ...],
        description: str | None,
    ) -> WebhookRow:
        org_id = ctx.actor.org_id
        sealed = self._keks.seal(
            conn, secret.encode("ascii"), webhook_secret_aad(org_id=org_id, webhook_id=webhook_id)
        )
        return WebhookRow(
            id=webhook_id,
            org_id=org_id,
            project=project,
            url=url,
            events=patterns,
            description=description,
            created_at=time.time(),
            created_by=ctx.actor.id,
            secret_sealed=sealed,
        )

    def list_webhooks(self, ctx: CallContext) -> list[WebhookInfo]:
        """Returns the organization's webhooks, oldest first."""
        self._gate.require(ctx, Action.WEBHOOK_MANAGE)
        with self._engine.connect() as conn:
            return [_info(row) for row in webhook_store.list_webhooks(conn, ctx.actor.org_id)]

    def delete(self, ctx: CallContext, webhook_id: str) -> None:
        """Deletes a webhook, its secret and its delivery log; pending deliveries are
        dropped. Raises NotFound (also for another organization's webhook)."""
        self._gate.require(ctx, Action.WEBHOOK_MANAGE)
        with self._engine.begin() as conn:
            row = self._find(conn, ctx, webhook_id)
            webhook_store.delete_webhook(conn, row.id)
            self._audit.append(
                conn,
                ctx,
                Event.WEBHOOK_DELETED,
                project=row.project,
                metadata={"webhook_id": row.id, "target": url_origin(row.url)},
            )

    def test(self, ctx: CallContext, webhook_id: str) -> SendOutcome:
        """Records ``webhook.tested`` and sends its entry to the webhook now, returning how
        the request went (a failed request is an outcome, not an error). Raises NotFound."""
        self._gate.require(ctx, Action.WEBHOOK_MANAGE)
        with self._engine.begin() as conn:
            row = self._find(conn, ctx, webhook_id)
            entry_id = self._audit.append(
                conn,
                ctx,
                Event.WEBHOOK_TESTED,
                project=row.project,
                metadata={"webhook_id": row.id, "target": url_origin(row.url)},
            )
            values = audit_store.row_by_id(conn, entry_id)
        assert values is not None
        record = record_from_values(values[:RECORD_WIDTH])
        delivery_id = new_id()
        body = payload(delivery_id, str(Event.WEBHOOK_TESTED), time.time(), record)
        return self.poster.post(
            row.url,
            self.secret_of(row),
            delivery_id=delivery_id,
            event=str(Event.WEBHOOK_TESTED),
            body=body,
        )

    def deliveries(self, ctx: CallContext, webhook_id: str, limit: int = 50) -> list[DeliveryRow]:
        """Returns the webhook's latest ``limit`` (1..1000) deliveries, newest first.
        Raises InvalidQuery naming ``limit``, NotFound for an unknown webhook."""
        if not 1 <= limit <= MAX_DELIVERIES_SHOWN:
            raise InvalidQuery(f"limit: must be 1 to {MAX_DELIVERIES_SHOWN}", field="limit")
        self._gate.require(ctx, Action.WEBHOOK_MANAGE)
        with self._engine.connect() as conn:
            row = self._find(conn, ctx, webhook_id)
            return webhook_store.list_deliveries(conn, row.id, limit)

    def secret_of(self, row: WebhookRow) -> str:
        """Returns the webhook's signing secret (for signing only; never show or log it)."""
        aad = webhook_secret_aad(org_id=row.org_id, webhook_id=row.id)
        try:
            return self._keks.open(row.secret_sealed, aad, None).decode("ascii")
        except DecryptionFailed:  # perhaps a root-key generation not loaded yet
            with self._engine.connect() as conn:
                return self._keks.open(row.secret_sealed, aad, conn).decode("ascii")

    @staticmethod
    def _find(conn: sa.Connection, ctx: CallContext, webhook_id: str) -> WebhookRow:
        row = webhook_store.find_webhook(conn, webhook_id, ctx.actor.org_id)
        if row is None:
            raise NotFound(f"no webhook {webhook_id[:40]!r}", field="id")
        return row
