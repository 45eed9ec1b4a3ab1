"""False-positive filters: why a regex match is not a secret.

``reject_reason`` returns a short reason (``"placeholder"``, ``"low entropy"``, ...) when a match
should not be reported, or ``None`` when it should. Every rule gets the common filters (known
documentation examples, placeholders, too few distinct characters, its ``min_entropy``); rules
marked ``generic`` (``key = value``) also drop environment lookups, code references, UUIDs,
hashes in lockfiles and values that look like words rather than keys.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import PurePosixPath

from coffer.scanner.rules import Rule

# Values published in vendors' documentation as examples, never live credentials.
KNOWN_EXAMPLES = frozenset(
    {
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
        "ASIAIOSFODNN7EXAMPLE",
    }
)
_PLACEHOLDER_WORDS = re.compile(
    r"example|placeholder|changeme|change_me|change-me|your[_-]?(?:api[_-]?)?(?:key|token|secret|"
    r"password)|redacted|dummy|sample|insert[_-]|replace[_-]?me|xxxxx|\*\*\*\*|<[^>]*>|\.\.\.|"
    r"todo|fixme|notreal|not[_-]a[_-]real|fake|lorem",
    re.IGNORECASE,
)
_SEQUENCES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "qwertyuiop", "asdfghjkl")
_ENV_LOOKUP = re.compile(
    r"^\$|^%[A-Za-z_]|\$\{|\$\(|\{\{|\}\}|%\(|os\.environ|getenv|process\.env|ENV\[|env\(|"
    r"System\.getenv|secrets\.|vars\.|\bconfig\[",
    re.IGNORECASE,
)
_CODE_REFERENCE = re.compile(
    r"^[A-Za-z_$][\w$]*(?:(?:\.|::|->)[A-Za-z_$][\w$]*)+(?:\(.*\))?$"  # a.b.c, a::b(), a->b
    r"|^[A-Za-z_$][\w$.]*\(.*\)$"  # a call
    r"|^[a-z]+(?:_[a-z]+)+$|^[A-Z]+(?:_[A-Z]+)+$"  # snake_case or CONSTANT_NAME
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX_HASH = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64}|[0-9a-f]{128})$")
_INTEGRITY = re.compile(r"^(?:sha1|sha256|sha384|sha512)-[A-Za-z0-9+/=]+$")
LOCKFILES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "poetry.lock",
        "Pipfile.lock",
        "uv.lock",
        "Cargo.lock",
        "go.sum",
        "Gemfile.lock",
        "composer.lock",
        "packages.lock.json",
        "mix.lock",
        "pubspec.lock",
        "flake.lock",
    }
)
GENERIC_MIN_ENTROPY = 3.0
GENERIC_MIN_LENGTH = 8


def shannon_entropy(text: str) -> float:
    """Returns the Shannon entropy of ``text`` in bits per character (0 for empty text)."""
    if not text:
        return 0.0
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in Counter(text).values())


def reject_reason(rule: Rule, secret: str, path: str) -> str | None:
    """Returns why ``secret`` (matched by ``rule`` in the file at ``path``) is not reported, or
    ``None`` when it is a finding."""
    if secret in KNOWN_EXAMPLES:
        return "documentation example"
    if _PLACEHOLDER_WORDS.search(secret):
        return "placeholder"
    if len(set(secret)) < 4 or _has_sequence(secret):
        return "placeholder"
    if rule.min_entropy and shannon_entropy(secret) < rule.min_entropy:
        return "low entropy"
    if rule.generic:
        return _generic_reason(secret, path)
    return None


def _has_sequence(secret: str) -> bool:
    lowered = secret.lower()
    return any(seq[i : i + 8] in lowered for seq in _SEQUENCES for i in range(len(seq) - 7))


def _generic_reason(secret: str, path: str) -> str | None:
    if PurePosixPath(path).name in LOCKFILES:
        return "lockfile"
    if len(secret) < GENERIC_MIN_LENGTH:
        return "too short"
    if _ENV_LOOKUP.search(secret):
        return "environment lookup"
    if _CODE_REFERENCE.fullmatch(secret):
        return "code reference"
    if _UUID.fullmatch(secret):
        return "uuid"
    if _INTEGRITY.fullmatch(secret) or (_HEX_HASH.fullmatch(secret) and _is_lock_like(path)):
        return "hash"
    if shannon_entropy(secret) < GENERIC_MIN_ENTROPY:
        return "low entropy"
    if secret.isalpha() and (secret.islower() or secret.isupper()):
        return "word"
    return None


def _is_lock_like(path: str) -> bool:
    name = PurePosixPath(path).name
    return name in LOCKFILES or name.endswith((".lock", ".sum"))
