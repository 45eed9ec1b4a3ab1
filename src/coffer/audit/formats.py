"""The wire formats of an audit record for SIEMs: JSON lines, ArcSight CEF and RFC 5424 syslog.

Every function here is pure: it takes a record (the public form described in
``coffer.audit.records``) and returns one line of text with no line terminator. Key names, user
agents and metadata are attacker-controlled, so each format encodes whatever could end the
line or start a new field:

- ``jsonl_line``: JSON escapes every control character and, being ASCII-only, every
  non-ASCII one.
- ``cef_line``: header fields escape ``\\`` and ``|``; extension values escape ``\\``, ``=``
  and line breaks (``\\n``, ``\\r``); any other control, format or line-separator character
  is written as the text ``\\uXXXX`` (its backslash escaped like any other).
- ``syslog_message``: structured-data values escape ``"``, ``\\`` and ``]`` as RFC 5424 says
  and write every character outside printable ASCII as ``\\uXXXX`` (JSON style, surrogate
  pairs above U+FFFF); the whole message is ASCII.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

from coffer.storage.json_text import canonical_json

Record = dict[str, Any]

CEF_VENDOR = "coffer"
CEF_PRODUCT = "coffer"
# CEF severities run 0..10; what a SOC should look at sooner gets a higher number.
CEF_SEVERITY_ROUTINE = 3
CEF_SEVERITY_FAILURE = 6
CEF_SEVERITY_ALERT = 8
ALERT_ACTIONS = frozenset({"access.denied", "anomaly.detected"})

SYSLOG_FACILITY_AUTHPRIV = 10
SYSLOG_SEVERITY_WARNING = 4
SYSLOG_SEVERITY_INFORMATIONAL = 6
# Private enterprise number 32473 is reserved by IANA for documentation and examples (RFC 5612).
SYSLOG_SD_ID = "coffer@32473"
_NILVALUE = "-"
# RFC 5424 field lengths: HOSTNAME 255, APP-NAME 48, MSGID 32 printable US-ASCII characters.
_HOSTNAME_MAX = 255
_APP_NAME_MAX = 48
_MSGID_MAX = 32

# Character categories that must never reach a log line as themselves: C0/C1 controls,
# format characters (bidi overrides, zero-width joiners), lone surrogates, line and paragraph
# separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")


def jsonl_line(record: Record) -> str:
    """Returns ``record`` as compact JSON with sorted keys, ASCII only, with no trailing
    newline: the same bytes as the record's canonical encoding."""
    return canonical_json(record)


def cef_line(record: Record, *, version: str) -> str:
    """Returns ``record`` as one ArcSight CEF:0 line (no line terminator).

    The header is ``CEF:0|coffer|coffer|<version>|<action>|<action>|<severity>|``; the extension
    uses standard keys (``rt`` in epoch milliseconds, ``act``, ``suid``, ``src``,
    ``requestClientApplication``, ``outcome``, ``externalId`` for the entry id) and labelled
    custom fields: ``cs1`` org, ``cs2`` project, ``cs3`` environment, ``cs4`` key, ``cs5``
    metadata as compact JSON, ``cs6`` actor kind and ``cn1`` the leaf index. Null values are
    left out. Severity is 8 for ``access.denied`` and ``anomaly.detected``, 6 for any other
    failure and 3 for routine successes."""
    action = _text(record.get("action"))
    actor = record.get("actor") or {}
    header = [
        "CEF:0",
        _cef_header(CEF_VENDOR),
        _cef_header(CEF_PRODUCT),
        _cef_header(version),
        _cef_header(action),
        _cef_header(action),
        str(_cef_severity(record)),
    ]
    fields: list[tuple[str, Any]] = [
        ("rt", _epoch_millis(record.get("time"))),
        ("act", record.get("action")),
        ("outcome", record.get("result")),
        ("externalId", record.get("id")),
        ("suid", actor.get("id")),
        ("src", record.get("source_ip")),
        ("requestClientApplication", record.get("user_agent")),
        ("cn1Label", "index"),
        ("cn1", record.get("index")),
        ("cs1Label", "org"),
        ("cs1", record.get("org")),
        ("cs2Label", "project"),
        ("cs2", record.get("project")),
        ("cs3Label", "environment"),
        ("cs3", record.get("environment")),
        ("cs4Label", "key"),
        ("cs4", record.get("key")),
        ("cs5Label", "metadata"),
        ("cs5", None if record.get("metadata") is None else canonical_json(record["metadata"])),
        ("cs6Label", "actorKind"),
        ("cs6", actor.get("kind")),
    ]
    present = _drop_orphan_labels(fields)
    extension = " ".join(f"{name}={_cef_value(_text(value))}" for name, value in present)
    return "|".join(header) + "|" + extension


