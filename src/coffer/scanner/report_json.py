"""``coffer scan --format json``: the whole scan as one JSON document, secrets masked.

Shape (``version`` changes only when a field changes meaning or goes away)::

    {"version": 1,
     "findings": [{"rule_id", "title", "kind", "severity", "path", "line", "column",
                   "end_line", "end_column", "secret" (masked), "fingerprint", "verified",
                   "commit", "author", "date",
                   "vault": {"project", "environment", "key", "version", "current"} or null}],
     "skipped": [{"path", "reason"}],
     "summary": {"findings", "files_scanned", "bytes_scanned", "seconds"}}

``end_line`` is the line the secret ends on (after ``line`` for a multi-line secret such as a
PEM key) and ``end_column`` the column after its last character on that line. Findings are
ordered by path, line, column, end, commit, rule and fingerprint; skipped files by path, so the
same scan renders the same text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from coffer.scanner.findings import Finding
from coffer.scanner.runner import ScanResult, Skipped, finding_order
from coffer.scanner.vault_link import VaultMatch

JSON_VERSION = 1


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Returns ``findings`` in report order (``runner.finding_order``)."""
    return sorted(findings, key=finding_order)


def sorted_skipped(skipped: Iterable[Skipped]) -> list[Skipped]:
    """Returns the skip notes in report order: by path, then reason."""
    return sorted(skipped, key=lambda s: (s.path, s.reason))


def render_json(result: ScanResult, matches: Mapping[str, VaultMatch] = {}) -> str:
    """Returns ``result`` as the JSON document the module docstring describes (indented, ending
    with a newline). ``matches`` (keyed by ``Finding.fingerprint``) fill each ``vault`` field."""
    document = {
        "version": JSON_VERSION,
        "findings": [
            finding_record(f, matches.get(f.fingerprint)) for f in sorted_findings(result.findings)
        ],
        "skipped": [{"path": s.path, "reason": s.reason} for s in sorted_skipped(result.skipped)],
        "summary": {
            "findings": len(result.findings),
            "files_scanned": result.files_scanned,
            "bytes_scanned": result.bytes_scanned,
            "seconds": round(result.seconds, 3),
        },
    }
    return json.dumps(document, indent=2) + "\n"


def finding_record(finding: Finding, match: VaultMatch | None) -> dict[str, Any]:
    """Returns one finding as a JSON object: the secret masked, never in plaintext."""
    return {
        "rule_id": finding.rule_id,
        "title": finding.title,
        "kind": finding.kind,
        "severity": finding.severity,
        "path": finding.path,
        "line": finding.line,
        "column": finding.column,
        "end_line": finding.end_line,
        "end_column": finding.end_column,
        "secret": finding.masked,
        "fingerprint": finding.fingerprint,
        "verified": finding.verified,
        "commit": finding.commit,
        "author": finding.author,
        "date": finding.date,
        "vault": vault_record(match) if match is not None else None,
    }


def vault_record(match: VaultMatch) -> dict[str, Any]:
    """Returns the stored secret a finding matches, as a JSON object."""
    return {
        "project": match.project,
        "environment": match.environment,
        "key": match.key,
        "version": match.version,
        "current": match.current,
    }
