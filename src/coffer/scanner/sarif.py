"""``coffer scan --format sarif``: SARIF 2.1.0 that GitHub code scanning accepts.

One run whose ``tool.driver`` is coffer; its ``rules`` are the rules the results refer to (each
with tags ``security``, ``secret`` and its kind, and a ``security-severity`` score GitHub reads as
critical/high/medium/low). Each result carries the rule, a level (``error`` for critical and high,
``warning`` for medium, ``note`` for low), a message with the title and the masked secret (never
the plaintext), a location relative to ``%SRCROOT%`` (the repository root; a multi-line secret
such as a PEM key has an ``endLine``), and the secret's content fingerprint in
``partialFingerprints`` so that GitHub tracks an alert across moves.
Columns count Unicode code points (``columnKind``), as ``Finding`` does. Skipped files become
tool notifications of the run's invocation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import coffer
from coffer.scanner.findings import Finding
from coffer.scanner.report_json import sorted_findings, sorted_skipped, vault_record
from coffer.scanner.rules import Rule, RuleSet
from coffer.scanner.runner import ScanResult
from coffer.scanner.sources import STDIN_PATH
from coffer.scanner.vault_link import VaultMatch

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "secretFingerprint/v1"
STDIN_URI = "stdin"
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
# GitHub maps security-severity to labels: > 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, else low.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
_HELP = (
    "Treat the secret as leaked: revoke or rotate it at its provider, remove it from the code "
    "(and from git history if it was committed), and load it at run time from a secrets "
    "manager instead. To accept a finding that is not a real secret, add an inline "
    "`coffer:ignore` comment, an [allow] entry in .coffer-scan.toml, or its fingerprint to the "
    "baseline (`coffer scan --update-baseline .coffer-baseline`)."
)


def render_sarif(
    result: ScanResult,
    rules: RuleSet,
    matches: Mapping[str, VaultMatch] = {},
    *,
    root: Path | None = None,
) -> str:
    """Returns ``result`` as a SARIF 2.1.0 log (indented JSON ending with a newline).

    ``rules`` describe the results' rule ids (a finding whose rule is not in the set is described
    from the finding itself); ``matches`` (keyed by ``Finding.fingerprint``) add the vault
    secret each finding matches; ``root`` turns absolute finding paths under it into relative
    ones. Paths are expected repository-relative and POSIX; ``<stdin>`` becomes ``stdin``.
    """
    findings = sorted_findings(result.findings)
    rule_ids = sorted({finding.rule_id for finding in findings})
    index = {rule_id: position for position, rule_id in enumerate(rule_ids)}
    driver: dict[str, Any] = {
        "name": "coffer",
        "semanticVersion": coffer.__version__,
        "version": coffer.__version__,
    }
    homepage = information_uri()
    if homepage is not None:
        driver["informationUri"] = homepage
    driver["rules"] = [_rule_descriptor(rule_id, rules, findings) for rule_id in rule_ids]
    run: dict[str, Any] = {
        "tool": {"driver": driver},
        "invocations": [_invocation(result, root)],
        "columnKind": "unicodeCodePoints",
        "results": [
            _result(finding, index[finding.rule_id], matches.get(finding.fingerprint), root)
            for finding in findings
        ],
    }
    log = {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}
    return json.dumps(log, indent=2) + "\n"


def artifact_location(path: str, root: Path | None = None) -> dict[str, Any]:
    """Returns the SARIF ``artifactLocation`` of a finding's ``path``.

    A relative path becomes a percent-encoded relative URI against ``%SRCROOT%``; an absolute
    path under ``root`` is made relative first, and any other absolute path becomes a ``file``
    URI with no base. Standard input is ``stdin`` with a description.
    """
    if path == STDIN_PATH:
        return {
            "uri": STDIN_URI,
            "uriBaseId": SRCROOT,
            "description": {"text": "standard input"},
        }
    if Path(path).is_absolute():
        if root is not None and Path(path).is_relative_to(root):
            path = Path(path).relative_to(root).as_posix()
        else:
            return {"uri": Path(path).as_uri()}
    relative = PurePosixPath(path.removeprefix("./")).as_posix()
    return {"uri": quote(relative, safe="/", errors="surrogateescape"), "uriBaseId": SRCROOT}


def rule_name(rule_id: str) -> str:
    """Returns the PascalCase name SARIF viewers show for ``rule_id`` (``aws-access-key-id`` ->
    ``AwsAccessKeyId``)."""
    return "".join(word.capitalize() for word in rule_id.split("-"))


@cache
def information_uri() -> str | None:
    """Returns the project's home page from the installed package's metadata (its ``Homepage``
    project URL, else ``Home-page``), or None when the metadata names none."""
    try:
        meta = metadata.metadata("coffer")
    except metadata.PackageNotFoundError:
        return None
    entries: list[str] = meta.get_all("Project-URL") or []
    for entry in entries:
        label, _, url = entry.partition(",")
        if label.strip().lower() in {"homepage", "home", "documentation", "source"}:
            return url.strip()
    home: str | None = meta["Home-page"]
    return home.strip() if home else None


def _rule_descriptor(rule_id: str, rules: RuleSet, findings: Sequence[Finding]) -> dict[str, Any]:
    rule: Rule | None
    try:
        rule = rules.by_id(rule_id)
        title, kind, severity = rule.title, rule.kind, rule.severity
    except KeyError:
        rule = None
        sample = next(f for f in findings if f.rule_id == rule_id)
        title, kind, severity = sample.title, sample.kind, sample.severity
    return {
        "id": rule_id,
        "name": rule_name(rule_id),
        "shortDescription": {"text": f"{title} found"},
        "fullDescription": {
            "text": (
                f"A {title} ({kind} credential, {severity} severity) appears in the code. Anyone "
                "who can read the repository or its history can use it."
            )
        },
        "help": {"text": _HELP, "markdown": _HELP},
        "defaultConfiguration": {"level": LEVELS.get(severity, "warning")},
        "properties": {
            "tags": ["security", "secret", kind],
            "security-severity": SECURITY_SEVERITY.get(severity, "5.5"),
            "precision": "very-high" if rule is not None and rule.checksum else "high",
        },
    }


def _result(
    finding: Finding, rule_index: int, match: VaultMatch | None, root: Path | None
) -> dict[str, Any]:
    message = f"{finding.title}: {finding.masked}"
    if finding.verified:
        message += " (checksum verified)"
    if match is not None:
        state = "current" if match.current else "no longer current"
        message += (
            f". It is the vault secret {match.project}/{match.environment}/{match.key} "
            f"(version {match.version}, {state}): rotate it."
        )
    properties: dict[str, Any] = {"verified": finding.verified}
    for name in ("commit", "author", "date"):
        value = getattr(finding, name)
        if value is not None:
            properties[name] = value
    if match is not None:
        properties["vault"] = vault_record(match)
    return {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index,
        "level": LEVELS.get(finding.severity, "warning"),
        "message": {"text": message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": artifact_location(finding.path, root),
                    "region": region(finding),
                }
            }
        ],
        "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
        "properties": properties,
    }


def region(finding: Finding) -> dict[str, int]:
    """Returns the SARIF ``region`` of a finding: its start line and column, and the column
    after its last character, with ``endLine`` when the secret ends on a later line (then
    ``endColumn`` counts on that line). A region is never empty."""
    if finding.end_line > finding.line:
        return {
            "startLine": finding.line,
            "startColumn": finding.column,
            "endLine": finding.end_line,
            "endColumn": max(finding.end_column, 1),
        }
    return {
        "startLine": finding.line,
        "startColumn": finding.column,
        "endColumn": max(finding.end_column, finding.column + 1),
    }


def _invocation(result: ScanResult, root: Path | None) -> dict[str, Any]:
    notifications = [
        {
            "level": "note",
            "message": {"text": f"skipped {skipped.path}: {skipped.reason}"},
            "locations": [
                {"physicalLocation": {"artifactLocation": artifact_location(skipped.path, root)}}
            ],
        }
        for skipped in sorted_skipped(result.skipped)
    ]
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return invocation