def syslog_message(record: Record, *, hostname: str, app_name: str = "coffer") -> str:
    """Returns ``record`` as one RFC 5424 syslog message (no framing, no line terminator):
    ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [coffer@32473 ...] MSG``.

    PRI uses facility authpriv (10) with severity warning (4) for failures and informational
    (6) otherwise. TIMESTAMP is RFC 3339 UTC with microseconds. HOSTNAME and APP-NAME keep
    only printable ASCII, cut to the RFC's lengths (``-`` when nothing is left); MSGID is the
    action when it is 1..32 printable ASCII characters, else ``-``. The structured-data
    element carries id, index, actor, actor_kind, org, project, environment, key, src and
    result (null ones left out). MSG is ``jsonl_line(record)``. The result is ASCII only."""
    result = record.get("result")
    severity = SYSLOG_SEVERITY_INFORMATIONAL if result == "success" else SYSLOG_SEVERITY_WARNING
    pri = SYSLOG_FACILITY_AUTHPRIV * 8 + severity
    actor = record.get("actor") or {}
    params = [
        ("id", record.get("id")),
        ("index", record.get("index")),
        ("actor", actor.get("id")),
        ("actor_kind", actor.get("kind")),
        ("org", record.get("org")),
        ("project", record.get("project")),
        ("environment", record.get("environment")),
        ("key", record.get("key")),
        ("src", record.get("source_ip")),
        ("result", result),
    ]
    element = " ".join(
        [SYSLOG_SD_ID]
        + [
            f'{name}="{sd_param_value(_text(value))}"'
            for name, value in params
            if value is not None
        ]
    )
    header = " ".join(
        [
            f"<{pri}>1",
            _rfc3339(record.get("time")),
            _printable_ascii(hostname, _HOSTNAME_MAX),
            _printable_ascii(app_name, _APP_NAME_MAX),
            _NILVALUE,
            _msgid(record.get("action")),
        ]
    )
    return f"{header} [{element}] {jsonl_line(record)}"


def sd_param_value(value: str) -> str:
    """Returns ``value`` encoded as an RFC 5424 PARAM-VALUE (without the quotes): ``"``, ``\\``
    and ``]`` get a backslash, printable ASCII and spaces stay, anything else becomes
    ``\\uXXXX``. Reading ``\\"``, ``\\\\``, ``\\]`` and ``\\uXXXX`` in one pass recovers it."""
    out: list[str] = []
    for char in value:
        if char in '"\\]':
            out.append("\\" + char)
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.append(_u_escape(char))
    return "".join(out)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int | float) else canonical_json(value)


def _drop_orphan_labels(fields: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Drops null fields, and a ``csNLabel``/``cnNLabel`` whose value is null."""
    values = dict(fields)
    return [
        (name, value)
        for name, value in fields
        if value is not None
        and not (name.endswith("Label") and values.get(name.removesuffix("Label")) is None)
    ]


def _cef_severity(record: Record) -> int:
    if record.get("action") in ALERT_ACTIONS:
        return CEF_SEVERITY_ALERT
    if record.get("result") != "success":
        return CEF_SEVERITY_FAILURE
    return CEF_SEVERITY_ROUTINE


def _cef_header(value: str) -> str:
    return _encode_unsafe(value).replace("\\", "\\\\").replace("|", "\\|")


def _cef_value(value: str) -> str:
    escaped = _encode_unsafe(value, keep="\n\r").replace("\\", "\\\\").replace("=", "\\=")
    return escaped.replace("\r\n", "\\r\\n").replace("\n", "\\n").replace("\r", "\\r")


def _encode_unsafe(value: str, keep: str = "") -> str:
    """Writes characters of an unsafe category (except those in ``keep``) as ``\\uXXXX``."""
    return "".join(
        _u_escape(char)
        if char not in keep and unicodedata.category(char) in _UNSAFE_CATEGORIES
        else char
        for char in value
    )


def _u_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _epoch_millis(time: Any) -> int | None:
    return None if time is None else round(float(time) * 1000)


def _rfc3339(time: Any) -> str:
    if time is None:
        return _NILVALUE
    moment = datetime.fromtimestamp(float(time), tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _printable_ascii(value: str, limit: int) -> str:
    kept = "".join(_PRINTABLE_ASCII.findall(value))[:limit]
    return kept or _NILVALUE


def _msgid(action: Any) -> str:
    if isinstance(action, str) and _PRINTABLE_ASCII.fullmatch(action) and len(action) <= _MSGID_MAX:
        return action
    return _NILVALUE
