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
from coffer.services.exposures import CacheKey, FingerprintCache, FingerprintSet

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


def test_request_body_names_the_project_only_when_given() -> None:
    """A project given to the match goes in the body as ``project``; without one the body
    has only the nonce and the findings."""
    nonce = new_nonce()
    assert set(_request_body(nonce, [finding()])) == {"nonce", "findings"}
    assert _request_body(nonce, [finding()], "app")["project"] == "app"


def fingerprint_set(versions: int) -> FingerprintSet:
    """A fingerprint set standing for ``versions`` versions (no match in it)."""
    return FingerprintSet(by_fingerprint={}, versions=versions)


def cache_key(nonce: bytes, actor: str = "u1") -> CacheKey:
    """A cache key of ``actor`` in organization o1 under ``nonce``, every project."""
    return ("o1", "user", actor, "ann", nonce, None, frozenset({"env1"}))


def test_fingerprint_sets_are_kept_about_a_minute_for_the_same_caller_only() -> None:
    """A kept set is found again by the same key until ``seconds`` have passed, never by
    another caller or another nonce."""
    now = [100.0]
    cache = FingerprintCache(seconds=60.0, clock=lambda: now[0])
    found = fingerprint_set(3)
    cache.put(cache_key(b"n" * 32), found)
    assert cache.get(cache_key(b"n" * 32)) is found
    assert cache.get(cache_key(b"n" * 32, actor="u2")) is None
    assert cache.get(cache_key(b"m" * 32)) is None
    now[0] = 159.9
    assert cache.get(cache_key(b"n" * 32)) is found
    now[0] = 160.0
    assert cache.get(cache_key(b"n" * 32)) is None


def test_fingerprint_cache_evicts_the_least_recently_used_beyond_its_bounds() -> None:
    """Beyond ``entries`` sets or ``versions`` versions in all, the least recently used set
    goes first; a set larger than the versions bound is not kept at all."""
    cache = FingerprintCache(entries=2, versions=10)
    first, second, third = (cache_key(bytes([n]) * 32) for n in (1, 2, 3))
    cache.put(first, fingerprint_set(4))
    cache.put(second, fingerprint_set(4))
    assert cache.get(first) is not None  # first is now the most recently used
    cache.put(third, fingerprint_set(1))
    assert cache.get(second) is None and cache.get(first) is not None
    cache.put(second, fingerprint_set(7))  # 4 + 1 + 7 > 10 and 4 + 7 > 10: both older go
    assert cache.get(third) is None and cache.get(first) is None
    assert cache.get(second) is not None
    cache.put(first, fingerprint_set(11))
    assert cache.get(first) is None and cache.get(second) is not None
