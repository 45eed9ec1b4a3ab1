"""The text and JSON reports: what a user reads, with every secret masked.

``sample_result`` and ``SAMPLE_MATCHES`` are also the inputs of the SARIF tests.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace

from coffer.scanner.engine import Engine
from coffer.scanner.findings import Finding
from coffer.scanner.report_json import render_json
from coffer.scanner.report_text import render_text
from coffer.scanner.rules import builtin_rules
from coffer.scanner.runner import ScanResult, Skipped
from coffer.scanner.samples import generate
from coffer.scanner.vault_link import VaultMatch

RULES = builtin_rules()
ENGINE = Engine(RULES)
COMMIT = "3f2c1a9b07de4c5f8a1b2c3d4e5f60718293a4b5"
AUTHOR = "Dana <dana@example.com>"
DATE = "2024-05-01T10:00:00+00:00"


def _secret(rule_id: str, seed: str) -> str:
    return generate(RULES.by_id(rule_id), random.Random(seed))


def _found(text: str, path: str) -> Finding:
    [finding] = ENGINE.scan(text.encode(), path)
    return finding


def sample_result() -> ScanResult:
    """A scan with a plain finding, a checksum-verified token, a finding in git history, a
    finding on standard input, a low-severity finding of a rule the rule set lacks, a path with
    a space and non-ASCII letters, and two skipped files."""
    aws = _found(f"AWS_ACCESS_KEY_ID = '{_secret('aws-access-key-id', 'a')}'\n", "app/settings.py")
    token = _found(f"token: {_secret('coffer-token', 't')}\n", "deploy/ci.yaml")
    old = _found(f"\n\nkey = {_secret('aws-access-key-id', 'h')}\n", "infra/old keys/ünïcode.tf")
    history = replace(old, commit=COMMIT, author=AUTHOR, date=DATE)
    piped = _found(f"export K={_secret('aws-access-key-id', 's')}\n", "<stdin>")
    low = Finding(
        "internal-test-password",
        "Internal test password",
        "generic",
        "low",
        "tests/fixtures/login.txt",
        4,
        10,
        26,
        "Zq8#vLm2!pR7xT4w",
    )
    return ScanResult(
        findings=[token, history, aws, piped, low],
        skipped=[
            Skipped("media/big.bin", "larger than 10 MB"),
            Skipped("media/logo.png", "binary"),
        ],
        files_scanned=214,
        bytes_scanned=3_355_443,
        seconds=0.4123,
    )


def sample_matches(result: ScanResult) -> dict[str, VaultMatch]:
    """The vault recognises the plain AWS key (current) and the one in history (old version)."""
    by_path = {f.path: f for f in result.findings}
    current = by_path["app/settings.py"].fingerprint
    old = by_path["infra/old keys/ünïcode.tf"].fingerprint
    return {
        current: VaultMatch(current, "payments", "production", "AWS_ACCESS_KEY_ID", 3, True),
        old: VaultMatch(old, "payments", "staging", "AWS_ACCESS_KEY_ID", 1, False),
    }


def assert_no_plaintext(rendered: str, result: ScanResult) -> None:
    """No secret, nor its unmasked tail, appears in ``rendered``."""
    for finding in result.findings:
        assert finding.secret not in rendered
        assert finding.secret[-10:] not in rendered
        assert finding.secret[len(finding.secret) // 2 :] not in rendered


EMPTY = ScanResult(findings=[], skipped=[], files_scanned=3, bytes_scanned=1200, seconds=0.01)


def pem_result() -> ScanResult:
    """A scan that found one RSA private key in ``keys/deploy.pem``, from line 2 to its last."""
    key = _secret("private-key-rsa", "pem")
    finding = _found(f"# deploy key\n{key}\n", "keys/deploy.pem")
    assert (finding.line, finding.end_line) == (2, 2 + key.count("\n"))
    assert finding.end_line > finding.line
    return replace(EMPTY, findings=[finding], files_scanned=1)


def test_text_report_shows_each_finding_masked_with_its_place_and_rule() -> None:
    """Each finding's block starts 'path:line:column  rule  title  masked' and no secret shows."""
    result = sample_result()
    text = render_text(result)
    assert_no_plaintext(text, result)
    for finding in result.findings:
        head = (
            f"{finding.path}:{finding.line}:{finding.column}  {finding.rule_id}  "
            f"{finding.title}  {finding.masked}"
        )
        assert head in text
    assert "\x1b[" not in text


