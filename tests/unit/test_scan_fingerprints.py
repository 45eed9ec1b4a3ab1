"""Keyed scan fingerprints and the vault-match request the CLI builds: known answers, nonce
encoding, batching, and no plaintext in anything sent."""

from __future__ import annotations

import json

import pytest

from coffer.cli.vault_match import BATCH_BYTES, _batches, _request_body, location_of
from coffer.crypto.scan_fingerprints import (
    decode_nonce,
    encode_nonce,
    keyed_fingerprint,
    new_nonce,
    same_fingerprint,
)
from coffer.domain.errors import InvalidInput
from coffer.domain.events import Event, event_pattern_matches, parse_event_pattern
from coffer.domain.exposures import MAX_FINDINGS, MAX_LOCATION_BYTES, parse_finding
from coffer.scanner.findings import Finding

SECRET = "xoxb-000000000000-fake-leaked-value"  # fake, Slack-shaped


def finding(secret: str = SECRET, path: str = "app/config.py", **fields: object) -> Finding:
    """A finding of ``secret`` at line 7 of ``path``."""
    values: dict[str, object] = {
        "rule_id": "slack-bot-token",
        "title": "Slack bot token",
        "kind": "slack",
        "severity": "high",
        "path": path,
        "line": 7,
        "column": 1,
        "end_column": 1 + len(secret),
        "secret": secret,
        **fields,
    }
    return Finding(**values)  # type: ignore[arg-type]


def test_fingerprint_is_hmac_sha256_known_answer() -> None:
    """RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"."""
    assert keyed_fingerprint(b"Jefe", "what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_fingerprint_depends_on_the_nonce_and_hashes_utf8() -> None:
    """Two nonces give unrelated fingerprints; non-ASCII text is hashed as UTF-8."""
    first, second = new_nonce(), new_nonce()
    assert len(first) == 32 and first != second
    assert keyed_fingerprint(first, SECRET) != keyed_fingerprint(second, SECRET)
    assert keyed_fingerprint(b"k" * 16, "pässwörd") == keyed_fingerprint(
        b"k" * 16, "pässwörd".encode().decode("utf-8")
    )
    assert same_fingerprint(keyed_fingerprint(first, SECRET), keyed_fingerprint(first, SECRET))


@pytest.mark.parametrize("size", [16, 17, 32, 63, 64])
def test_nonce_round_trips_with_or_without_padding(size: int) -> None:
    """A nonce of 16 to 64 bytes decodes from its unpadded and its padded base64url form."""
    nonce = bytes(range(size))
    text = encode_nonce(nonce)
    assert "=" not in text
    assert decode_nonce(text) == nonce
    assert decode_nonce(text + "=" * (-len(text) % 4)) == nonce


@pytest.mark.parametrize("text", ["", "AAAA", encode_nonce(b"x" * 65), "a+b/" * 8, "A" * 21 + "\n"])
def test_bad_nonces_are_refused_naming_the_field(text: str) -> None:
    """Too short, too long, or not base64url: InvalidInput on ``nonce``."""
    with pytest.raises(InvalidInput) as refused:
        decode_nonce(text)
    assert refused.value.field == "nonce"


def test_request_body_carries_no_plaintext() -> None:
    """The body sent holds the nonce, keyed fingerprints, rule ids and locations only."""
    nonce = new_nonce()
    body = _request_body(nonce, [finding(), finding(path="b.env")])
    text = json.dumps(body)
    assert SECRET not in text and SECRET[:12] not in text
    assert [f["fingerprint"] for f in body["findings"]] == [keyed_fingerprint(nonce, SECRET)] * 2
    assert decode_nonce(body["nonce"]) == nonce


def test_location_names_path_line_and_commit_and_cleans_control_characters() -> None:
    """``path:line``, ``@commit`` for history, control characters as "?", long paths cut."""
    assert location_of(finding()) == "app/config.py:7"
    assert location_of(finding(commit="0123456789abcdef0123")) == "app/config.py:7@0123456789ab"
    assert location_of(finding(path="evil\x1b[2J.txt")) == "evil?[2J.txt:7"
    long = location_of(finding(path="d/" * 1000 + "leak.py"))
    assert len(long) == MAX_LOCATION_BYTES and long.startswith("...") and long.endswith("leak.py:7")


def test_a_long_non_ascii_location_is_cut_to_the_servers_byte_limit() -> None:
    """A path of 900 four-byte characters (under the limit in characters, four times over
    it in bytes) is cut at a character boundary to at most ``MAX_LOCATION_BYTES`` of UTF-8,
    keeping its end, and the server's own check accepts it."""
    long = location_of(finding(path="\U0001f511" * 900 + "/leak.py"))
    assert len(long.encode("utf-8")) <= MAX_LOCATION_BYTES
    assert long.startswith("...\U0001f511") and long.endswith("/leak.py:7")
    assert parse_finding(0, "a" * 64, "r", long).location == long


def test_batches_stay_under_the_size_and_count_limits() -> None:
    """Many findings with long paths go in several requests, each under the byte budget and
    the server's cap; together they hold every finding once, in order."""
    many = [finding(path=f"{'x' * 900}/{n}.py") for n in range(1500)]
    batches = list(_batches(many))
    assert len(batches) > 1
    assert [f for batch in batches for f in batch] == many
    for batch in batches:
        body = json.dumps(_request_body(new_nonce(), batch))
        assert len(body) <= BATCH_BYTES + 1024
    assert all(len(batch) <= MAX_FINDINGS for batch in _batches([finding()] * (MAX_FINDINGS + 5)))
    assert [len(b) for b in _batches([finding()] * 7, max_count=3)] == [3, 3, 1]


def test_webhooks_and_filters_may_name_secret_exposed() -> None:
    """``secret.exposed`` is in the one event vocabulary that webhooks and filters accept."""
    assert parse_event_pattern("secret.exposed", field="events") == "secret.exposed"
    assert event_pattern_matches("secret.*", Event.SECRET_EXPOSED.value)
