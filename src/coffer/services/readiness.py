"""Readiness: whether this node can serve requests now (``/readyz``), and the key figures
``/metrics`` shows beside it.

``check()`` runs four named checks at once, each on its own thread with a short deadline
(at most ``MAX_TIMEOUT`` seconds), and never raises: a check that fails or does not answer
in time is reported not ok with a short reason.

- ``database``: ``SELECT 1`` through the engine (its pool, as requests use it).
- ``redis``: ``PING`` on ``COFFER_REDIS_URL`` with a fresh connection; ok ("not configured")
  when no Redis is set.
- ``key_provider``: the active root-key generation recorded in the database is one this node
  holds in memory and whose check value matches; a generation it has not loaded yet (a root
  rotation finished by another node) is loaded through its provider now, so "ready" means
  this node can open it.
- ``audit_writer``: an audit entry can be written now (one is inserted through the audit
  writer in a transaction that is rolled back: the table is writable, the audit keys sign,
  no lock holds writers off) and the sealer is not stuck: the oldest entry waiting for its
  place in the tree, among those written after the newest sealed one, is younger than the
  seal deadline. Rows the sealer refused (not written by coffer) lie before the newest
  sealed entry once anything later is sealed, so they do not keep nodes unready.

A check that is still running when the next ``check()`` comes (a database that does not
answer) is waited on again instead of started twice, so a hung backend holds at most one
thread per check. Reasons are one line, at most ``MAX_REASON`` characters, with the user
and password of any URL and the configured database and Redis passwords masked.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.errors import CofferError, DecryptionFailed
from coffer.domain.events import Event
from coffer.domain.root_keys import RootKeyState
from coffer.services.kek_ring import KekRing
from coffer.storage import audit_store, key_rotation_store, root_key_store

MAX_TIMEOUT = 2.0
MAX_REASON = 200
CHECKS = ("database", "redis", "key_provider", "audit_writer")

_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")


@dataclass(frozen=True)
class CheckResult:
    """One check: whether it passed, how long it took (milliseconds; for a check that did
    not answer, how long it has been running) and a short note (the reason when it failed)."""

    name: str
    ok: bool
    ms: float
    detail: str | None = None


@dataclass(frozen=True)
class ReadinessReport:
    """Every check's result, in ``CHECKS`` order; ``ready`` when all passed."""

    checks: tuple[CheckResult, ...]

    @property
    def ready(self) -> bool:
        """True when every check passed."""
        return all(check.ok for check in self.checks)


@dataclass(frozen=True)
class KeyProgress:
    """Key figures for ``/metrics``: the active root-key generation, how many projects have
    a data-key rotation under way and how many secret versions those still hold under an
    older key (summed over projects)."""

    root_key_generation: int
    rotations_in_progress: int
    versions_remaining: int


