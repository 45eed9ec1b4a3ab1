"""The SIEM formats of an audit record: JSON lines, CEF and RFC 5424 syslog."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coffer.audit.formats import cef_line, jsonl_line, syslog_message

RECORD: dict[str, Any] = {
    "index": 41,
    "id": "01JD3ZQ3T0000000000000000A",
    "time": 1764000000.123456,
    "action": "secret.read",
    "actor": {"id": "01JD3ZQ3T0000000000000000U", "kind": "user"},
    "org": "01JD3ZQ3T0000000000000000O",
    "project": "web",
    "environment": "production",
    "key": "DB_URL",
    "source_ip": "127.0.0.1",
    "user_agent": "curl/8",
    "result": "success",
    "metadata": {"version": 3},
}
JSONL = (
    '{"action":"secret.read","actor":{"id":"01JD3ZQ3T0000000000000000U","kind":"user"},'
    '"environment":"production","id":"01JD3ZQ3T0000000000000000A","index":41,"key":"DB_URL",'
    '"metadata":{"version":3},"org":"01JD3ZQ3T0000000000000000O","project":"web",'
    '"result":"success","source_ip":"127.0.0.1","time":1764000000.123456,"user_agent":"curl/8"}'
)
CEF = (
    "CEF:0|coffer|coffer|0.1.0|secret.read|secret.read|3|rt=1764000000123 act=secret.read "
    "outcome=success externalId=01JD3ZQ3T0000000000000000A suid=01JD3ZQ3T0000000000000000U "
    "src=127.0.0.1 requestClientApplication=curl/8 cn1Label=index cn1=41 cs1Label=org "
    "cs1=01JD3ZQ3T0000000000000000O cs2Label=project cs2=web cs3Label=environment "
    'cs3=production cs4Label=key cs4=DB_URL cs5Label=metadata cs5={"version":3} '
    "cs6Label=actorKind cs6=user"
)
SYSLOG = (
    "<86>1 2025-11-24T16:00:00.123456Z vault-1 coffer - secret.read "
    '[coffer@32473 id="01JD3ZQ3T0000000000000000A" index="41" '
    'actor="01JD3ZQ3T0000000000000000U" actor_kind="user" org="01JD3ZQ3T0000000000000000O" '
    'project="web" environment="production" key="DB_URL" src="127.0.0.1" result="success"] ' + JSONL
)
SD_NAMES = ["id", "index", "actor", "actor_kind", "org", "project", "environment", "key"]
SD_NAMES += ["src", "result"]
CEF_KEYS = ["rt", "act", "outcome", "externalId", "suid", "src", "requestClientApplication"]
CEF_KEYS += ["cn1Label", "cn1"] + [
    f"cs{n}{suffix}" for n in range(1, 7) for suffix in ("Label", "")
]
CEF_UNESCAPE = {"n": "\n", "r": "\r"}
ATTACKS = [
    "a\nb",
    "a\r\nInjected: yes",
    "nul\x00byte",
    "\x1b[31mred\x1b[0m",
    "pipe|pipe|",
    "fake=field act=secret.deleted",
    "back\\slash\\",
    'quote" result="success"] forged',
    'bracket] [other@1 x="y"]',
    "caf\u00e9 \U0001f511 \u202eevil \u2028sep\u0085nel\x0b\x0c\x1e",
    "lone \ud800 surrogate",
]


def with_field(field: str, value: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(json.dumps(RECORD))
    if field == "metadata":
        record["metadata"] = {value: value, "n": 1}
    else:
        record[field] = value
    return record


def unsafe_as_text(value: str, keep: str = "") -> str:
    """How CEF writes a control, format or separator character: as the text \\uXXXX."""
    return "".join(
        f"\\u{ord(c):04x}"
        if c not in keep and unicodedata.category(c) in {"Cc", "Cf", "Cs", "Zl", "Zp"}
        else c
        for c in value
    )


def parse_cef(line: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Splits a CEF line into its 7 header fields and its (key, value) pairs, unescaped the way
    a CEF reader does: a key is the word before an unescaped "="."""
    header: list[str] = []
    field, i = "", 0
    while len(header) < 7:
        if line[i] == "\\":
            field, i = field + line[i + 1], i + 2
        elif line[i] == "|":
            header.append(field)
            field, i = "", i + 1
        else:
            field, i = field + line[i], i + 1
    extension = line[i:]
    equals, escaped = [], False
    for pos, char in enumerate(extension):
        if char == "=" and not escaped:
            equals.append(pos)
        escaped = char == "\\" and not escaped
    starts = [extension.rfind(" ", 0, pos) + 1 for pos in equals]
    ends = [start - 1 for start in starts[1:]] + [len(extension)]
    pairs = []
    for start, pos, end in zip(starts, equals, ends, strict=True):
        value = re.sub(r"\\(.)", lambda m: CEF_UNESCAPE.get(m[1], m[1]), extension[pos + 1 : end])
        pairs.append((extension[start:pos], value))
    return header, pairs


