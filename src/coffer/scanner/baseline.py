"""The baseline: a small text file of accepted findings, keyed by the secret's content fingerprint.

One entry per line, ``<fingerprint> <rule-id> <path>``, after a ``#`` header that explains the
format. Only the fingerprint (``Finding.fingerprint``, a hash of the secret, never the secret) is
the key; the rule and path say where the secret was when it was accepted and are informative.
So a line that moves stays accepted, and a new secret written on an accepted line is reported.

The lines are sorted and unique so that diffs stay small, and the header recommends
``.coffer-baseline merge=union`` in ``.gitattributes``: branches that each add entries then merge
without conflicts (``load_baseline`` takes the union's duplicates and disorder; the next
``write_baseline`` tidies them).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from coffer.domain.errors import InvalidInput
from coffer.scanner.findings import FINGERPRINT_CHARS, Finding
from coffer.scanner.text_safety import escape_unprintable

HEADER = """\
# coffer scan baseline: findings accepted as known; `coffer scan` does not report them again.
# Each line is "<fingerprint> <rule-id> <path>". The fingerprint is a hash of the secret's
# content (never the secret itself) and is the only key: a moved line stays accepted, and a new
# secret on an accepted line is still reported. Rule and path only say where it was found.
# Update with `coffer scan --update-baseline FILE`; the lines are kept sorted and unique.
# Add this line to .gitattributes so that concurrent branches merge cleanly:
#     .coffer-baseline merge=union
"""
_NEW_FILE_MODE = 0o644
_ENTRY = re.compile(rf"([0-9a-f]{{{FINGERPRINT_CHARS}}}) ([a-z0-9]+(?:-[a-z0-9]+)*) (\S.*)")


def load_baseline(path: Path) -> frozenset[str]:
    """Returns the fingerprints the baseline file at ``path`` accepts.

    A missing file is an empty baseline; comment (``#``) and blank lines are ignored. Raises
    ``InvalidInput`` naming the line number when a line is malformed, or when the file cannot be
    read.
    """
    return frozenset(_read_entries(path))


def write_baseline(path: Path, findings: Sequence[Finding]) -> int:
    """Adds ``findings`` to the baseline file at ``path`` (created when missing) and returns how
    many entries the file then holds.

    Entries already in the file are kept as they are, each fingerprint appears once, and the
    lines are sorted. The file is replaced atomically. Raises ``InvalidInput`` when the existing
    file is malformed or unreadable (it is then left unchanged).
    """
    entries = _read_entries(path)
    for finding in findings:
        entries.setdefault(finding.fingerprint, f"{finding.rule_id} {_one_line(finding.path)}")
    body = "".join(f"{fp} {entries[fp]}\n" for fp in sorted(entries))
    _replace(path, HEADER + body)
    return len(entries)


def _read_entries(path: Path) -> dict[str, str]:
    """Returns ``{fingerprint: "rule-id path"}``, keeping the first entry of a fingerprint."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read the baseline ({exc})", field="baseline") from exc
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENTRY.fullmatch(line)
        if match is None:
            raise InvalidInput(
                f"{path}, line {number}: expected '<fingerprint> <rule-id> <path>' with a "
                f"{FINGERPRINT_CHARS}-character lowercase hex fingerprint",
                field=f"baseline:{number}",
            )
        entries.setdefault(match.group(1), f"{match.group(2)} {match.group(3)}")
    return entries


def _one_line(path: str) -> str:
    """Returns ``path`` on one line: characters that would break the format are escaped."""
    return escape_unprintable(path).strip() or "?"


def _replace(path: Path, text: str) -> None:
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = _NEW_FILE_MODE
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)
        Path(temporary).chmod(mode)  # mkstemp makes 0600; the baseline is a shared, committed file
        Path(temporary).replace(path)
    finally:
        Path(temporary).unlink(missing_ok=True)  # gone once replaced; a failed write's leftover
