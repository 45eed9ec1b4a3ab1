"""Matching a scan's findings with the vault by keyed fingerprint, and recording the leaks.

The client sends, per finding, ``HMAC-SHA256(nonce, secret)`` under a nonce of its own (see
``crypto.scan_fingerprints``). For every secret version the caller may read (the newest
``VERSIONS_COMPARED`` of each secret a read would answer: unexpired, unsealed and with
reads left, in every environment it has read access to; comparing counts no read),
the service decrypts the value in memory, computes the same HMAC and looks the finding's
fingerprint up: a dictionary lookup (Python's string hash is keyed and randomised per
process) followed by a constant-time comparison. Neither the values nor any fingerprint are
logged, stored or returned. Each match is recorded once per version and place, with a
``secret.exposed`` audit entry in the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto.keys import DataKey
from coffer.crypto.scan_fingerprints import decode_nonce, keyed_fingerprint, same_fingerprint
from coffer.domain.access import Action
from coffer.domain.events import Event
from coffer.domain.exposures import (
    VERSIONS_COMPARED,
    ExposureMatch,
    MatchRequest,
    check_finding_count,
    parse_finding,
)
from coffer.domain.models import CallContext, Environment, Project
from coffer.services.access import AccessGate
from coffer.services.keyring import Keyring
from coffer.services.lookup import require_project
from coffer.services.retries import retry_on_conflict
from coffer.services.secret_ops import SecretCipher
from coffer.storage import exposure_store, project_store
from coffer.storage.database import read_snapshot


def parse_match_request(nonce: str, findings: Sequence[Mapping[str, object]]) -> MatchRequest:
    """Returns the validated request. Raises InvalidInput naming the field: ``nonce`` (not
    base64url, or not 16 to 64 bytes), ``findings`` (none, or more than 10,000) or one
    finding's ``fingerprint``, ``rule_id`` or ``location`` (see ``parse_finding``)."""
    decoded = decode_nonce(nonce)
    check_finding_count(len(findings))
    return MatchRequest(
        nonce=decoded,
        findings=tuple(
            parse_finding(i, item.get("fingerprint"), item.get("rule_id"), item.get("location"))
            for i, item in enumerate(findings)
        ),
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


@dataclass(frozen=True)
class _StoredMatch:
    """A readable stored version whose keyed fingerprint a finding carries."""

    fingerprint: str
    secret_id: str
    project: str
    environment: str
    key: str
    version: int


class ExposureService:
    """Finds which stored secrets a scan's findings are, and marks them exposed."""

    def __init__(
        self,
        engine: Engine,
        keyring: Keyring,
        cipher: SecretCipher,
        audit: AuditWriter,
        gate: AccessGate,
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._cipher = cipher
        self._audit = audit
        self._gate = gate

    def match(self, ctx: CallContext, request: MatchRequest) -> list[ExposureMatch]:
        """Returns, for each finding equal to a version of a secret the caller may read, one
        match (several when the value is stored in several places), in finding order. Each
        match not recorded before (same version, same location) is recorded with a
        ``secret.exposed`` entry naming the project, environment, key, version, rule and
        location. A caller without read access to a secret gets no match for it."""
        self._gate.require(ctx, Action.PROJECT_VIEW)
        wanted = {finding.fingerprint for finding in request.findings}
        stored = self._stored_matches(ctx, request.nonce, wanted)
        hits = [
            (index, candidate)
            for index, finding in enumerate(request.findings)
            for candidate in stored.get(finding.fingerprint, ())
            if same_fingerprint(candidate.fingerprint, finding.fingerprint)
        ]
        if not hits:
            return []
        return self._record(ctx, request, hits)

    def _stored_matches(
        self, ctx: CallContext, nonce: bytes, wanted: set[str]
    ) -> dict[str, list[_StoredMatch]]:
        """Computes the keyed fingerprint of every readable recent version, on one consistent
        snapshot (writers go on meanwhile), and keeps those some finding carries."""
        found: dict[str, list[_StoredMatch]] = {}
        now = time.time()
        with read_snapshot(self._engine) as conn:
            for project, env in readable_environments(conn, ctx):
                keys: dict[int, DataKey] = {}
                for candidate in exposure_store.recent_versions(
                    conn, env.id, now, VERSIONS_COMPARED
                ):
                    stored = candidate.stored
                    data_key = keys.get(stored.key_version)
                    if data_key is None:
                        data_key = self._keyring.data_key(conn, project, stored.key_version)
                        keys[stored.key_version] = data_key
                    value = self._cipher.open_with(data_key, project, env, candidate.key, stored)
                    fingerprint = keyed_fingerprint(nonce, value.reveal())
                    if fingerprint in wanted:
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
        return found

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