def test_text_report_marks_verified_tokens_history_and_vault_matches() -> None:
    """A checksum-verified token says 'verified'; a history finding names its commit, author and
    date; a vault match names project/environment/key, version and whether it is current."""
    result = sample_result()
    text = render_text(result, sample_matches(result))
    token = next(f for f in result.findings if f.rule_id == "coffer-token")
    assert token.verified
    [token_line] = [line for line in text.splitlines() if line.startswith("deploy/ci.yaml:")]
    assert token_line.endswith("  verified")
    assert sum(line.endswith("  verified") for line in text.splitlines()) == 1
    assert "    commit 3f2c1a9b07de by Dana <dana@example.com> on 2024-05-01T10:00:00+00:00" in text
    assert "    vault: payments/production/AWS_ACCESS_KEY_ID (version 3, current)" in text
    assert "    vault: payments/staging/AWS_ACCESS_KEY_ID (version 1, no longer current)" in text
    assert "vault:" not in render_text(result)


def test_text_report_ends_with_a_summary_and_the_skip_notes() -> None:
    """The summary counts secrets and files, the data scanned and the time, then lists skipped
    files with the reason."""
    lines = render_text(sample_result()).splitlines()
    assert lines[-3:] == [
        "5 secrets in 5 files; 214 files (3.2 MB) scanned in 0.41 s",
        "skipped media/big.bin: larger than 10 MB",
        "skipped media/logo.png: binary",
    ]


def test_text_report_of_a_clean_scan_says_no_secrets_found() -> None:
    """A scan with no findings says so in one line, singular and plural right."""
    assert render_text(EMPTY) == "No secrets found; 3 files (0.0 MB) scanned in 0.01 s\n"
    one = replace(EMPTY, files_scanned=1)
    assert render_text(one).startswith("No secrets found; 1 file (")


def test_text_report_counts_one_secret_in_one_file() -> None:
    """One finding reads '1 secret in 1 file'."""
    result = sample_result()
    single = replace(result, findings=result.findings[:1], skipped=[])
    assert render_text(single).splitlines()[-1].startswith("1 secret in 1 file; ")


def test_text_report_colours_only_when_asked() -> None:
    """With color on, the report carries ANSI codes and still no plaintext; the words are the
    same once the codes are removed."""
    result = sample_result()
    plain = render_text(result, sample_matches(result))
    coloured = render_text(result, sample_matches(result), color=True)
    assert "\x1b[31m" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain
    assert_no_plaintext(coloured, result)


def test_text_report_escapes_terminal_control_characters_in_paths() -> None:
    """A file name with an escape sequence or a newline cannot drive the terminal or forge lines."""
    result = sample_result()
    hostile = replace(result.findings[0], path="evil\x1b[2J\nfake.py:1:1  ok")
    text = render_text(replace(result, findings=[hostile], skipped=[Skipped("a\rb", "binary")]))
    assert "\x1b" not in text
    assert "\r" not in text
    assert "evil\\x1b[2J\\nfake.py:1:1  ok:" in text
    assert "skipped a\\rb: binary" in text


