"""Matching a scan's findings with the vault by keyed fingerprint, and recording the leaks.

The client sends, per finding, ``HMAC-SHA256(nonce, secret)`` under a nonce of its own (see
``crypto.scan_fingerprints``). For every secret version the caller may read (the newest
``VERSIONS_COMPARED`` of each secret a read would answer: unexpired, unsealed and with
reads left, in every environment it has read access to, or in one project's when the
request names it; comparing counts no read), the service decrypts the value in memory,
computes the same HMAC and looks the finding's fingerprint up: a dictionary lookup
(Python's string hash is keyed and randomised per process) followed by a constant-time
comparison. Neither the values nor any fingerprint are logged, stored or returned. Each
match is recorded once per version and place, with a ``secret.exposed`` audit entry in the
same transaction.

A scan sends its findings in batches, all under one nonce. The fingerprints computed for
the first batch are kept in this process's memory (``FingerprintCache``: only HMACs and
names, never a value; about a minute; a bounded number of entries, least recently used
evicted first) for the same caller, nonce, project and readable environments, so that later
batches cost dictionary lookups. Whether a secret is still matchable, and which version is
current, is checked again when a match is recorded. A request that would compare more than
``MAX_VERSIONS_PER_MATCH`` versions is refused (TooLarge naming ``project``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto.keys import DataKey
from coffer.crypto.scan_fingerprints import decode_nonce, keyed_fingerprint, same_fingerprint
from coffer.domain.access import Action
from coffer.domain.errors import TooLarge
from coffer.domain.events import Event
from coffer.domain.exposures import (
    MAX_VERSIONS_PER_MATCH,
    VERSIONS_COMPARED,
    ExposureMatch,
    MatchRequest,
    check_finding_count,
    parse_finding,
)
from coffer.domain.models import CallContext, Environment, Project
from coffer.domain.names import validate_resource_name
from coffer.services.access import AccessGate
from coffer.services.keyring import Keyring
from coffer.services.lookup import require_project
from coffer.services.retries import retry_on_conflict
from coffer.services.secret_cipher import SecretCipher
from coffer.storage import exposure_store, project_store
from coffer.storage.database import read_snapshot

# The fingerprint sets kept for later batches of a scan: how long, how many, and how many
# versions in all (about 300 bytes each: a hex HMAC and the names of its secret).
CACHE_SECONDS = 60.0
CACHE_ENTRIES = 32
CACHE_VERSIONS = 2 * MAX_VERSIONS_PER_MATCH


def parse_match_request(
    nonce: str, findings: Sequence[Mapping[str, object]], project: str | None = None
) -> MatchRequest:
    """Returns the validated request. Raises InvalidInput naming the field: ``nonce`` (not
    base64url, or not 16 to 64 bytes), ``project`` (not a valid name), ``findings`` (none,
    or more than 10,000) or one finding's ``fingerprint``, ``rule_id`` or ``location`` (see
    ``parse_finding``)."""
    decoded = decode_nonce(nonce)
    if project is not None:
        validate_resource_name(project, field="project")
    check_finding_count(len(findings))
    return MatchRequest(
        nonce=decoded,
        findings=tuple(
            parse_finding(i, item.get("fingerprint"), item.get("rule_id"), item.get("location"))
            for i, item in enumerate(findings)
        ),
        project=project,
    )


def readable_environments(
    conn: sa.Connection, ctx: CallContext, project: str | None = None
) -> list[tuple[Project, Environment]]:
    """Returns the environments (of ``project``, or of every project of the caller's
    organization) whose secrets the caller may read, by project name and creation order.
    Raises NotFound for an unknown ``project``."""
    projects = (
        [require_project(conn, ctx.actor, project)]
        if project is not None
        else project_store.list_projects(conn, ctx.actor.org_id)
    )
    return [
        (found, env)
        for found in projects
        for env in project_store.list_environments(conn, found.id)
        if AccessGate.allows(ctx, Action.SECRET_READ, project=found.name, environment=env.name)
    ]


@dataclass(frozen=True, slots=True)
class _StoredMatch:
    """A readable stored version and its keyed fingerprint under a request's nonce."""

    fingerprint: str
    secret_id: str
    project: str
    environment: str
    key: str
    version: int


