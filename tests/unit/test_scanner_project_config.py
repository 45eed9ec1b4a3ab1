"""The project's ``.coffer-scan.toml``: what it accepts, the field it names when it is wrong, the
rules a scan then uses, and the allow-lists built from it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from coffer.domain.errors import InvalidInput
from coffer.scanner.allowlist import Allowlist
from coffer.scanner.findings import Finding
from coffer.scanner.project_config import (
    ProjectConfig,
    baseline_path,
    load_project_config,
    parse_project_config,
    parse_size,
    rules_for,
)
from coffer.scanner.rules import builtin_rules
from coffer.scanner.samples import generate
from coffer.scanner.sources import DEFAULT_MAX_FILE_BYTES

BUILTIN = builtin_rules()
CUSTOM_RULE = """
[[rule]]
id = "acme-api-key"
title = "ACME API key"
kind = "saas"
regex = '''\\b(acme_[0-9a-f]{32})\\b'''
keywords = ["acme_"]
sample = '''acme_[0-9a-f]{32}'''
severity = "medium"
"""
FULL = f"""
[scan]
disable_rules = ["generic-secret"]
max_file_size = "512KB"
baseline = "ci/.coffer-baseline"

[allow]
paths = ["tests/fixtures/", "*.lock"]
rules = ["acme-api-key"]
values = ["^AKIA.*TEST"]
{CUSTOM_RULE}
"""


def _finding(
    path: str = "src/app.py", rule_id: str = "aws-access-key-id", secret: str = ""
) -> Finding:
    secret = secret or generate(BUILTIN.by_id("aws-access-key-id"), random.Random(path))
    return Finding(rule_id, "AWS access key ID", "cloud", "critical", path, 3, 9, 29, secret)


def _error(text: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_project_config(text, source=".coffer-scan.toml")
    return caught.value


def test_a_full_file_is_read_into_the_settings() -> None:
    """Every documented key lands in the settings, sizes in bytes and custom rules as Rules."""
    config = parse_project_config(FULL, source=".coffer-scan.toml")
    assert config.disable_rules == ("generic-secret",)
    assert config.max_file_bytes == 512 * 1024
    assert config.baseline == "ci/.coffer-baseline"
    assert config.allow_paths == ("tests/fixtures/", "*.lock")
    assert config.allow_rules == ("acme-api-key",)
    assert config.allow_values == ("^AKIA.*TEST",)
    [rule] = config.custom_rules
    assert (rule.id, rule.kind, rule.severity, rule.source) == (
        "acme-api-key",
        "saas",
        "medium",
        ".coffer-scan.toml",
    )


def test_rules_for_drops_disabled_rules_and_adds_custom_ones() -> None:
    """The scan uses the built-in rules minus the disabled ones, then the custom rules."""
    rules = rules_for(parse_project_config(FULL, source=".coffer-scan.toml"))
    ids = [rule.id for rule in rules.rules]
    assert "generic-secret" not in ids
    assert ids[-1] == "acme-api-key"
    assert len(rules) == len(BUILTIN)


def test_no_file_means_defaults(tmp_path: Path) -> None:
    """Without a config file in the root the defaults apply: 10 MB files, nothing allowed."""
    config = load_project_config(None, root=tmp_path)
    assert config == ProjectConfig()
    assert config.max_file_bytes == DEFAULT_MAX_FILE_BYTES == 10 * 1024 * 1024
    assert rules_for(config) == BUILTIN


def test_the_root_file_is_found_and_a_named_file_must_exist(tmp_path: Path) -> None:
    """The root's .coffer-scan.toml is read by default; a --config file that is missing is an
    error naming the config."""
    (tmp_path / ".coffer-scan.toml").write_text('[scan]\nmax_file_size = "1MB"\n')
    assert load_project_config(None, root=tmp_path).max_file_bytes == 1024 * 1024
    with pytest.raises(InvalidInput) as caught:
        load_project_config(tmp_path / "missing.toml", root=tmp_path)
    assert caught.value.field == "config"
    assert "missing.toml" in caught.value.message


def test_the_baseline_is_relative_to_the_config_files_folder(tmp_path: Path) -> None:
    """scan.baseline is resolved against the folder of the file that names it."""
    config = ProjectConfig(baseline=".coffer-baseline")
    assert baseline_path(config, None, root=tmp_path) == tmp_path / ".coffer-baseline"
    named = tmp_path / "ci" / "scan.toml"
    assert baseline_path(config, named, root=tmp_path) == tmp_path / "ci" / ".coffer-baseline"
    assert baseline_path(ProjectConfig(), None, root=tmp_path) is None


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("[scan\n", "config", "not valid TOML"),
        ("[scanner]\n", "scanner", "unknown table"),
        ("[scan]\nexclude = []\n", "scan.exclude", "unknown key"),
        ("[allow]\nfiles = []\n", "allow.files", "unknown key"),
        ("scan = 3\n", "scan", "must be a table"),
        ('[scan]\ndisable_rules = "generic-secret"\n', "scan.disable_rules", "list of strings"),
        ('[scan]\ndisable_rules = ["no-such-rule"]\n', "scan.disable_rules[0]", "no-such-rule"),
        ('[allow]\nrules = ["aws-access-key-id", "nope"]\n', "allow.rules[1]", "'nope'"),
        ('[allow]\nvalues = ["ok", "(unclosed"]\n', "allow.values[1]", "regular expression"),
        ("[allow]\nvalues = [3]\n", "allow.values[0]", "non-empty string"),
        ('[allow]\npaths = ["docs/", "\\\\"]\n', "allow.paths[1]", "gitignore-style"),
        ('[allow]\npaths = [" "]\n', "allow.paths[0]", "non-empty string"),
        ('[scan]\nmax_file_size = "ten megabytes"\n', "scan.max_file_size", "positive size"),
        ("[scan]\nmax_file_size = 0\n", "scan.max_file_size", "positive size"),
        ("[scan]\nmax_file_size = true\n", "scan.max_file_size", "positive size"),
        ("[scan]\nbaseline = 7\n", "scan.baseline", "non-empty path"),
        ("rule = 1\n", "rule", "array of tables"),
        (CUSTOM_RULE.replace('kind = "saas"', 'kind = "weird"'), "rule[0].kind", "kind must be"),
        (CUSTOM_RULE.replace("(acme_", "((acme_"), "rule[0].regex", "does not compile"),
        (CUSTOM_RULE + CUSTOM_RULE.replace("acme", "other") + "colour = 1\n", "rule[1].colour", ""),
        (CUSTOM_RULE.replace("acme-api-key", "aws-access-key-id"), "rule[0].id", "already used"),
        (CUSTOM_RULE + CUSTOM_RULE, "rule[1].id", "already used"),
    ],
)
def test_a_bad_setting_is_an_error_naming_its_field(text: str, field: str, words: str) -> None:
    """Each way of breaking the schema raises InvalidInput whose field names the culprit and
    whose message names the file and the rule it breaks."""
    error = _error(text)
    assert error.field == field
    assert ".coffer-scan.toml" in error.message
    assert words in error.message


def test_a_custom_rule_error_names_the_rule() -> None:
    """A broken custom rule's message says which rule it is."""
    error = _error(CUSTOM_RULE.replace('keywords = ["acme_"]', 'keywords = ["ACME"]'))
    assert error.field == "rule[0].keywords"
    assert "'acme-api-key'" in error.message


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("10MB", 10 * 1024**2),
        ("512KB", 512 * 1024),
        ("512 kb", 512 * 1024),
        ("1.5GB", int(1.5 * 1024**3)),
        ("2M", 2 * 1024**2),
        ("2048", 2048),
        ("300B", 300),
        (4096, 4096),
    ],
)
def test_sizes_are_read_in_1024s(value: object, size: int) -> None:
    """Sizes take KB/MB/GB (1024s, any case, spaces allowed), a bare number or an integer."""
    assert parse_size(value, field="max_file_size") == size


