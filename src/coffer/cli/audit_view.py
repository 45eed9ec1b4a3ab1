"""What `coffer audit` reads from the user (times, key and witness files) and shows back
(entries and verification reports, escaped so no control character reaches the terminal),
and how it writes a download to a file atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coffer.domain import errors as err

if TYPE_CHECKING:
    from coffer.crypto.audit_keys import AuditPublicKey

MORE_PROBLEMS = 10
UA_WIDTH = 40
TIME_RULE = "Unix seconds, an ISO 8601 time (UTC unless it has an offset) or a span ago (2h, 7d)"


# --- input -------------------------------------------------------------------------------


def unix_time(text: str | None, option: str) -> float | None:
    """Returns ``text`` as Unix seconds: a plain number as is, a span such as ``2h`` or
    ``7d`` counted back from now, else an ISO 8601 date or time (UTC when it has no offset);
    None for None. Raises InvalidInput naming ``option`` when it is none of those."""
    import time
    from datetime import UTC, datetime

    from coffer.domain.durations import parse_duration

    if text is None:
        return None
    value = text.strip()
    try:
        if value[-1:].isalpha() and value[:1].isdigit() and "-" not in value:
            span = parse_duration(value, field=option, minimum=0, maximum=100 * 365 * 86400)
            return time.time() - span
        if value.replace(".", "", 1).isdigit():
            return float(value)
        moment = datetime.fromisoformat(value)
    except (ValueError, err.InvalidInput):
        raise err.InvalidInput(
            f"{option} must be {TIME_RULE}; got {value[:40]!r}", field=option.lstrip("-")
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def read_public_key(path: Path) -> AuditPublicKey:
    """Returns the key in ``path`` (PEM or base64, as ``coffer audit public-key`` prints it).
    Raises InvalidInput naming ``--public-key`` when it cannot be read or is no such key."""
    from coffer.crypto.audit_keys import AuditPublicKey

    try:
        return AuditPublicKey.from_text(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError) as exc:
        raise err.InvalidInput(
            f"--public-key: cannot read {path}: {exc}", field="public_key"
        ) from None
    except err.InvalidInput as exc:
        reason = exc.message.removeprefix("public key: ")
        raise err.InvalidInput(f"--public-key {path}: {reason}", field="public_key") from None


def read_witness(path: Path | None) -> dict[str, Any] | None:
    """Returns the checkpoint saved in a witness file, or None when there is no file yet.
    Raises InvalidInput naming ``--witness`` when the file holds no checkpoint."""
    from coffer.audit.checkpoints import Checkpoint

    if path is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_bytes())
        Checkpoint.from_json(data)
    except (OSError, ValueError, err.InvalidInput) as exc:
        reason = exc.message if isinstance(exc, err.InvalidInput) else str(exc)
        raise err.InvalidInput(
            f"--witness {path} does not hold a saved checkpoint ({reason})", field="witness"
        ) from None
    return dict(data)


# --- output ------------------------------------------------------------------------------


def visible(value: object) -> str:
    """Returns ``value`` as text safe for a terminal: control, format and separator
    characters (newlines, ESC, C1 controls, bidi overrides) and the backslash are written
    as Python-style escapes (``\\n``, ``\\x1b``, ``\\u202e``, ``\\\\``); None is empty."""
    text = "" if value is None else str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        char if char.isprintable() and char != "\\" else char.encode("unicode_escape").decode()
        for char in text
    )


def utc_time(seconds: float | None) -> str:
    """Unix seconds as ``2026-01-31T18:00:05Z`` (empty for None)."""
    from datetime import UTC, datetime

    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_row(record: dict[str, Any]) -> tuple[str, ...]:
    """One table row of a record. The actor's id is cut to its last 8 characters: the
    leading characters of a ULID are its creation time, the trailing ones tell ids apart."""
    actor = record["actor"]
    actor_id = actor["id"] or ""
    where = "/".join(part for part in (record["project"], record["environment"]) if part)
    user_agent = visible(record["user_agent"])
    cut = user_agent[: UA_WIDTH - 1] + "…" if len(user_agent) > UA_WIDTH else user_agent
    return (
        utc_time(record["time"]),
        visible(record["id"]),
        visible(record["action"]),
        visible(f"{actor['kind'] or '?'} {'…' + actor_id[-8:] if actor_id else ''}".strip()),
        visible(where),
        visible(record["key"]),
        visible(record["source_ip"]),
        cut,
        visible(record["result"]),
    )


ENTRY_COLUMNS = (
    "time (UTC)", "id", "action", "actor", "where", "key", "source IP", "user agent", "result"
)  # fmt: skip


def report_lines(report: dict[str, Any]) -> list[str]:
    """The human form of a verification report (the JSON of ``VerifyReport``)."""
    if report["ok"]:
        latest = report["latest_checkpoint"]
        head = (
            f"latest checkpoint #{latest['seq']} signed {utc_time(latest['timestamp'])} by key "
            f"{visible(latest['key_id'])}"
            if latest
            else "no checkpoint yet"
        )
        return [
            f"verified: {report['entries_checked']} entries, {report['checkpoints_checked']} "
            f"checkpoints, tree size {report['tree_size']}, {head}"
        ]
    first = report["first_problem"]
    others = [p for p in report["problems"] if p != first]
    lines = [f"FAILED: {visible(first['message'])}"]
    lines += [f"  also: {visible(p['message'])}" for p in others[:MORE_PROBLEMS]]
    if len(others) > MORE_PROBLEMS:
        lines.append(f"  ({len(others) - MORE_PROBLEMS} more; --json lists them)")
    return lines


def write_atomically(path: Path, chunks: Iterable[bytes]) -> tuple[int, int]:
    """Writes ``chunks`` to a temporary file (mode 0600) next to ``path`` and renames it
    into place, so ``path`` is either the whole new content or untouched. Returns (bytes,
    lines) written. Raises InvalidInput naming the file when it cannot be written."""
    import tempfile

    size = lines = 0
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise err.InvalidInput(f"cannot write {path}: {exc.strerror}", field="output") from None
    renamed = False
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp).replace(path)
        renamed = True
    finally:
        if not renamed:  # interrupted or failed: leave no partial file behind
            Path(temp).unlink(missing_ok=True)
    return size, lines
