"""Every built-in rule finds the fake secrets its own template generates, and nothing else breaks
the rule schema: the rule data files are test vectors for themselves."""

from __future__ import annotations

import pickle
import random
import re

import pytest

from coffer.scanner import engine as engine_module
from coffer.scanner.engine import Engine
from coffer.scanner.rules import KINDS, builtin_rules
from coffer.scanner.samples import generate, sample_secret

RULES = builtin_rules()
ENGINE = Engine(RULES)
SAMPLES_PER_RULE = 25


def _keyword_engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setattr(engine_module, "hyperscan", None)
    return Engine(RULES)


def test_at_least_150_provider_rules_cover_every_kind() -> None:
    """The rule files hold at least 150 provider rules, and every kind has at least one."""
    providers = [rule for rule in RULES.rules if not rule.generic]
    assert len(providers) >= 150, len(providers)
    assert {rule.kind for rule in RULES.rules} == set(KINDS)


@pytest.mark.parametrize("rule", RULES.rules, ids=lambda rule: rule.id)
def test_rule_finds_its_generated_samples(rule: object) -> None:
    """Each rule reports, under its own id, every sample its template generates, and the
    reported secret is part of the sample."""
    from coffer.scanner.rules import Rule

    assert isinstance(rule, Rule)
    rng = random.Random(rule.id)
    for _ in range(SAMPLES_PER_RULE):
        sample = generate(rule, rng)
        expected = sample_secret(rule, sample)
        assert expected is not None, f"{rule.id}: its regex does not match its sample {sample!r}"
        line = f"config_value: {sample}\n".encode()
        findings = ENGINE.scan(line, "src/app/config.yaml")
        assert [(f.rule_id, f.secret) for f in findings] == [(rule.id, expected)], sample
        # Windowed confirmation relies on a keyword inside the match itself.
        match = re.search(rule.regex.encode(), line)
        assert match is not None
        matched = match.group(0).lower()
        assert any(k.encode() in matched for k in rule.keywords), f"{rule.id}: {sample!r}"


@pytest.mark.parametrize("rule", [r for r in RULES.rules if r.checksum], ids=lambda rule: rule.id)
def test_checksummed_tokens_with_a_wrong_checksum_are_not_reported(rule: object) -> None:
    """A checksummed token whose last character is changed fails offline verification."""
    from coffer.scanner.rules import Rule

    assert isinstance(rule, Rule)
    rng = random.Random(rule.id)
    sample = generate(rule, rng)
    good = ENGINE.scan(sample.encode(), "a.txt")
    assert good and good[0].verified
    last = sample[-1]
    broken = sample[:-1] + ("A" if last != "A" else "B")
    assert ENGINE.scan(broken.encode(), "a.txt") == []


def test_keyword_prefilter_agrees_with_hyperscan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Hyperscan, the keyword pre-filter finds the same secrets in a mixed buffer."""
    rng = random.Random(7)
    text = "\n".join(f"value{i} = {generate(rule, rng)}" for i, rule in enumerate(RULES.rules))
    expected = [(f.rule_id, f.line) for f in ENGINE.scan(text.encode(), "mixed.txt")]
    fallback = _keyword_engine(monkeypatch)
    assert fallback.prefilter == "keywords"
    assert [(f.rule_id, f.line) for f in fallback.scan(text.encode(), "mixed.txt")] == expected
    assert {rule_id for rule_id, _ in expected} == {rule.id for rule in RULES.rules}


def test_engine_survives_pickling_for_worker_processes() -> None:
    """A pickled engine (as sent to a worker process) scans the same as the original."""
    rng = random.Random(3)
    text = "\n".join(generate(rule, rng) for rule in RULES.rules[:20]).encode()
    clone = pickle.loads(pickle.dumps(ENGINE))  # noqa: S301 - our own bytes
    assert [f.secret for f in clone.scan(text, "p")] == [f.secret for f in ENGINE.scan(text, "p")]