@pytest.mark.parametrize("value", ["", "-1MB", "10TB", "MB", "1e6", 0, -5, 2.5, None])
def test_a_bad_size_names_its_field(value: object) -> None:
    """Anything but a positive size is refused, naming the field given."""
    with pytest.raises(InvalidInput) as caught:
        parse_size(value, field="--max-file-size")
    assert caught.value.field == "--max-file-size"


def test_allowed_paths_follow_gitignore_rules() -> None:
    """Path patterns match as in .gitignore: folders, globs at any depth, patterns anchored by a
    slash, and negations."""
    config = ProjectConfig(
        allow_paths=("tests/fixtures/", "fixtures/", "*.lock", "/build", "!keep.lock")
    )
    allowlist = Allowlist.from_config(config)
    assert allowlist.skips_path("tests/fixtures/aws.json")
    assert allowlist.skips_path("pkg/fixtures/deep/a.txt")
    assert not Allowlist(paths=("tests/fixtures/",)).skips_path("pkg/tests/fixtures/a.txt")
    assert allowlist.skips_path("web/package.lock")
    assert allowlist.skips_path("./web/package.lock")
    assert allowlist.skips_path("build/out.js")
    assert not allowlist.skips_path("src/build/out.js")
    assert not allowlist.skips_path("keep.lock")
    assert not allowlist.skips_path("src/tests/fixture.py")
    assert allowlist.allows(_finding("tests/fixtures/aws.json"))
    assert not allowlist.allows(_finding("src/app.py"))


