"""A project's scanner settings: the ``.coffer-scan.toml`` file in the repository root.

Every table and key is optional::

    [scan]
    disable_rules = ["generic-secret"]   # built-in rule ids the scan does not use
    max_file_size = "10MB"               # larger files are skipped with a note; "512KB", "1GB" or
                                         # a number of bytes; KB/MB/GB count 1024s (default 10MB)
    baseline = ".coffer-baseline"        # accepted findings, relative to this file's folder

    [allow]
    paths = ["tests/fixtures/", "*.lock"]  # gitignore-style patterns on repo-relative paths; these
                                           # files are not read at all
    rules = ["generic-secret"]             # rule ids whose findings are not reported
    values = ["^sk_test_"]                 # Python regexes; a secret one of them finds (re.search)
                                           # is not reported

    [[rule]]                               # custom rules, the schema of coffer/scanner/rule_data
    id = "acme-api-key"
    title = "ACME API key"
    kind = "saas"
    regex = '''\\b(acme_[0-9a-f]{32})\\b'''
    keywords = ["acme_"]
    sample = '''acme_[0-9a-f]{32}'''

Anything else is an error: ``load_project_config`` raises ``InvalidInput`` whose ``field`` names
the offending key (``scan.max_file_size``, ``allow.values[1]``, ``rule[0].regex``; list indexes
count from 0) and whose message states the rule. Nothing is half-applied.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pathspec

from coffer.domain.errors import InvalidInput
from coffer.scanner.rules import Rule, RuleSet, builtin_rules, rule_from_table
from coffer.scanner.sources import DEFAULT_MAX_FILE_BYTES

CONFIG_FILE_NAME = ".coffer-scan.toml"

_SECTIONS: dict[str, frozenset[str]] = {
    "scan": frozenset({"disable_rules", "max_file_size", "baseline"}),
    "allow": frozenset({"paths", "rules", "values"}),
}
_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B?)\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    """The settings of one project's scans (see the module docstring for each key)."""

    allow_paths: tuple[str, ...] = ()
    allow_rules: tuple[str, ...] = ()
    allow_values: tuple[str, ...] = ()
    disable_rules: tuple[str, ...] = ()
    custom_rules: tuple[Rule, ...] = ()
    baseline: str | None = None
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES


def load_project_config(path: Path | None, *, root: Path) -> ProjectConfig:
    """Returns the settings in the file at ``path``.

    With ``path`` None, reads ``root/.coffer-scan.toml`` when it exists and returns the defaults
    when it does not. Raises ``InvalidInput`` naming the field when the file is unreadable, not
    TOML, or breaks the schema.
    """
    if path is None:
        path = root / CONFIG_FILE_NAME
        if not path.is_file():
            return ProjectConfig()
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        message = f"{path}: cannot read the scan settings ({exc})"
        raise InvalidInput(message, field="config") from exc
    return parse_project_config(text, source=str(path))


