"""Scanner rules kept as data: TOML files of ``[[rule]]`` tables, loaded into a ``RuleSet``.

A rule table holds:

- ``id`` (required): lowercase words joined by ``-``, unique across all files;
- ``title`` (required): what the secret is, e.g. ``"AWS access key ID"``;
- ``kind`` (required): one of ``KINDS``, used to report recall per kind;
- ``regex`` (required): a Python ``re`` pattern that Hyperscan also compiles in pre-filter mode
  (look-arounds are approximated there; bounded repeats stay under a few thousand); matched
  against bytes, so ``\\w`` and ``\\s`` are ASCII. Prefer ``[ \\t]`` to ``\\s`` where a match
  stays on one line: single-line rules are confirmed on keyword lines only, which is faster;
- ``keywords`` (required): lowercase literals, one of which occurs in every match (the pre-filter
  used when Hyperscan is not installed);
- ``sample`` (required): a template (a regex of literals, classes and counted repeats) from which
  tests and the benchmark corpus generate realistic fake secrets;
- ``secret_group`` (default: 1 when the regex has groups, else 0): the group that is the secret;
- ``min_entropy`` (default 0): the minimum Shannon entropy of the secret, in bits per character;
- ``checksum``: ``"github"`` or ``"coffer"``; a match whose checksum is wrong is not reported;
- ``severity`` (default ``"high"``): ``critical``, ``high``, ``medium`` or ``low``;
- ``generic`` (default false): a ``key = value`` rule, held to the stricter generic filters.

``load_rules`` raises ``InvalidInput`` naming the file, the rule and the field that breaks a rule.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from coffer.domain.errors import InvalidInput

KINDS = (
    "cloud",
    "vcs",
    "ci",
    "payment",
    "chat",
    "ai",
    "database",
    "registry",
    "private-key",
    "jwt",
    "connection-string",
    "coffer",
    "saas",
    "monitoring",
    "messaging",
    "generic",
)
SEVERITIES = ("critical", "high", "medium", "low")
_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_FIELDS = frozenset(
    {
        "id",
        "title",
        "kind",
        "regex",
        "keywords",
        "sample",
        "secret_group",
        "min_entropy",
        "checksum",
        "severity",
        "generic",
    }
)
_CHECKSUMS = ("github", "coffer")


@dataclass(frozen=True, slots=True)
class Rule:
    """One detection rule (see the module docstring for each field's contract)."""

    id: str
    title: str
    kind: str
    regex: str
    keywords: tuple[str, ...]
    sample: str
    secret_group: int
    min_entropy: float
    checksum: str | None
    severity: str
    generic: bool
    source: str

    def compiled(self) -> re.Pattern[bytes]:
        """Returns the rule's regex compiled for bytes."""
        return re.compile(self.regex.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules a scan uses, in a stable order (built-in files by name, then custom rules)."""

    rules: tuple[Rule, ...]

    def __len__(self) -> int:
        return len(self.rules)

    def by_id(self, rule_id: str) -> Rule:
        """Returns the rule named ``rule_id``; raises ``KeyError`` when there is none."""
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def without(self, rule_ids: Iterable[str]) -> RuleSet:
        """Returns this set without the named rules; raises ``InvalidInput`` for an unknown id."""
        drop = set(rule_ids)
        unknown = drop - {rule.id for rule in self.rules}
        if unknown:
            raise InvalidInput(
                f"no rule is named {', '.join(sorted(unknown))}", field="disable_rules"
            )
        return RuleSet(tuple(rule for rule in self.rules if rule.id not in drop))

    def plus(self, extra: Sequence[Rule]) -> RuleSet:
        """Returns this set with ``extra`` appended; raises ``InvalidInput`` on a repeated id."""
        seen = {rule.id for rule in self.rules}
        for rule in extra:
            if rule.id in seen:
                raise InvalidInput(
                    f"{rule.source}: rule id {rule.id!r} is already used", field="rule.id"
                )
            seen.add(rule.id)
        return RuleSet(self.rules + tuple(extra))


def builtin_rules() -> RuleSet:
    """Returns the rules shipped in ``coffer/scanner/rule_data/*.toml``."""
    folder = resources.files("coffer.scanner").joinpath("rule_data")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".toml"))
    rules: list[Rule] = []
    for name in names:
        rules.extend(parse_rules(folder.joinpath(name).read_text("utf-8"), source=name))
    return RuleSet(()).plus(rules)


def load_rule_file(path: Path) -> list[Rule]:
    """Returns the rules in the TOML file at ``path``; raises ``InvalidInput`` when it is
    unreadable, not TOML, or a rule breaks the schema."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot read rule file ({exc})", field="rules") from exc
    return parse_rules(text, source=str(path))


def parse_rules(text: str, *, source: str) -> list[Rule]:
    """Returns the ``[[rule]]`` tables of TOML ``text``; ``source`` names it in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{source}: not valid TOML ({exc})", field="rules") from exc
    tables = document.get("rule", [])
    if not isinstance(tables, list):
        raise InvalidInput(f"{source}: 'rule' must be an array of tables", field="rule")
    return [rule_from_table(table, source=source) for table in tables]


def rule_from_table(table: Any, *, source: str) -> Rule:
    """Returns the ``Rule`` a TOML table describes; raises ``InvalidInput`` naming the field."""
    if not isinstance(table, dict):
        raise InvalidInput(f"{source}: each [[rule]] must be a table", field="rule")
    where = f"{source}: rule {table.get('id', '?')!r}"
    unknown = set(table) - _FIELDS
    if unknown:
        raise InvalidInput(
            f"{where}: unknown field {sorted(unknown)[0]!r}", field=f"rule.{sorted(unknown)[0]}"
        )
    rule_id = _text(table, "id", where)
    if not _ID.fullmatch(rule_id):
        raise InvalidInput(
            f"{where}: id must be lowercase letters and digits joined by '-'", field="rule.id"
        )
    kind = _text(table, "kind", where)
    if kind not in KINDS:
        raise InvalidInput(f"{where}: kind must be one of {', '.join(KINDS)}", field="rule.kind")
    regex = _text(table, "regex", where)
    try:
        groups = re.compile(regex.encode("utf-8")).groups  # the engine reuses it from the cache
    except re.error as exc:
        raise InvalidInput(f"{where}: regex does not compile ({exc})", field="rule.regex") from exc
    keywords = table.get("keywords")
    if (
        not isinstance(keywords, list)
        or not keywords
        or not all(isinstance(k, str) and k and k == k.lower() for k in keywords)
    ):
        raise InvalidInput(
            f"{where}: keywords must be a non-empty list of lowercase strings",
            field="rule.keywords",
        )
    secret_group = table.get("secret_group", 1 if groups else 0)
    if not isinstance(secret_group, int) or not 0 <= secret_group <= groups:
        raise InvalidInput(
            f"{where}: secret_group must be a group of the regex (0 to {groups})",
            field="rule.secret_group",
        )
    min_entropy = table.get("min_entropy", 0.0)
    if not isinstance(min_entropy, int | float) or not 0 <= min_entropy <= 8:
        raise InvalidInput(
            f"{where}: min_entropy must be a number from 0 to 8", field="rule.min_entropy"
        )
    checksum = table.get("checksum")
    if checksum is not None and checksum not in _CHECKSUMS:
        raise InvalidInput(
            f"{where}: checksum must be one of {', '.join(_CHECKSUMS)}", field="rule.checksum"
        )
    severity = table.get("severity", "high")
    if severity not in SEVERITIES:
        raise InvalidInput(
            f"{where}: severity must be one of {', '.join(SEVERITIES)}", field="rule.severity"
        )
    generic = table.get("generic", False)
    if not isinstance(generic, bool):
        raise InvalidInput(f"{where}: generic must be true or false", field="rule.generic")
    return Rule(
        id=rule_id,
        title=_text(table, "title", where),
        kind=kind,
        regex=regex,
        keywords=tuple(keywords),
        sample=_text(table, "sample", where),
        secret_group=secret_group,
        min_entropy=float(min_entropy),
        checksum=checksum,
        severity=severity,
        generic=generic,
        source=source,
    )


def _text(table: dict[str, Any], name: str, where: str) -> str:
    value = table.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where}: {name} must be a non-empty string", field=f"rule.{name}")
    return value
