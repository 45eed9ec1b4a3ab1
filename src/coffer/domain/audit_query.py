"""The filters of an audit query, parsed from what a user typed, with errors naming the
parameter that is wrong."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass

from coffer.domain.errors import InvalidInput, InvalidQuery
from coffer.domain.events import parse_event_pattern

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
_MAX_TEXT = 256


@dataclass(frozen=True)
class AuditFilter:
    """What to select: every field is optional; ``key`` may be exact, a prefix ending in
    ``*`` or a glob with ``*`` and ``?``; ``action`` a name or ``area.*``. ``before_seq`` is
    the decoded cursor: only entries older than it."""

    since: float | None = None
    until: float | None = None
    action: str | None = None
    key: str | None = None
    actor: str | None = None
    project: str | None = None
    environment: str | None = None
    limit: int = DEFAULT_LIMIT
    before_seq: int | None = None


def parse_audit_filter(
    *,
    since: str | None = None,
    until: str | None = None,
    action: str | None = None,
    key: str | None = None,
    actor: str | None = None,
    project: str | None = None,
    environment: str | None = None,
    limit: str | None = None,
    cursor: str | None = None,
) -> AuditFilter:
    """Returns the filter these query parameters describe. Raises InvalidInput naming the
    parameter and its rule."""
    start = _time(since, "since")
    end = _time(until, "until")
    if start is not None and end is not None and end < start:
        raise InvalidQuery("until: must not be earlier than since", field="until")
    return AuditFilter(
        since=start,
        until=end,
        action=_action(action),
        key=_text(key, "key"),
        actor=_text(actor, "actor"),
        project=_text(project, "project"),
        environment=_text(environment, "environment"),
        limit=_limit(limit),
        before_seq=decode_cursor(cursor) if cursor else None,
    )


def _action(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return parse_event_pattern(raw, field="action")
    except InvalidInput as exc:
        raise InvalidQuery(str(exc), field="action") from None


def _time(raw: str | None, name: str) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidQuery(
            f"{name}: must be Unix seconds (a number), got {raw[:40]!r}", field=name
        ) from None
    if not math.isfinite(value) or value < 0 or value > 1e11:
        raise InvalidQuery(f"{name}: must be Unix seconds between 0 and 100000000000", field=name)
    return value


def _text(raw: str | None, name: str) -> str | None:
    if raw is None or raw == "":
        return None
    if len(raw) > _MAX_TEXT:
        raise InvalidQuery(f"{name}: must be at most {_MAX_TEXT} characters", field=name)
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise InvalidQuery(f"{name}: must not contain control characters", field=name)
    return raw


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit():
        raise InvalidQuery(f"limit: must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    value = int(raw)
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidQuery(f"limit: must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    return value


def encode_cursor(seq: int) -> str:
    """Returns the opaque cursor that continues a listing after entry ``seq``."""
    return base64.urlsafe_b64encode(f"a1:{seq}".encode()).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Returns the position in ``cursor``; raises InvalidInput naming ``cursor``."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        text = ""
    tag, _, number = text.partition(":")
    if tag != "a1" or not number.isdigit():
        raise InvalidQuery(
            "cursor: not a cursor returned by this API (use the `next` value)", field="cursor"
        )
    return int(number)


def like_pattern(key: str) -> tuple[str, bool]:
    """Returns (SQL LIKE pattern with ``\\`` as escape, True) for a glob or prefix ``key``,
    or (``key``, False) for an exact key."""
    if "*" not in key and "?" not in key:
        return key, False
    escaped = key.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_"), True
