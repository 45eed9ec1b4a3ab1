"""``coffer scan --match-vault``: asks the coffer server which findings are stored secrets,
without ever sending a secret.

Each scan draws a fresh random nonce and sends, per finding, only the keyed fingerprint
``HMAC-SHA256(nonce, secret)`` (see ``crypto.scan_fingerprints``), the rule id and the
location. Findings go in batches that stay well under the server's body limit, all under the
scan's one nonce: the server then computes its side for the first batch only."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from coffer.crypto.scan_fingerprints import encode_nonce, keyed_fingerprint, new_nonce
from coffer.domain.errors import CofferError
from coffer.domain.exposures import (
    CONTROL_CHARACTERS,  # the characters the server refuses: one definition for both ends
    MAX_FINDINGS,
    MAX_LOCATION_BYTES,
    MAX_RULE_ID_CHARS,
)
from coffer.scanner.findings import Finding
from coffer.scanner.vault_link import VaultMatch

MATCH_PATH = "/api/v1/exposures/match"
# Bytes of findings per request: half the server's default body limit (1 MiB).
BATCH_BYTES = 512 * 1024
_FINGERPRINT_ITEM_BYTES = 64


def _clean(text: str, max_bytes: int) -> str:
    """``text`` with control characters and lone surrogates shown as "?" and, when its
    UTF-8 form is longer than ``max_bytes``, its beginning replaced by "..." so that it fits
    (the end of a path says most; whole characters only). Never longer than ``max_bytes``
    characters either, so it meets a limit in characters of the same number."""
    cleaned = CONTROL_CHARACTERS.sub("?", text).encode("utf-8", "replace").decode("utf-8") or "?"
    if len(cleaned.encode("utf-8")) <= max_bytes:
        return cleaned
    tail = cleaned.encode("utf-8")[-(max_bytes - 3) :].decode("utf-8", "ignore")
    return "..." + tail


def location_of(finding: Finding) -> str:
    """Where the finding is, as the server records it: ``path:line``, then ``@commit``
    (12 characters) for a finding in git history."""
    where = f"{finding.path}:{finding.line}"
    if finding.commit:
        where = f"{where}@{finding.commit[:12]}"
    return _clean(where, MAX_LOCATION_BYTES)


def _batches(
    findings: Sequence[Finding], max_bytes: int = BATCH_BYTES, max_count: int = MAX_FINDINGS
) -> Iterator[list[Finding]]:
    """Groups findings so that each request stays under ``max_bytes`` and the server's cap
    of findings per request."""
    batch: list[Finding] = []
    size = 0
    for finding in findings:
        item = _FINGERPRINT_ITEM_BYTES + len(json.dumps([finding.rule_id, location_of(finding)]))
        if batch and (size + item > max_bytes or len(batch) >= max_count):
            yield batch
            batch, size = [], 0
        batch.append(finding)
        size += item + 48  # the JSON keys and punctuation around each finding
    if batch:
        yield batch


def _request_body(
    nonce: bytes, batch: Sequence[Finding], project: str | None = None
) -> dict[str, Any]:
    """The match request for ``batch``: the nonce, the project when one is given and, per
    finding, only its keyed fingerprint, rule id and location."""
    body: dict[str, Any] = {} if project is None else {"project": project}
    return body | {
        "nonce": encode_nonce(nonce),
        "findings": [
            {
                "fingerprint": keyed_fingerprint(nonce, finding.secret),
                "rule_id": _clean(finding.rule_id, MAX_RULE_ID_CHARS),
                "location": location_of(finding),
            }
            for finding in batch
        ],
    }


def _better(new: VaultMatch, old: VaultMatch | None) -> bool:
    """True when ``new`` says more than ``old``: a current version before an old one, then
    the newer version."""
    return old is None or (new.current, new.version) > (old.current, old.version)


def _matches_of(answer: Any, batch: Sequence[Finding]) -> Iterator[VaultMatch]:
    """The answer's matches as VaultMatch, keyed to the batch's findings. Raises CofferError
    when the answer does not have the documented shape."""
    try:
        for item in answer["matches"]:
            index = item["index"]
            if not isinstance(index, int) or not 0 <= index < len(batch):
                raise ValueError(index)
            yield VaultMatch(
                fingerprint=batch[index].fingerprint,
                project=str(item["project"]),
                environment=str(item["environment"]),
                key=str(item["key"]),
                version=int(item["version"]),
                current=bool(item["current"]),
            )
    except (KeyError, TypeError, ValueError):
        raise CofferError("the server's answer to the vault match is not understood") from None


def _storable(secret: str) -> bool:
    """True when ``secret`` is text the vault could store (no lone surrogates)."""
    try:
        secret.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def match_vault(
    findings: Sequence[Finding], *, project: str | None = None
) -> dict[str, VaultMatch]:
    """Returns the findings whose secret is stored in the vault (in a version the caller may
    read, of ``project`` only when given), keyed by ``Finding.fingerprint``; when one secret
    is stored in several places the current, newest version wins. Uses the CLI's server
    settings (COFFER_ADDR / COFFER_TOKEN or ``coffer login``). Every request of one call
    shares a fresh random nonce and carries keyed fingerprints, rule ids and locations, never
    a secret. The server records each match as an exposure. Raises CofferError subclasses
    (ServerUnreachable, Unauthenticated, NotFound for an unknown project, TooLarge when the
    vault holds more versions than one match compares, ...) on failure."""
    sendable = [finding for finding in findings if _storable(finding.secret)]
    if not sendable:
        return {}
    from coffer.cli.common import api

    nonce = new_nonce()
    matches: dict[str, VaultMatch] = {}
    with api() as client:
        for batch in _batches(sendable):
            answer = client.send_json("POST", MATCH_PATH, _request_body(nonce, batch, project))
            for match in _matches_of(answer, batch):
                if _better(match, matches.get(match.fingerprint)):
                    matches[match.fingerprint] = match
    return matches
