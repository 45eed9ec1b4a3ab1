"""The SARIF report: the shape GitHub code scanning reads, with secrets masked."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import coffer
from coffer.scanner.runner import ScanResult
from coffer.scanner.sarif import artifact_location, render_sarif, rule_name
from tests.unit.test_scanner_reports import (
    AUTHOR,
    COMMIT,
    DATE,
    EMPTY,
    RULES,
    assert_no_plaintext,
    pem_result,
    sample_matches,
    sample_result,
)


def _sarif(result: ScanResult, **kwargs: Any) -> dict[str, Any]:
    rendered = render_sarif(result, RULES, **kwargs)
    assert_no_plaintext(rendered, result)
    document: dict[str, Any] = json.loads(rendered)
    return document


def _results_by_uri(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: r for r in run["results"]
    }


def test_the_log_is_one_sarif_2_1_0_run_by_coffer() -> None:
    """The log declares SARIF 2.1.0 and its schema, and holds one run whose driver is coffer at
    the package's version."""
    document = _sarif(sample_result())
    assert document["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert document["version"] == "2.1.0"
    [run] = document["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "coffer"
    assert driver["version"] == driver["semanticVersion"] == coffer.__version__
    assert run["columnKind"] == "unicodeCodePoints"
    assert run["invocations"][0]["executionSuccessful"] is True


def test_rules_are_those_the_results_use_with_github_severity() -> None:
    """driver.rules lists each referenced rule once, and each result's ruleIndex points at its
    rule; tags and security-severity follow what GitHub expects."""
    result = sample_result()
    [run] = _sarif(result)["runs"]
    rules = run["tool"]["driver"]["rules"]
    ids = [rule["id"] for rule in rules]
    assert ids == ["aws-access-key-id", "coffer-token", "internal-test-password"]
    for sarif_result in run["results"]:
        assert rules[sarif_result["ruleIndex"]]["id"] == sarif_result["ruleId"]
    aws = rules[0]
    assert aws["name"] == "AwsAccessKeyId"
    assert aws["shortDescription"]["text"] == "AWS access key ID found"
    assert "AWS access key ID" in aws["fullDescription"]["text"]
    assert "rotate" in aws["help"]["text"]
    assert aws["defaultConfiguration"]["level"] == "error"
    assert aws["properties"]["tags"] == ["security", "secret", "cloud"]
    assert aws["properties"]["security-severity"] == "9.5"
    low = rules[2]
    assert low["defaultConfiguration"]["level"] == "note"
    assert low["properties"]["tags"] == ["security", "secret", "generic"]
    assert float(low["properties"]["security-severity"]) < 4.0


def test_levels_follow_severity() -> None:
    """critical and high are errors, medium a warning, low a note."""
    result = sample_result()
    base = result.findings[0]
    findings = [
        replace(base, severity=severity, line=n, rule_id="aws-access-key-id")
        for n, severity in enumerate(("critical", "high", "medium", "low"), start=1)
    ]
    [run] = _sarif(replace(result, findings=findings))["runs"]
    assert [r["level"] for r in run["results"]] == ["error", "error", "warning", "note"]


def test_results_locate_the_secret_and_carry_its_fingerprint() -> None:
    """Each result has a repo-relative, percent-encoded uri on %SRCROOT%, the region of the
    secret, and the content fingerprint as a partial fingerprint."""
    result = sample_result()
    [run] = _sarif(result)["runs"]
    by_uri = _results_by_uri(run)
    finding = next(f for f in result.findings if f.commit)
    sarif_result = by_uri["infra/old%20keys/%C3%BCn%C3%AFcode.tf"]
    location = sarif_result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    assert location["region"] == {
        "startLine": finding.line,
        "startColumn": finding.column,
        "endColumn": finding.end_column,
    }
    assert sarif_result["partialFingerprints"] == {"secretFingerprint/v1": finding.fingerprint}
    assert sarif_result["message"]["text"] == f"AWS access key ID: {finding.masked}"
    assert sarif_result["properties"] == {
        "verified": False,
        "commit": COMMIT,
        "author": AUTHOR,
        "date": DATE,
    }


def test_vault_matches_and_verification_show_in_message_and_properties() -> None:
    """A vault match is named in the message and the properties; a verified token says so."""
    result = sample_result()
    [run] = _sarif(result, matches=sample_matches(result))["runs"]
    by_uri = _results_by_uri(run)
    matched = by_uri["app/settings.py"]
    assert (
        "vault secret payments/production/AWS_ACCESS_KEY_ID (version 3, current)"
        in (matched["message"]["text"])
    )
    assert matched["properties"]["vault"] == {
        "project": "payments",
        "environment": "production",
        "key": "AWS_ACCESS_KEY_ID",
        "version": 3,
        "current": True,
    }
    token = by_uri["deploy/ci.yaml"]
    assert token["message"]["text"].endswith("(checksum verified)")
    assert token["properties"] == {"verified": True}


def test_standard_input_and_absolute_paths_get_sensible_uris(tmp_path: Path) -> None:
    """<stdin> becomes 'stdin' described as standard input; an absolute path under the root is
    made relative; one outside it becomes a file URI."""
    stdin = artifact_location("<stdin>")
    assert stdin["uri"] == "stdin"
    assert stdin["description"] == {"text": "standard input"}
    inside = tmp_path / "src" / "a b.py"
    assert artifact_location(str(inside), tmp_path) == {
        "uri": "src/a%20b.py",
        "uriBaseId": "%SRCROOT%",
    }
    outside = tmp_path.parent / "elsewhere" / "key.pem"
    assert artifact_location(str(outside), tmp_path) == {"uri": outside.as_uri()}
    assert outside.as_uri().startswith("file:///")
    assert artifact_location("./docs/x#1.md") == {"uri": "docs/x%231.md", "uriBaseId": "%SRCROOT%"}
    assert artifact_location("bad\udcffname")["uri"] == "bad%FFname"


def test_skipped_files_are_tool_notifications() -> None:
    """Each skipped file is a note on the invocation naming the file and the reason."""
    [run] = _sarif(sample_result())["runs"]
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert [n["message"]["text"] for n in notes] == [
        "skipped media/big.bin: larger than 10 MB",
        "skipped media/logo.png: binary",
    ]
    assert all(n["level"] == "note" for n in notes)
    uri = notes[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "media/big.bin"


def test_a_clean_scan_is_a_run_with_no_results() -> None:
    """No findings: one run with empty results and rules, and no notifications."""
    [run] = _sarif(EMPTY)["runs"]
    assert run["results"] == []
    assert run["tool"]["driver"]["rules"] == []
    assert run["invocations"] == [{"executionSuccessful": True}]


def test_the_rendering_is_deterministic() -> None:
    """The same scan in another order renders the same SARIF text."""
    result = sample_result()
    again = replace(
        result, findings=list(reversed(result.findings)), skipped=list(reversed(result.skipped))
    )
    assert render_sarif(again, RULES) == render_sarif(result, RULES)


def test_rule_names_are_pascal_case() -> None:
    """Rule ids become the PascalCase names SARIF viewers show."""
    assert rule_name("aws-access-key-id") == "AwsAccessKeyId"
    assert rule_name("coffer-token") == "CofferToken"


def test_a_multi_line_secret_has_an_end_line() -> None:
    """A PEM key's region runs from its first line and column to its last line, with the end
    column counted on that last line."""
    result = pem_result()
    [finding] = result.findings
    [run] = _sarif(result)["runs"]
    [sarif_result] = run["results"]
    assert sarif_result["locations"][0]["physicalLocation"]["region"] == {
        "startLine": 2,
        "startColumn": 1,
        "endLine": finding.end_line,
        "endColumn": finding.end_column,
    }
