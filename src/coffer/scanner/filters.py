"""False-positive filters: why a regex match is not a secret.

``reject_reason`` returns a short reason when a match should not be reported, or ``None`` when
it should. Each filter states a reason a value cannot be a live credential; none looks at
where the corpus of any one test put its decoys.

Every rule:

- ``documentation example``: values vendors publish as examples (``KNOWN_EXAMPLES``: AWS's
  ``AKIAIOSFODNN7EXAMPLE``, jwt.io's token, the keys in Stripe's API reference);
- ``placeholder``: words that mark a value to fill in (``example``, ``changeme``, ``your-key``,
  ``<TOKEN>``, ``xxxxx``, ``****``, ``...``; short ones such as ``todo`` or ``fake`` only as
  words of their own), fewer than 4 distinct characters, or a run of 8
  keyboard or alphabet characters (``12345678``, ``abcdefgh``, ``qwertyuiop``);
- ``low entropy``: below the rule's own ``min_entropy``.

Generic (``key = value``) rules, whose match is only a name and a value, also drop:

- ``lockfile``: anything in a lockfile (integrity hashes, content hashes);
- ``too short``: fewer than 8 characters;
- ``checksummed format``: values in a format whose own checksum provider rules verify
  (``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``, ``github_pat_``, ``npm_``, ``coffer_``): a
  valid one is reported by its provider rule, an invalid one is not a token;
- ``environment lookup``: ``$NAME``, ``${NAME}``, ``$(cmd)``, ``%NAME%``, ``{{ template }}``,
  ``%(name)s`` (whole, names of 2+ characters: a random password may hold ``{{``, ``${`` or
  ``$(K)``),
  ``os.environ``, ``process.env``, ``getenv``, ``secrets.X`` and the like;
- ``file path``: ``/run/secrets/db_password``, ``./certs/key.pem``, ``~/.ssh/id_rsa``,
  ``db/password`` (lowercase words only), and command-line options (``--password-stdin``);
- ``code reference``: ``self.token``, ``settings.API_KEY``, ``config.get(``, ``get_password()``,
  ``snake_case`` and ``CONSTANT_NAME`` identifiers (a value cut at a quote keeps its ``(``),
  and code such as ``function(){return`` in a minified bundle whose mangled name holds ``pwd``;
- ``timestamp``: ISO 8601 dates and times (``PasswordLastUsed: 2016-09-24T16:18:07Z``);
- ``uuid`` and ``css class``: identifiers, not keys (UUIDs; CSS-in-JS class names such as
  ``css-1q2w3e4`` and ``sc-bdVaJa`` in bundles);
- ``hash``: ``sha256-...``/``sha512-...`` integrity strings, and hex digests in ``*.lock`` or
  ``*.sum`` files;
- ``test fixture``: a word from the fixture vocabulary (``test``, ``password``, ``secret``,
  ``admin``, ``dummy``, ``letmein``, ...) with at most a few digits or symbols, also when
  written in leetspeak (``P@ssw0rd``, ``s3cr3t``);
- ``low entropy``: below ``GENERIC_MIN_ENTROPY`` bits per character;
- ``code expression``: an unquoted value in a source file of a programming language
  (``password = read_password()``, ``token: str = Field(...)``): a secret written into code
  is a string literal, while configuration formats (``.env``, YAML, INI, shell) leave values bare;
- ``identifier``: a name made of words and acronyms (``NextPageToken``, ``AWSAccessKeyId``,
  ``MyTestDatabaseSecret``): every part has a vowel, while random letters rarely do;
- ``url or arn``: a URL with no credentials in it (those are the URL rules' job) or an AWS ARN;
- ``template or pattern``: a ``{placeholder}`` of a format string or f-string, or regex syntax
  (``[0-9a-f]{64}``, ``\\d+``);
- ``word``: letters only in one case or capitalised (``Password``, ``bearer``), or words
  joined by ``-``, ``_`` or ``.`` (``db-password``, ``token.refresh``).
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
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "pk_test_TYooMQauvdEDq54NiTphI7jx",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwi"
        "aWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    }
)
# Long marker words count anywhere; short ones only as words of their own (not touching other
# letters, a capital may follow: ``fakeToken``), since a random 40-character key holds ``todo``
# or ``fake`` about once in a thousand. These run on every match, so literal tests on the
# lowered value come first (Python's re tries a case-insensitive alternation at every position).
_MARKERS = (
    "example", "placeholder", "changeme", "change_me", "change-me", "redacted", "sample",
    "insert_", "insert-", "replaceme", "replace_me", "replace-me", "replace-with",
    "replace_with", "xxxxx", "notreal",
    "not_a_real", "not-a-real", "****", "...",
)  # fmt: skip
_YOUR_KEY = re.compile(r"your[_-]?(?:api[_-]?)?(?:key|token|secret|password)")
_ANGLE_BRACKETS = re.compile(r"<[^>]*>")
_SHORT_MARKERS = ("todo", "fixme", "fake", "dummy", "lorem")
_SHORT_MARKER_WORD = re.compile(r"(?<![A-Za-z])(?i:todo|fixme|fake|dummy|lorem)(?![a-z])")
_SEQUENCES = ("0123456789", "abcdefghijklmnopqrstuvwxyz", "qwertyuiop", "asdfghjkl")
_SEQUENCE_RUNS = tuple(seq[i : i + 8] for seq in _SEQUENCES for i in range(len(seq) - 7))
_ENV_LOOKUP_CHARS = "$%{([."  # every lookup below holds one of these, or "getenv"
_ENV_LOOKUP = re.compile(
    r"^\$[A-Za-z_{(]|^%[A-Za-z_]\w*%|\$\{\s*[A-Za-z_][\w.]+\s*(?:\}|:|-|$)|\$\([A-Za-z_][\w.-]+(?:\)|$)|"
    r"^\{\{|\{\{\s*[\w.$][^}]*\}\}|%\([A-Za-z_]\w*\)|"
    r"os\.environ|getenv|process\.env|ENV\[|env\(|System\.getenv|secrets\.|vars\.|\bconfig\[",
    re.IGNORECASE,
)
_CHECKSUMMED_FORMAT = re.compile(r"^(?:gh[pousr]_|github_pat_|npm_|coffer_[a-z]{2,8}_)")
# Segments of lowercase words: a base64 key may start with '/' and hold more of them.
_FILE_PATH = re.compile(
    r"^(?:~|\.{1,2})?/[A-Za-z_.][a-z0-9_.-]*(?:/[A-Za-z_.][a-z0-9_.-]*)+/?$"
    r"|^[a-z][a-z0-9_.-]*(?:/[a-z][a-z0-9_.-]*)+/?$"  # relative, lowercase words only
    r"|^--?[a-z][a-z0-9-]+$"  # a command-line option
)
_TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
# An identifier segment: a word, optionally with a short number (``v2``, ``sha256``),
# not the letters and digits mixed through a random key.
_SEGMENT = r"[A-Za-z_$][A-Za-z_$]*[0-9]{0,3}"
_CODE_REFERENCE = re.compile(
    rf"^{_SEGMENT}(?:(?:\.|::|->){_SEGMENT})+(?:[(\[].*)?$"  # a.b.c, a::b(, a->b(), a.b[0]
    rf"|^{_SEGMENT}\((?:.*\))?$"  # a call, possibly cut at its first quote
    r"|^[a-z]+(?:_[a-z0-9]+)+$|^[A-Z]+(?:_[A-Z0-9]+)+$"  # snake_case or CONSTANT_NAME
    r"|^[a-z]{2,}(?:[A-Z][a-z]{2,})+[0-9]{0,2}$"  # camelCase words (a random key mixes more)
)
# Code rather than a value: a language keyword opening the value, or an empty call's body.
_CODE_START = re.compile(r"^(?:function|return|new|await|async|lambda|typeof|yield)\b|\(\)\s*\{")
_WORDS = re.compile(r"^[A-Za-z][a-z]*(?:[-_.][A-Za-z][a-z]*)*$")
_FIXTURE = re.compile(
    r"^(?:(?:test|testing|tests|dummy|mock|fake|sample|demo|password|passwd|pass|secret|admin|"
    r"root|user|guest|default|letmein|welcome|qwerty|hunter|foo|bar|baz|abc|key|token|api|"
    r"client|value|my|the|for)[-_.!@#$%^&*]*)+[0-9]{0,6}[-_.!@#$%^&*]*$",
    re.IGNORECASE,
)
_LEET = str.maketrans("013457@$", "oleastas")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Class names that CSS-in-JS libraries generate (emotion ``css-1q2w3e4``, styled-components
# ``sc-bdVaJa``, styled-jsx ``jsx-123456``): identifiers in bundles, not keys.
_CSS_CLASS = re.compile(r"^(?:css-[a-z0-9]{5,10}|sc-[A-Za-z]{5,8}|jsx-[0-9]{6,12})$")
_HEX_HASH = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64}|[0-9a-f]{128})$")
_INTEGRITY = re.compile(r"^(?:sha1|sha256|sha384|sha512)-[A-Za-z0-9+/=]+$")
# Source files of programming languages, where a literal secret is always quoted.
CODE_SUFFIXES = frozenset(
    {
        ".py", ".pyi", ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".go", ".java", ".kt",
        ".kts", ".scala", ".groovy", ".rb", ".php", ".cs", ".fs", ".vb", ".c", ".h", ".cc",
        ".cpp", ".hpp", ".cxx", ".rs", ".swift", ".m", ".mm", ".dart", ".lua", ".pl", ".pm",
        ".r", ".jl", ".ex", ".exs", ".erl", ".clj", ".hs", ".ml", ".vue", ".svelte",
    }
)  # fmt: skip
_NAME_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_VOWEL = re.compile(r"[aeiouy]")
_URL_OR_ARN = re.compile(r"[a-z][a-z0-9+.-]{1,15}://|arn:aws[a-z-]*:")
# A format-string or f-string placeholder, or regex syntax: text that builds a value.
_TEMPLATE_OR_PATTERN = re.compile(
    r"\{[A-Za-z_][\w.]*(?:\([^(){}]*\))?(?:![rsa])?(?::[^{}]*)?\}"  # {name}, {a.b(c)!r:>8}
    r"|\[[^\]]+\](?:\{\d+(?:,\d*)?\}|[+*])"  # a character class with a repeat
    r"|\\[dDwWsS][+*{?]|\(\?[:=!<P]"  # \d+, (?:...)
)
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


def reject_reason(rule: Rule, secret: str, path: str, *, quoted: bool = True) -> str | None:
    """Returns why ``secret`` (matched by ``rule`` in the file at ``path``) is not reported, or
    ``None`` when it is a finding."""
    if secret in KNOWN_EXAMPLES:
        return "documentation example"
    lowered = secret.lower()
    if _is_placeholder(secret, lowered) or len(set(secret)) < 4:
        return "placeholder"
    if any(run in lowered for run in _SEQUENCE_RUNS):
        return "placeholder"
    if rule.min_entropy and shannon_entropy(secret) < rule.min_entropy:
        return "low entropy"
    if rule.generic:
        return _generic_reason(secret, path, quoted=quoted)
    return None


def _is_placeholder(secret: str, lowered: str) -> bool:
    return (
        any(marker in lowered for marker in _MARKERS)
        or ("your" in lowered and _YOUR_KEY.search(lowered) is not None)
        or ("<" in secret and _ANGLE_BRACKETS.search(secret) is not None)
        or (
            any(marker in lowered for marker in _SHORT_MARKERS)
            and _SHORT_MARKER_WORD.search(secret) is not None
        )
    )


def _generic_reason(secret: str, path: str, *, quoted: bool) -> str | None:
    name = PurePosixPath(path).name
    if name in LOCKFILES:
        return "lockfile"
    if not quoted and PurePosixPath(name).suffix.lower() in CODE_SUFFIXES:
        return "code expression"
    if _TEMPLATE_OR_PATTERN.search(secret):
        return "template or pattern"
    if _URL_OR_ARN.match(secret):
        return "url or arn"
    if _is_identifier(secret):
        return "identifier"
    if len(secret) < GENERIC_MIN_LENGTH:
        return "too short"
    if _CHECKSUMMED_FORMAT.match(secret):
        return "checksummed format"
    if _is_env_lookup(secret):
        return "environment lookup"
    if _FILE_PATH.fullmatch(secret):
        return "file path"
    if _CODE_REFERENCE.fullmatch(secret) or _CODE_START.search(secret):
        return "code reference"
    if _UUID.fullmatch(secret):
        return "uuid"
    if _TIMESTAMP.fullmatch(secret):
        return "timestamp"
    if _CSS_CLASS.fullmatch(secret):
        return "css class"
    if _INTEGRITY.fullmatch(secret) or (_HEX_HASH.fullmatch(secret) and _is_lock_like(path)):
        return "hash"
    if _FIXTURE.fullmatch(secret) or _FIXTURE.fullmatch(secret.translate(_LEET)):
        return "test fixture"
    if shannon_entropy(secret) < GENERIC_MIN_ENTROPY:
        return "low entropy"
    if (secret.isupper() and secret.isalpha()) or _WORDS.fullmatch(secret):
        return "word"
    return None


def _is_identifier(secret: str) -> bool:
    """True for letters (and at most 3 trailing digits) that split into two or more words or
    acronyms, each word holding a vowel: ``NextPageToken`` is, ``TRJbsRGrEvJKnJC`` is not."""
    letters = secret.rstrip("0123456789")
    if not letters.isalpha() or len(secret) - len(letters) > 3:
        return False
    parts = _NAME_PARTS.findall(letters)
    if len(parts) < 2 or "".join(parts) != letters:
        return False
    return all(
        (part.isupper() and len(part) <= 5) or (len(part) >= 2 and _VOWEL.search(part.lower()))
        for part in parts
    )


def _is_env_lookup(secret: str) -> bool:
    if "getenv" not in secret.lower() and not any(c in secret for c in _ENV_LOOKUP_CHARS):
        return False
    return _ENV_LOOKUP.search(secret) is not None


def _is_lock_like(path: str) -> bool:
    name = PurePosixPath(path).name
    return name in LOCKFILES or name.endswith((".lock", ".sum"))