@dataclass(frozen=True)
class FingerprintSet:
    """The keyed fingerprints of every version one caller could match under one nonce, and
    how many versions they stand for. Holds no value."""

    by_fingerprint: Mapping[str, tuple[_StoredMatch, ...]]
    versions: int


# Caller (organization, kind, id, name), nonce, project, readable environment ids: a set
# is reused only by the same caller with the same nonce and the same access.
CacheKey = tuple[str, str, str, str, bytes, str | None, frozenset[str]]


class FingerprintCache:
    """Fingerprint sets of recent match requests, in this process's memory only: each for
    ``seconds`` after it was computed, at most ``entries`` of them and ``versions`` versions
    in all (the least recently used go first). Thread-safe."""

    def __init__(
        self,
        *,
        seconds: float = CACHE_SECONDS,
        entries: int = CACHE_ENTRIES,
        versions: int = CACHE_VERSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._entries = entries
        self._versions = versions
        self._clock = clock
        self._lock = threading.Lock()
        self._sets: OrderedDict[CacheKey, tuple[float, FingerprintSet]] = OrderedDict()
        self._held = 0

    def get(self, key: CacheKey) -> FingerprintSet | None:
        """The set kept under ``key``, or None when there is none or it is too old."""
        with self._lock:
            kept = self._sets.get(key)
            if kept is None:
                return None
            if self._clock() - kept[0] >= self._seconds:
                self._drop(key)
                return None
            self._sets.move_to_end(key)
            return kept[1]

    def put(self, key: CacheKey, found: FingerprintSet) -> None:
        """Keeps ``found`` under ``key`` (unless it alone exceeds the versions bound),
        evicting the least recently used sets beyond the bounds."""
        with self._lock:
            if key in self._sets:
                self._drop(key)
            if found.versions > self._versions:
                return
            self._sets[key] = (self._clock(), found)
            self._held += found.versions
            while len(self._sets) > self._entries or self._held > self._versions:
                self._drop(next(iter(self._sets)))

    def _drop(self, key: CacheKey) -> None:
        _, found = self._sets.pop(key)
        self._held -= found.versions


class ExposureService:
    """Finds which stored secrets a scan's findings are, and marks them exposed."""

    def __init__(
        self,
        engine: Engine,
        keyring: Keyring,
        cipher: SecretCipher,
        audit: AuditWriter,
        gate: AccessGate,
        *,
        max_versions: int = MAX_VERSIONS_PER_MATCH,
        cache: FingerprintCache | None = None,
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._cipher = cipher
        self._audit = audit
        self._gate = gate
        self._max_versions = max_versions
        self._cache = FingerprintCache() if cache is None else cache

    def with_max_versions(self, max_versions: int) -> ExposureService:
        """This service comparing at most ``max_versions`` versions per request (a bound
        other than ``MAX_VERSIONS_PER_MATCH``), with a fingerprint cache of its own."""
        return ExposureService(
            self._engine,
            self._keyring,
            self._cipher,
            self._audit,
            self._gate,
            max_versions=max_versions,
        )

    def match(self, ctx: CallContext, request: MatchRequest) -> list[ExposureMatch]:
        """Returns, for each finding equal to a version of a secret the caller may read (of
        ``request.project`` only, when given), one match (several when the value is stored
        in several places), in finding order. Each match not recorded before (same version,
        same location) is recorded with a ``secret.exposed`` entry naming the project,
        environment, key, version, rule and location. A caller without read access to a
        secret gets no match for it. Raises NotFound naming ``project`` for an unknown
        project, and TooLarge naming ``project`` when more than the service's bound of
        versions (``MAX_VERSIONS_PER_MATCH`` by default) would be compared."""
        self._gate.require(ctx, Action.PROJECT_VIEW, project=request.project)
        stored = self._fingerprints(ctx, request)
        hits = [
            (index, candidate)
            for index, finding in enumerate(request.findings)
            for candidate in stored.by_fingerprint.get(finding.fingerprint, ())
            if same_fingerprint(candidate.fingerprint, finding.fingerprint)
        ]
        if not hits:
            return []
        return self._record(ctx, request, hits)

    def _fingerprints(self, ctx: CallContext, request: MatchRequest) -> FingerprintSet:
        """The fingerprint set of the request's caller, nonce and project: kept from an
        earlier batch of the same scan, or computed on one consistent snapshot (writers go
        on meanwhile) and kept."""
        now = time.time()
        with read_snapshot(self._engine) as conn:
            scopes = readable_environments(conn, ctx, request.project)
            actor = ctx.actor
            key: CacheKey = (
                actor.org_id,
                str(actor.kind),
                actor.id,
                actor.name,
                request.nonce,
                request.project,
                frozenset(env.id for _, env in scopes),
            )
            kept = self._cache.get(key)
            if kept is not None:
                return kept
            self._check_size(conn, request.project, scopes, now)
            found = self._compute(conn, request.nonce, scopes, now)
        self._cache.put(key, found)
        return found

    def _check_size(
        self,
        conn: sa.Connection,
        project: str | None,
        scopes: Sequence[tuple[Project, Environment]],
        now: float,
    ) -> None:
        """Raises TooLarge naming ``project`` when the scopes hold more versions to compare
        than this service's bound."""
        total = exposure_store.count_recent_versions(
            conn, [env.id for _, env in scopes], now, VERSIONS_COMPARED
        )
        if total <= self._max_versions:
            return
        where = "the secrets you may read" if project is None else f"project {project}"
        advice = (
            "send project to match one project at a time"
            if project is None
            else "ask an operator to raise the bound"
        )
        raise TooLarge(
            f"{where} hold {total:,} versions to compare, more than the {self._max_versions:,} "
            f"one match request compares; {advice}",
            field="project",
        )

    def _compute(
        self,
        conn: sa.Connection,
        nonce: bytes,
        scopes: Sequence[tuple[Project, Environment]],
        now: float,
    ) -> FingerprintSet:
        """Computes the keyed fingerprint of every matchable recent version of the scopes."""
        found: dict[str, list[_StoredMatch]] = {}
        versions = 0
        for project, env in scopes:
            keys: dict[int, DataKey] = {}
            for candidate in exposure_store.recent_versions(conn, env.id, now, VERSIONS_COMPARED):
                stored = candidate.stored
                data_key = keys.get(stored.key_version)
                if data_key is None:
                    data_key = self._keyring.data_key(conn, project, stored.key_version)
                    keys[stored.key_version] = data_key
                value = self._cipher.open_with(data_key, project, env, candidate.key, stored)
                fingerprint = keyed_fingerprint(nonce, value.reveal())
                versions += 1
                found.setdefault(fingerprint, []).append(
                    _StoredMatch(
                        fingerprint=fingerprint,
                        secret_id=candidate.secret_id,
                        project=project.name,
                        environment=env.name,
                        key=candidate.key,
                        version=stored.version,
                    )
                )
        return FingerprintSet(
            by_fingerprint={fp: tuple(matches) for fp, matches in found.items()},
            versions=versions,
        )

    @retry_on_conflict
    def _record(
        self,
        ctx: CallContext,
        request: MatchRequest,
        hits: Sequence[tuple[int, _StoredMatch]],
    ) -> list[ExposureMatch]:
        """Records the hits in one transaction, locking secrets in id order (two concurrent
        matches cannot deadlock); a secret deleted since the snapshot is left out."""
        matches: list[ExposureMatch] = []
        now = time.time()
        actor = ctx.actor
        with self._engine.begin() as conn:
            for index, hit in sorted(hits, key=lambda h: (h[1].secret_id, h[1].version, h[0])):
                current = exposure_store.lock_current_version(conn, hit.secret_id, now)
                if current is None:
                    continue
                finding = request.findings[index]
                match = ExposureMatch(
                    index=index,
                    project=hit.project,
                    environment=hit.environment,
                    key=hit.key,
                    version=hit.version,
                    current=hit.version == current,
                )
                matches.append(match)
                recorded = exposure_store.record_exposure(
                    conn,
                    secret_id=hit.secret_id,
                    version=hit.version,
                    rule_id=finding.rule_id,
                    location=finding.location,
                    reported_by=actor.id or None,
                    reported_by_kind=str(actor.kind),
                    now=now,
                )
                if recorded:
                    self._audit.append(
                        conn,
                        ctx,
                        Event.SECRET_EXPOSED,
                        project=hit.project,
                        environment=hit.environment,
                        key=hit.key,
                        metadata={
                            "version": hit.version,
                            "current": match.current,
                            "rule_id": finding.rule_id,
                            "location": finding.location,
                        },
                    )
        return sorted(matches, key=lambda m: (m.index, m.project, m.environment, m.key))
