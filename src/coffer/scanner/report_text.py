"""``coffer scan`` for people: one block per finding, then a summary; secrets masked.

::

    app/settings.py:12:9  aws-access-key-id  AWS access key ID  AKIA****************
        commit 3f2c1a9b07de by Dana <dana@example.com> on 2024-05-01T10:00:00+00:00
        vault: payments/production/AWS_ACCESS_KEY_ID (version 3, current)

    1 secret in 1 file; 214 files (3.2 MB) scanned in 0.41 s
    skipped assets/big.bin: larger than 10 MB

A secret that spans several lines (a PEM private key) shows its first and last line, as in
``keys/deploy.pem:1-27:1``. A checksum-verified token ends its first line with ``verified``;
``commit`` lines appear for findings in git history and ``vault`` lines for findings the vault
recognised. A clean scan says ``No secrets found``. Characters that could drive a terminal
(escape sequences in a file name, say) are shown escaped.
"""

from __future__ import annotations

from collections.abc import Mapping

from coffer.scanner.findings import Finding
from coffer.scanner.report_json import sorted_findings, sorted_skipped
from coffer.scanner.runner import ScanResult
from coffer.scanner.text_safety import escape_unprintable as _safe
from coffer.scanner.vault_link import VaultMatch

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_DIM = "\x1b[2m"
_RED = "\x1b[31m"
_GREEN = "\x1b[32m"
_YELLOW = "\x1b[33m"
_MAGENTA = "\x1b[35m"
_CYAN = "\x1b[36m"
_SEVERITY_COLORS = {"critical": _RED + _BOLD, "high": _RED, "medium": _YELLOW, "low": _CYAN}
_COMMIT_CHARS = 12


def render_text(
    result: ScanResult,
    matches: Mapping[str, VaultMatch] = {},
    *,
    color: bool = False,
) -> str:
    """Returns the report the module docstring shows, ending with a newline; ``matches``
    (keyed by ``Finding.fingerprint``) add the vault lines; ``color`` adds ANSI colours."""
    paint = _Paint(color)
    blocks = [
        _finding_block(f, matches.get(f.fingerprint), paint)
        for f in sorted_findings(result.findings)
    ]
    tail = [_summary(result, paint)]
    tail += [
        paint(f"skipped {_safe(s.path)}: {_safe(s.reason)}", _DIM)
        for s in sorted_skipped(result.skipped)
    ]
    return "\n\n".join([*blocks, "\n".join(tail)]) + "\n"


def _finding_block(finding: Finding, match: VaultMatch | None, paint: _Paint) -> str:
    where = f"{_safe(finding.path)}:{_lines(finding)}:{finding.column}"
    head = [
        paint(where, _BOLD),
        paint(finding.rule_id, _SEVERITY_COLORS.get(finding.severity, "")),
        _safe(finding.title),
        _safe(finding.masked),
    ]
    if finding.verified:
        head.append(paint("verified", _GREEN))
    lines = ["  ".join(head)]
    if finding.commit is not None:
        commit = f"    commit {_safe(finding.commit[:_COMMIT_CHARS])}"
        if finding.author:
            commit += f" by {_safe(finding.author)}"
        if finding.date:
            commit += f" on {_safe(finding.date)}"
        lines.append(paint(commit, _DIM))
    if match is not None:
        state = "current" if match.current else "no longer current"
        vault = (
            f"    vault: {_safe(match.project)}/{_safe(match.environment)}/{_safe(match.key)} "
            f"(version {match.version}, {state})"
        )
        lines.append(paint(vault, _MAGENTA + _BOLD))
    return "\n".join(lines)


def _lines(finding: Finding) -> str:
    """``12`` for a secret on one line, ``12-38`` for one that spans lines 12 to 38."""
    if finding.end_line > finding.line:
        return f"{finding.line}-{finding.end_line}"
    return str(finding.line)


def _summary(result: ScanResult, paint: _Paint) -> str:
    scanned = (
        f"{_count(result.files_scanned, 'file')} ({result.bytes_scanned / (1 << 20):.1f} MB) "
        f"scanned in {result.seconds:.2f} s"
    )
    if not result.findings:
        return paint("No secrets found", _GREEN + _BOLD) + f"; {scanned}"
    files = len({finding.path for finding in result.findings})
    found = f"{_count(len(result.findings), 'secret')} in {_count(files, 'file')}"
    return paint(found, _RED + _BOLD) + f"; {scanned}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


class _Paint:
    """Wraps text in ANSI codes when colour is on; leaves it alone when it is off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, code: str) -> str:
        if not self.enabled or not code:
            return text
        return f"{code}{text}{_RESET}"