def parse_syslog(message: str) -> tuple[list[str], dict[str, str], str]:
    """Splits an RFC 5424 message into its 6 header fields, its coffer@32473 parameters
    (decoded) and MSG; fails the test when the frame is not well formed."""
    head = message.split(" ", 6)
    assert head[6].startswith("[coffer@32473")
    rest, params, i = head[6], {}, len("[coffer@32473")
    while rest[i] == " ":
        name_end = rest.index('="', i)
        name, i = rest[i + 1 : name_end], name_end + 2
        units: list[str] = []
        while rest[i] != '"':
            if rest[i] == "\\" and rest[i + 1] in '"\\]':
                units.append(rest[i + 1])
                i += 2
            elif rest[i] == "\\" and rest[i + 1] == "u":
                units.append(chr(int(rest[i + 2 : i + 6], 16)))
                i += 6
            else:
                assert rest[i] not in '"]'
                units.append(rest[i])
                i += 1
        # \uXXXX escapes are UTF-16 code units: join surrogate pairs, keep lone surrogates.
        params[name] = (
            "".join(units).encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
        )
        i += 1
    assert rest[i : i + 2] == "] "
    return head[:6], params, rest[i + 2 :]


def is_one_line(text: str) -> bool:
    return len(text.splitlines()) == 1 and "\n" not in text and "\r" not in text


def test_jsonl_known_answer() -> None:
    """A record becomes compact, sorted, ASCII JSON with no newline."""
    assert jsonl_line(RECORD) == JSONL


def test_cef_known_answer() -> None:
    """A routine read becomes a severity-3 CEF line with standard and labelled fields."""
    assert cef_line(RECORD, version="0.1.0") == CEF


def test_syslog_known_answer() -> None:
    """A routine read becomes an authpriv.info RFC 5424 message with the JSON record as MSG."""
    assert syslog_message(RECORD, hostname="vault-1") == SYSLOG


@pytest.mark.parametrize(
    ("action", "result", "severity"),
    [
        ("secret.read", "success", "3"),
        ("secret.read", "failure", "6"),
        ("access.denied", "failure", "8"),
        ("anomaly.detected", "success", "8"),
    ],
)
def test_cef_severity(action: str, result: str, severity: str) -> None:
    """Failures rank above routine events, and denials and anomalies above both."""
    record = {**RECORD, "action": action, "result": result}
    assert parse_cef(cef_line(record, version="1"))[0][6] == severity


def test_syslog_failure_is_a_warning() -> None:
    """A failed action is sent as authpriv.warning (PRI 84)."""
    assert syslog_message({**RECORD, "result": "failure"}, hostname="h").startswith("<84>1 ")


def test_null_fields_are_left_out() -> None:
    """Null values produce neither a CEF field (nor its label) nor a syslog parameter."""
    record = {**RECORD, "time": None, "key": None, "source_ip": None, "metadata": None}
    keys = [key for key, _ in parse_cef(cef_line(record, version="1"))[1]]
    assert "src" not in keys and "cs4" not in keys and "cs4Label" not in keys and "rt" not in keys
    head, params, _ = parse_syslog(syslog_message(record, hostname="h"))
    assert head[1] == "-" and "key" not in params and "src" not in params