class CheckFailed(Exception):
    """A check found the node not ready; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Probe:
    """One run of one check on a daemon thread (a hung driver call never blocks exit)."""

    def __init__(self, name: str, run: Callable[[], str | None]) -> None:
        self.started = time.monotonic()
        self.finished: float | None = None
        self.ok = False
        self.detail: str | None = None
        self.done = threading.Event()
        self._run = run
        threading.Thread(target=self._main, name=f"coffer-readyz-{name}", daemon=True).start()

    def _main(self) -> None:
        try:
            self.detail = self._run()
            self.ok = True
        except CheckFailed as failed:
            self.detail = failed.reason
        except Exception as exc:  # noqa: BLE001 - the edge of this thread: a check never raises
            self.detail = describe(exc)
        finally:
            self.finished = time.monotonic()
            self.done.set()


class Readiness:
    """Runs the readiness checks of one node and reads the key figures for ``/metrics``."""

    def __init__(
        self,
        engine: Engine,
        keks: KekRing,
        audit: AuditWriter,
        *,
        redis_url: str | None,
        seal_deadline: float,
        timeout: float = MAX_TIMEOUT,
    ) -> None:
        """``seal_deadline``: seconds an entry may wait for the sealer before the sealer
        counts as stuck; ``timeout``: each check's deadline (capped at ``MAX_TIMEOUT``)."""
        self._engine = engine
        self._keks = keks
        self._audit = audit
        self._redis_url = redis_url
        self._seal_deadline = seal_deadline
        self._timeout = min(timeout, MAX_TIMEOUT)
        database_secrets = [engine.url.password, engine.url.query.get("password")]
        self._secrets = tuple(
            sorted(
                {*_url_secrets(redis_url), *(str(s) for s in database_secrets if s)},
                key=len,
                reverse=True,
            )
        )
        self._runs: dict[str, Callable[[], str | None]] = {
            "database": self._database,
            "redis": self._redis,
            "key_provider": self._key_provider,
            "audit_writer": self._audit_writer,
        }
        self._probes: dict[str, _Probe] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Readiness(checks={list(CHECKS)}, timeout={self._timeout})"

    def check(self) -> ReadinessReport:
        """Runs every check at once and returns their results within about ``timeout``
        seconds. Never raises."""
        deadline = time.monotonic() + self._timeout
        with self._lock:
            probes = [(name, self._probe(name)) for name in CHECKS]
        results = []
        for name, probe in probes:
            answered = probe.done.wait(max(0.0, deadline - time.monotonic()))
            if answered and probe.finished is not None:
                ms = (probe.finished - probe.started) * 1000
                detail = probe.detail if probe.ok else self._scrub(probe.detail or "failed")
                results.append(CheckResult(name, probe.ok, round(ms, 1), detail))
            else:
                ms = (time.monotonic() - probe.started) * 1000
                reason = f"no answer within {self._timeout:g} s"
                results.append(CheckResult(name, False, round(ms, 1), reason))
        return ReadinessReport(tuple(results))

    def key_progress(self) -> KeyProgress:
        """The key figures ``/metrics`` shows; raises the database's error when it cannot be
        read. Counting versions walks only the projects with a rotation under way."""
        with self._engine.connect() as conn:
            active = root_key_store.in_state(conn, RootKeyState.ACTIVE)
            rotating = key_rotation_store.rotating_projects(conn)
            remaining = sum(
                key_rotation_store.count_versions(conn, project_id, older_than=current)
                for project_id, current in rotating
            )
        return KeyProgress(
            root_key_generation=active.generation if active else 0,
            rotations_in_progress=len(rotating),
            versions_remaining=remaining,
        )

    def _probe(self, name: str) -> _Probe:
        running = self._probes.get(name)
        if running is not None and not running.done.is_set():
            return running  # still waiting on a hung backend: wait for it, do not pile up
        probe = _Probe(name, self._runs[name])
        self._probes[name] = probe
        return probe

    def _scrub(self, text: str) -> str:
        line = text.strip().splitlines()[0] if text.strip() else "failed"
        line = _URL_CREDENTIALS.sub(r"\1***@", line)
        for secret in self._secrets:
            line = line.replace(secret, "***")
        return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."

    def _database(self) -> str | None:
        with self._engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").scalar_one()
        return None

    def _redis(self) -> str | None:
        if not self._redis_url:
            return "not configured"
        client = redis.Redis.from_url(
            self._redis_url,
            socket_connect_timeout=self._timeout,
            socket_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),  # one attempt: the deadline is the check's
        )
        try:
            client.ping()
        finally:
            client.close()
        return None

    def _key_provider(self) -> str | None:
        with self._engine.connect() as conn:
            active = root_key_store.in_state(conn, RootKeyState.ACTIVE)
        if active is None:
            raise CheckFailed("the vault has no active root-key generation")
        try:
            kek = self._keks.kek(active.generation, None)  # in memory, no I/O
        except DecryptionFailed:
            # Not loaded: another node finished a root rotation. Open it as a read would.
            try:
                kek = self._keks.open_generation(active)
            except CofferError as exc:
                raise CheckFailed(
                    f"this node cannot open root-key generation {active.generation}: {exc.message}"
                ) from None
        if kek.check_value() != active.kek_check:
            raise CheckFailed(
                f"the key loaded for root-key generation {active.generation} does not match it"
            )
        return None

    def _audit_writer(self) -> str | None:
        with self._engine.connect() as conn:
            transaction = conn.begin()
            try:
                self._audit.append(
                    conn, None, Event.AUDIT_VERIFIED, metadata={"readiness_probe": True}
                )
            finally:
                transaction.rollback()
            oldest = audit_store.oldest_waiting_timestamp(conn)
        if oldest is None:
            return None
        waited = time.time() - oldest
        if waited > self._seal_deadline:
            raise CheckFailed(
                f"the audit sealer is stuck: an entry has waited {waited:.0f} s for its place "
                f"in the tree (limit {self._seal_deadline:g} s)"
            )
        return None


def describe(exc: BaseException) -> str:
    """One line about ``exc``: the database driver's own message for a database error, the
    message of a coffer error, else the exception's text or its type. Callers scrub it."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None:
        text = str(exc.orig)
    elif isinstance(exc, CofferError):
        text = exc.message
    else:
        text = str(exc)
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    return first or type(exc).__name__


def _url_secrets(url: str | None) -> list[str]:
    """The passwords a URL carries (in its authority or its query string)."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password or "", *parse_qs(parts.query).get("password", [])]
    except ValueError:
        return []
    return [form for secret in found if secret for form in (secret, unquote(secret))]
