"""The engine's contracts: windowed confirmation finds what a whole-buffer search finds, the
regex shape analysis, the compiled-database cache, and the masked ``repr`` of a finding."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from coffer.scanner import engine as engine_module
from coffer.scanner.engine import Engine
from coffer.scanner.findings import fingerprint, mask
from coffer.scanner.regex_shape import can_match_newline
from coffer.scanner.rules import builtin_rules, parse_rules
from coffer.scanner.samples import generate

RULES = builtin_rules()


@pytest.mark.parametrize(
    ("regex", "spans_lines"),
    [
        (r"AKIA[A-Z2-7]{16}", False),
        (r"(?i)key\s{0,5}=", True),
        (r"key[ \t]{0,5}=", False),
        (r"a[^x]b", True),
        (r'a[^\n"]b', False),
        (r"-----BEGIN[\s\S]{10,20}", True),
        (r"a.b", False),
        (r"(?s)a.b", True),
        (r"a\Sb", False),
        (r"a\Wb", True),
    ],
)
def test_regex_shape_tells_which_rules_may_span_lines(regex: str, spans_lines: bool) -> None:
    """The analysis says a pattern may span lines exactly when one of its parts admits \\n."""
    assert can_match_newline(regex) is spans_lines


def _big_buffer(seed: int) -> bytes:
    rng = random.Random(seed)
    filler = [
        "    result = compute(value, key=other_key)  # token bucket",
        "def password_policy(user):",
        "    return self.secret_store.get(name)",
        "x = {'passkey': 1, 'monkey': 2}",
    ]
    lines: list[str] = []
    for _ in range(3000):
        if rng.random() < 0.02:
            rule = rng.choice(RULES.rules)
            lines.append(f"config_{len(lines)} = {generate(rule, rng)}")
        else:
            lines.append(rng.choice(filler))
    return "\n".join(lines).encode()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_windowed_confirmation_matches_a_whole_buffer_search(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Confirming single-line rules on keyword lines only reports the same findings as
    running every candidate rule over the whole buffer."""
    data = _big_buffer(seed)
    engine = Engine(RULES)
    windowed = [(f.rule_id, f.line, f.column, f.secret) for f in engine.scan(data, "big.py")]
    monkeypatch.setattr(engine_module, "WINDOWED_FROM_BYTES", 10**12)
    whole = [(f.rule_id, f.line, f.column, f.secret) for f in engine.scan(data, "big.py")]
    assert windowed == whole
    assert len(windowed) > 20


def test_compiled_database_is_cached_and_a_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    """The first engine writes the compiled database to the cache folder; a damaged cache file
    is replaced rather than trusted."""
    if engine_module.hyperscan is None:
        pytest.skip("Hyperscan is not installed on this platform")
    first = Engine(RULES, cache_dir=tmp_path)
    cached = list(tmp_path.glob("scanner-*.hsdb"))
    assert len(cached) == 1
    cached[0].write_bytes(b"not a database")
    second = Engine(RULES, cache_dir=tmp_path)
    sample = generate(RULES.by_id("aws-access-key-id"), random.Random(5)).encode()
    assert [f.secret for f in second.scan(sample, "a")] == [
        f.secret for f in first.scan(sample, "a")
    ]
    assert cached[0].read_bytes() != b"not a database"


def test_a_custom_rule_the_prefilter_cannot_compile_is_named() -> None:
    """A rule whose bounded repeat is too large for the pre-filter is refused with an error
    naming the rule and the field."""
    if engine_module.hyperscan is None:
        pytest.skip("Hyperscan is not installed on this platform")
    bad = parse_rules(
        "[[rule]]\nid = 'mine'\ntitle = 'Mine'\nkind = 'saas'\n"
        "regex = '''key=[a-z]{99999}'''\nkeywords = ['key']\nsample = 'key=[a-z]{10}'\n",
        source="custom.toml",
    )
    with pytest.raises(Exception) as caught:
        Engine(RULES.plus(bad))
    assert "mine" in str(caught.value)
    assert getattr(caught.value, "field", None) == "rule.regex"


def test_finding_repr_and_mask_hide_the_secret() -> None:
    """A finding's repr shows a masked secret only, and the mask keeps at most four characters."""
    secret = generate(RULES.by_id("aws-access-key-id"), random.Random(9))
    [finding] = Engine(RULES).scan(f"key: {secret}\n".encode(), "a.yaml")
    assert secret not in repr(finding)
    assert secret not in str(finding)
    assert mask(secret).startswith(secret[:4])
    assert secret[4:] not in mask(secret)
    assert mask("hunter22") == "hu******"
    assert finding.fingerprint == fingerprint(secret)
    assert fingerprint(secret) != fingerprint(secret + "x")


@pytest.mark.parametrize(
    ("regex", "expected"),
    [
        (r"-----BEGIN[\s\S]{64,32000}?-----", r"-----BEGIN[\s\S]{64,}?-----"),
        (r"[a-z]{2,10}", r"[a-z]{2,10}"),
        (r"a\{3,999\}", r"a\{3,999\}"),
    ],
)
def test_prefilter_expression_opens_only_wide_bounded_repeats(regex: str, expected: str) -> None:
    """Wide bounded repeats become open-ended for the pre-filter (a superset of the matches);
    narrow repeats and escaped braces stay as written."""
    assert engine_module.prefilter_expression(regex) == expected


def test_fingerprints_of_chosen_passwords_are_slow_to_guess() -> None:
    """A generic password's fingerprint is not the fast SHA-256 one (an offline guess must pay
    for scrypt), while a long random token keeps the fast fingerprint; both are stable."""
    from coffer.scanner.findings import Finding

    def finding(kind: str, secret: str) -> Finding:
        return Finding("r", "t", kind, "high", "p", 1, 1, 2, secret)

    password = "Summer2024!x"
    assert finding("generic", password).fingerprint != fingerprint(password)
    assert finding("generic", password).fingerprint == fingerprint(password, guessable=True)
    token = "ghp_" + "aB3" * 12
    assert finding("vcs", token).fingerprint == fingerprint(token)
    assert finding("connection-string", token).fingerprint == fingerprint(token, guessable=True)


def test_multi_line_secret_positions_and_inline_ignore_on_its_last_line() -> None:
    """A PEM key reports where it starts and ends, and coffer:ignore on its END line skips it."""
    rule = RULES.by_id("private-key-rsa")
    block = generate(rule, random.Random(11))
    text = f"# key\nkey = '''\n{block}\n'''\n"
    [found] = Engine(RULES).scan(text.encode(), "k.py")
    assert (found.line, found.column) == (3, 1)
    assert found.end_line == 3 + block.count("\n")
    assert found.end_column == len(block.splitlines()[-1]) + 1
    assert len(found.masked) <= 40
    ignored = text.replace("PRIVATE KEY-----\n'''", "PRIVATE KEY----- # coffer:ignore\n'''")
    assert ignored != text
    assert Engine(RULES).scan(ignored.encode(), "k.py") == []