def test_findings_are_allowed_by_rule_value_or_baseline() -> None:
    """A finding is accepted when its rule is allowed, a value pattern finds its secret, or its
    fingerprint is in the baseline; other findings are reported."""
    reported = _finding()
    by_rule = Allowlist.from_config(ProjectConfig(allow_rules=("aws-access-key-id",)))
    assert by_rule.allows(reported)
    assert not by_rule.allows(_finding(rule_id="coffer-token"))
    by_value = Allowlist.from_config(ProjectConfig(allow_values=("TEST$",)))
    assert by_value.allows(_finding(secret="AKIAABCDEFGHIJKLTEST"))
    assert not by_value.allows(reported)
    by_baseline = Allowlist.from_config(ProjectConfig(), frozenset({reported.fingerprint}))
    assert by_baseline.allows(reported)
    assert not by_baseline.allows(_finding(secret="AKIAZZZZZZZZZZZZZZZZ"))
    assert not Allowlist.from_config(ProjectConfig()).allows(reported)
    assert not Allowlist.from_config(ProjectConfig()).skips_path("src/app.py")


def test_an_allowlist_repr_shows_no_secret_patterns_or_fingerprints() -> None:
    """repr of an allow-list says how much it holds, not the values it allows."""
    reported = _finding()
    allowlist = Allowlist.from_config(
        ProjectConfig(allow_values=("^AKIASECRETPREFIX",)), frozenset({reported.fingerprint})
    )
    text = repr(allowlist)
    assert "AKIASECRETPREFIX" not in text
    assert reported.fingerprint not in text
    assert "baseline=1" in text


def test_the_documented_example_is_a_valid_file() -> None:
    """The example in the module's docstring parses as it is written there."""
    import textwrap

    from coffer.scanner import project_config

    doc = project_config.__doc__ or ""
    example = textwrap.dedent(doc.split("::", 1)[1].split("Anything else", 1)[0])
    config = parse_project_config(example, source="docstring")
    assert config.disable_rules == ("generic-secret",)
    assert config.baseline == ".coffer-baseline"
    assert config.max_file_bytes == DEFAULT_MAX_FILE_BYTES
    assert [rule.id for rule in config.custom_rules] == ["acme-api-key"]
    assert rules_for(config).by_id("acme-api-key").compiled().search(b"acme_" + b"0" * 32)