def test_json_report_has_every_field_and_masks_the_secret() -> None:
    """The JSON document parses and holds version, findings with every field, skipped notes and
    the summary; secrets appear only masked, with their fingerprints."""
    result = sample_result()
    matches = sample_matches(result)
    rendered = render_json(result, matches)
    assert_no_plaintext(rendered, result)
    document = json.loads(rendered)
    assert document["version"] == 1
    assert document["summary"] == {
        "findings": 5,
        "files_scanned": 214,
        "bytes_scanned": 3_355_443,
        "seconds": 0.412,
    }
    assert document["skipped"] == [
        {"path": "media/big.bin", "reason": "larger than 10 MB"},
        {"path": "media/logo.png", "reason": "binary"},
    ]
    records = {record["path"]: record for record in document["findings"]}
    by_path = {f.path: f for f in result.findings}
    for path, finding in by_path.items():
        record = records[path]
        assert list(record) == [
            "rule_id",
            "title",
            "kind",
            "severity",
            "path",
            "line",
            "column",
            "end_line",
            "end_column",
            "secret",
            "fingerprint",
            "verified",
            "commit",
            "author",
            "date",
            "vault",
        ]
        assert record["secret"] == finding.masked
        assert record["fingerprint"] == finding.fingerprint
        assert (record["line"], record["column"], record["end_line"], record["end_column"]) == (
            finding.line,
            finding.column,
            finding.end_line,
            finding.end_column,
        )
    history = records["infra/old keys/ünïcode.tf"]
    assert (history["commit"], history["author"], history["date"]) == (
        COMMIT,
        "Dana <dana@example.com>",
        "2024-05-01T10:00:00+00:00",
    )
    assert history["vault"] == {
        "project": "payments",
        "environment": "staging",
        "key": "AWS_ACCESS_KEY_ID",
        "version": 1,
        "current": False,
    }
    assert records["app/settings.py"]["vault"]["current"] is True
    assert records["deploy/ci.yaml"]["verified"] is True
    assert records["deploy/ci.yaml"]["vault"] is None
    assert records["deploy/ci.yaml"]["commit"] is None


def test_json_report_is_deterministic() -> None:
    """The same findings in another order render the same document, sorted by path and line."""
    result = sample_result()
    shuffled = list(result.findings)
    random.Random(5).shuffle(shuffled)
    again = replace(result, findings=shuffled, skipped=list(reversed(result.skipped)))
    assert render_json(again) == render_json(result)
    paths = [record["path"] for record in json.loads(render_json(result))["findings"]]
    assert paths == sorted(paths)


def test_json_report_of_a_clean_scan() -> None:
    """A clean scan is an empty findings list with the summary."""
    document = json.loads(render_json(EMPTY))
    assert document["findings"] == []
    assert document["summary"]["findings"] == 0


def test_reports_of_a_multi_line_secret_name_its_first_and_last_line() -> None:
    """A PEM key shows as 'path:2-<last>:1' in the text report and with its end_line in JSON,
    masked on one line."""
    result = pem_result()
    [finding] = result.findings
    last = finding.end_line
    text = render_text(result)
    assert_no_plaintext(text, result)
    assert text.startswith(f"keys/deploy.pem:2-{last}:1  private-key-rsa  {finding.title}  ")
    assert finding.masked in text.splitlines()[0]
    [record] = json.loads(render_json(result))["findings"]
    assert (record["line"], record["end_line"], record["end_column"]) == (2, last, 30)


def test_findings_that_tie_on_place_and_rule_still_sort_one_way() -> None:
    """Findings that share path, line, column, commit and rule but differ in end column or in
    secret render in one order, whatever order the scan gave them in."""
    base = sample_result().findings[0]
    others = [
        replace(base, end_column=base.end_column + 1),
        replace(base, secret=_secret("aws-access-key-id", "tie-1")),
        replace(base, secret=_secret("aws-access-key-id", "tie-2")),
    ]
    findings = [base, *others]
    forward = replace(EMPTY, findings=findings)
    backward = replace(EMPTY, findings=list(reversed(findings)))
    assert render_json(forward) == render_json(backward)
    assert render_text(forward) == render_text(backward)