def test_syslog_header_fields_are_printable_ascii() -> None:
    """Hostname and app name drop non-printables; an unusable action becomes MSGID "-"."""
    record = {**RECORD, "action": "x" * 33}
    head, _, _ = parse_syslog(syslog_message(record, hostname="vault 1\n\u00e9", app_name=""))
    assert head[2:6] == ["vault1", "-", "-", "-"]


@pytest.mark.parametrize("field", ["key", "user_agent", "metadata", "project", "action"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_injection_stays_in_its_field(field: str, attack: str) -> None:
    """Hostile text in any field keeps each format to one line with the same fields, and
    reads back as the value that was written."""
    record = with_field(field, attack)
    line = jsonl_line(record)
    assert is_one_line(line) and line.isascii()
    assert json.loads(line) == record

    header, pairs = parse_cef(cef_line(record, version="0.1.0"))
    assert [key for key, _ in pairs] == CEF_KEYS
    assert header[:4] == ["CEF:0", "coffer", "coffer", "0.1.0"]
    assert header[4] == header[5] == unsafe_as_text(record["action"])
    assert is_one_line(cef_line(record, version="0.1.0"))
    if field in ("key", "user_agent"):
        target = {"key": "cs4", "user_agent": "requestClientApplication"}[field]
        assert dict(pairs)[target] == unsafe_as_text(attack, keep="\n\r")

    message = syslog_message(record, hostname="vault-1")
    assert is_one_line(message) and message.isascii()
    _, params, msg = parse_syslog(message)
    assert list(params) == SD_NAMES
    assert json.loads(msg) == record
    if field in ("key", "project"):
        assert params[field] == attack


def test_cef_header_escapes_pipe_and_backslash() -> None:
    """A version with | and \\ cannot add a header field."""
    header, _ = parse_cef(cef_line(RECORD, version="1|2\\3"))
    assert header[3] == "1|2\\3" and header[4] == "secret.read"


TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list('\n\r\x00\x1b|=\\]"[ \u2028\u2029\u0085\x0b\x0c\x1c\u202e')),
    )
)
OPTIONAL = st.none() | TEXT
RECORDS = st.fixed_dictionaries(
    {
        "index": st.none() | st.integers(min_value=0, max_value=2**53),
        "id": TEXT,
        "time": st.floats(min_value=0, max_value=4e9),
        "action": TEXT,
        "actor": st.fixed_dictionaries({"id": OPTIONAL, "kind": OPTIONAL}),
        "org": OPTIONAL,
        "project": OPTIONAL,
        "environment": OPTIONAL,
        "key": OPTIONAL,
        "source_ip": OPTIONAL,
        "user_agent": OPTIONAL,
        "result": st.sampled_from(["success", "failure"]),
        "metadata": st.dictionaries(TEXT, st.none() | TEXT | st.integers(), max_size=3),
    }
)


@given(record=RECORDS, hostname=TEXT)
def test_any_record_is_one_line_in_every_format(record: dict[str, Any], hostname: str) -> None:
    """Whatever a record holds, each format renders it as exactly one line, and the syslog
    structured data parses back (no unescaped quote or bracket) to the record's values."""
    assert is_one_line(jsonl_line(record))
    assert is_one_line(cef_line(record, version=hostname))
    header, pairs = parse_cef(cef_line(record, version=hostname))
    assert header[3] == unsafe_as_text(hostname)
    assert all(re.fullmatch(r"\w+", key) for key, _ in pairs)
    message = syslog_message(record, hostname=hostname)
    assert is_one_line(message) and message.isascii()
    _, params, msg = parse_syslog(message)
    assert json.loads(msg) == record
    for name, value in [("key", record["key"]), ("project", record["project"])]:
        assert params.get(name) == value