def parse_project_config(text: str, *, source: str) -> ProjectConfig:
    """Returns the settings in TOML ``text``; ``source`` names the file in error messages.

    Raises ``InvalidInput`` naming the field (see the module docstring).
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{source}: not valid TOML ({exc})", field="config") from exc
    for name in document:
        if name not in _SECTIONS and name != "rule":
            raise InvalidInput(
                f"{source}: unknown table or key {name!r} (expected [scan], [allow], [[rule]])",
                field=name,
            )
    scan = _section(document, "scan", source)
    allow = _section(document, "allow", source)
    builtin_ids = frozenset(rule.id for rule in builtin_rules().rules)
    custom_rules = _custom_rules(document.get("rule", []), builtin_ids, source)
    disable_rules = _strings(scan, "scan", "disable_rules", source)
    for index, rule_id in enumerate(disable_rules):
        if rule_id not in builtin_ids:
            raise InvalidInput(
                f"{source}: scan.disable_rules names {rule_id!r}, which is not a built-in rule",
                field=f"scan.disable_rules[{index}]",
            )
    known_ids = builtin_ids | {rule.id for rule in custom_rules}
    allow_rules = _strings(allow, "allow", "rules", source)
    for index, rule_id in enumerate(allow_rules):
        if rule_id not in known_ids:
            raise InvalidInput(
                f"{source}: allow.rules names {rule_id!r}, which is not a built-in or custom rule",
                field=f"allow.rules[{index}]",
            )
    allow_paths = _strings(allow, "allow", "paths", source)
    for index, pattern in enumerate(allow_paths):
        _check_path_pattern(pattern, f"allow.paths[{index}]", source)
    allow_values = _strings(allow, "allow", "values", source)
    for index, expression in enumerate(allow_values):
        try:
            re.compile(expression)
        except re.error as exc:
            raise InvalidInput(
                f"{source}: allow.values[{index}] is not a valid regular expression ({exc})",
                field=f"allow.values[{index}]",
            ) from exc
    return ProjectConfig(
        allow_paths=allow_paths,
        allow_rules=allow_rules,
        allow_values=allow_values,
        disable_rules=disable_rules,
        custom_rules=custom_rules,
        baseline=_baseline(scan, source),
        max_file_bytes=_max_file_bytes(scan, source),
    )


def rules_for(config: ProjectConfig) -> RuleSet:
    """Returns the built-in rules minus ``config.disable_rules`` plus ``config.custom_rules``.

    Raises ``InvalidInput`` when a disabled id is unknown or a custom id repeats another rule's.
    """
    return builtin_rules().without(config.disable_rules).plus(config.custom_rules)


def baseline_path(config: ProjectConfig, path: Path | None, *, root: Path) -> Path | None:
    """Returns where ``config.baseline`` points, given the same ``path`` and ``root`` that
    ``load_project_config`` was called with; None when the settings name no baseline."""
    if config.baseline is None:
        return None
    folder = path.parent if path is not None else root
    return folder / config.baseline


def parse_size(value: object, *, field: str) -> int:
    """Returns the number of bytes ``value`` states: an integer, or text such as ``"10MB"``,
    ``"512KB"``, ``"1.5GB"`` or ``"2048"`` (KB/MB/GB count 1024s; case and spaces do not matter).

    Raises ``InvalidInput`` naming ``field`` when it is not a positive size.
    """
    rule = 'a positive size such as "10MB", "512KB" or a number of bytes'
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"{field} must be {rule}", field=field)
    if isinstance(value, int):
        amount = float(value)
    else:
        match = _SIZE.fullmatch(value)
        if match is None:
            raise InvalidInput(f"{field} must be {rule}, not {value!r}", field=field)
        unit = match.group(2).upper()
        unit = unit if unit.endswith("B") or not unit else unit + "B"
        amount = float(match.group(1)) * _UNITS[unit]
    if amount < 1:
        raise InvalidInput(f"{field} must be {rule}", field=field)
    return int(amount)


def _section(document: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    table = document.get(name, {})
    if not isinstance(table, dict):
        raise InvalidInput(f"{source}: {name} must be a table ([{name}])", field=name)
    for key in table:
        if key not in _SECTIONS[name]:
            expected = ", ".join(sorted(_SECTIONS[name]))
            raise InvalidInput(
                f"{source}: unknown key {name}.{key} (expected one of {expected})",
                field=f"{name}.{key}",
            )
    return table


def _strings(table: dict[str, Any], section: str, key: str, source: str) -> tuple[str, ...]:
    value = table.get(key, [])
    field = f"{section}.{key}"
    if not isinstance(value, list):
        raise InvalidInput(f"{source}: {field} must be a list of strings", field=field)
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise InvalidInput(
                f"{source}: {field}[{index}] must be a non-empty string", field=f"{field}[{index}]"
            )
    return tuple(value)


def _check_path_pattern(pattern: str, field: str, source: str) -> None:
    try:
        pathspec.GitIgnoreSpec.from_lines([pattern])
    except ValueError as exc:
        raise InvalidInput(
            f"{source}: {field} is not a valid gitignore-style pattern ({exc})", field=field
        ) from exc


def _custom_rules(tables: Any, builtin_ids: frozenset[str], source: str) -> tuple[Rule, ...]:
    if not isinstance(tables, list):
        raise InvalidInput(f"{source}: rule must be an array of tables ([[rule]])", field="rule")
    rules: list[Rule] = []
    for index, table in enumerate(tables):
        try:
            rules.append(rule_from_table(table, source=source))
        except InvalidInput as exc:
            suffix = (exc.field or "rule").removeprefix("rule")
            raise InvalidInput(exc.message, field=f"rule[{index}]{suffix}") from exc
    seen: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.id in builtin_ids or rule.id in seen:
            raise InvalidInput(
                f"{source}: rule {rule.id!r}: id is already used by another rule",
                field=f"rule[{index}].id",
            )
        seen.add(rule.id)
    return tuple(rules)


def _baseline(scan: dict[str, Any], source: str) -> str | None:
    value = scan.get("baseline")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(
            f"{source}: scan.baseline must be a non-empty path relative to this file",
            field="scan.baseline",
        )
    return value


def _max_file_bytes(scan: dict[str, Any], source: str) -> int:
    if "max_file_size" not in scan:
        return DEFAULT_MAX_FILE_BYTES
    try:
        return parse_size(scan["max_file_size"], field="scan.max_file_size")
    except InvalidInput as exc:
        raise InvalidInput(f"{source}: {exc.message}", field=exc.field) from exc
