"""Rendered SARIF is valid against the official SARIF 2.1.0 JSON schema and meets what GitHub
code scanning requires beyond the schema.

The schema is the Microsoft SARIF SDK's, shipped in the npm package
``@microsoft/sarif-multitool-linux`` (``package/sarif-2.1.0.json``). A session fixture fetches
it once with ``npm pack`` into the repository's ``.cache/sarif/`` (ignored by git) and keeps only
that file. Without npm or the registry the tests are skipped with the reason, except under
``CI=true``, where they fail: CI runs everything.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from jsonschema import Draft202012Validator

from coffer.scanner.engine import Engine
from coffer.scanner.runner import ScanResult, run_scan
from coffer.scanner.samples import generate
from coffer.scanner.sarif import render_sarif
from coffer.scanner.sources import path_listing
from tests.unit.test_scanner_reports import (
    EMPTY,
    RULES,
    pem_result,
    sample_matches,
    sample_result,
)

REPOSITORY = Path(__file__).resolve().parents[2]
CACHE = REPOSITORY / ".cache" / "sarif"
SCHEMA_FILE = CACHE / "sarif-2.1.0.json"
PACKAGE = "@microsoft/sarif-multitool-linux@5.7.0"
MEMBER = "package/sarif-2.1.0.json"
NPM_SECONDS = 240
# npm's default retries wait over a minute when the registry is unreachable.
_QUICK_RETRIES = (
    "--fetch-retries=1",
    "--fetch-retry-mintimeout=2000",
    "--fetch-retry-maxtimeout=5000",
)

pytestmark = pytest.mark.timeout(NPM_SECONDS + 60)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must validate SARIF against the official schema: {reason}")
    pytest.skip(f"SARIF schema validation not run: {reason}")


def _npm_error(stderr: str) -> str:
    """Returns npm's first error lines, without the pointer to its debug log."""
    lines = [
        line.removeprefix("npm error").strip()
        for line in stderr.splitlines()
        if line.startswith("npm error") and "complete log" not in line
    ]
    return "; ".join(line for line in lines[:2] if line) or "no error message"


def _fetch_schema() -> None:
    """Runs npm pack into a scratch folder under the cache, extracts the schema file
    and keeps only it."""
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is not installed")
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        try:
            completed = subprocess.run(
                [npm, "pack", PACKAGE, "--pack-destination", scratch, *_QUICK_RETRIES],
                capture_output=True,
                text=True,
                timeout=NPM_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            _unavailable(f"npm pack {PACKAGE} took longer than {NPM_SECONDS} s")
            return
        tarballs = sorted(Path(scratch).glob("*.tgz"))
        if completed.returncode != 0 or len(tarballs) != 1:
            _unavailable(f"npm pack {PACKAGE} failed ({_npm_error(completed.stderr)})")
            return
        with tarfile.open(tarballs[0], "r:gz") as archive:
            extracted = archive.extractfile(MEMBER)
            assert extracted is not None, f"{MEMBER} is not a file in {PACKAGE}"
            data = extracted.read()
        partial = Path(scratch) / SCHEMA_FILE.name
        partial.write_bytes(data)
        json.loads(data)
        partial.replace(SCHEMA_FILE)


@pytest.fixture(scope="session")
def sarif_validator() -> Draft202012Validator:
    """A Draft 2020-12 validator (the draft the schema declares) for the official schema,
    fetched on first use and read from the cache afterwards."""
    if not SCHEMA_FILE.is_file():
        _fetch_schema()
    schema = json.loads(SCHEMA_FILE.read_text("utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _errors(validator: Draft202012Validator, document: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def _assert_github_accepts(document: dict[str, Any]) -> None:
    """What GitHub code scanning requires that the schema leaves open."""
    assert len(document["runs"]) <= 1
    for run in document["runs"]:
        rules = run["tool"]["driver"]["rules"]
        ids = [rule["id"] for rule in rules]
        assert len(ids) == len(set(ids))
        for rule in rules:
            score = float(rule["properties"]["security-severity"])
            assert 0.0 < score <= 10.0
            assert isinstance(rule["properties"]["security-severity"], str)
            assert "security" in rule["properties"]["tags"]
        for result in run["results"]:
            assert result["ruleId"] in ids
            assert ids[result["ruleIndex"]] == result["ruleId"]
            assert result["message"]["text"]
            assert result["partialFingerprints"]["secretFingerprint/v1"]
            assert result["level"] in {"error", "warning", "note"}
            [location] = result["locations"]
            artifact = location["physicalLocation"]["artifactLocation"]
            uri = artifact["uri"]
            parts = urlsplit(uri)
            assert not parts.scheme and not parts.netloc and not uri.startswith("/"), uri
            assert unquote(uri).strip() and " " not in uri and uri.isascii(), uri
            assert artifact["uriBaseId"] == "%SRCROOT%"
            region = location["physicalLocation"]["region"]
            assert region["startLine"] >= 1 and region["startColumn"] >= 1
            if region.get("endLine", region["startLine"]) == region["startLine"]:
                assert region["endColumn"] > region["startColumn"]
            else:
                assert region["endLine"] > region["startLine"] and region["endColumn"] >= 1


def _scanned_folder(root: Path) -> ScanResult:
    """A real scan of a folder holding several secrets, a binary and a file too large."""
    rng = random.Random(11)
    aws = generate(RULES.by_id("aws-access-key-id"), rng)
    token = generate(RULES.by_id("coffer-token"), rng)
    (root / "src").mkdir()
    (root / "src" / "settings.py").write_text(f"import os\n\nAWS_KEY = '{aws}'\n")
    (root / "deploy dir").mkdir()
    (root / "deploy dir" / "ci.yaml").write_text(f"env:\n  COFFER_TOKEN: {token}\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)))
    (root / "dump.sql").write_text("x" * 5000)
    listing = path_listing(root, root=root, max_file_bytes=4096)
    return run_scan(listing, Engine(RULES), workers=1, max_file_bytes=4096)


def test_sarif_of_findings_with_history_and_vault_matches_is_valid(
    sarif_validator: Draft202012Validator,
) -> None:
    """Findings with commit, author and date, vault matches, a verified token, standard input,
    a rule outside the rule set and skipped files render to schema-valid SARIF."""
    result = sample_result()
    document = json.loads(render_sarif(result, RULES, sample_matches(result)))
    assert _errors(sarif_validator, document) == []
    _assert_github_accepts(document)
    [run] = document["runs"]
    assert len(run["results"]) == 5
    assert any("commit" in r["properties"] and "vault" in r["properties"] for r in run["results"])


def test_sarif_of_a_real_folder_scan_is_valid(
    sarif_validator: Draft202012Validator, tmp_path: Path
) -> None:
    """A scan of files on disk, with a file name holding a space and skipped files, renders to
    schema-valid SARIF whose locations are relative to the root."""
    result = _scanned_folder(tmp_path)
    assert {f.path for f in result.findings} == {"src/settings.py", "deploy dir/ci.yaml"}
    assert {s.path for s in result.skipped} == {"logo.png", "dump.sql"}
    document = json.loads(render_sarif(result, RULES, root=tmp_path))
    assert _errors(sarif_validator, document) == []
    _assert_github_accepts(document)
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in document["runs"][0]["results"]
    }
    assert uris == {"src/settings.py", "deploy%20dir/ci.yaml"}


def test_sarif_of_a_multi_line_secret_is_valid(sarif_validator: Draft202012Validator) -> None:
    """A PEM key's region, from its first line to its last, is schema-valid and ends on the
    key's last line."""
    pem = pem_result()
    document = json.loads(render_sarif(pem, RULES))
    assert _errors(sarif_validator, document) == []
    _assert_github_accepts(document)
    [result] = document["runs"][0]["results"]
    region = result["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["endLine"]) == (2, pem.findings[0].end_line)


def test_sarif_of_a_clean_scan_is_valid(sarif_validator: Draft202012Validator) -> None:
    """A scan with nothing found is a valid log with one run and no results."""
    document = json.loads(render_sarif(EMPTY, RULES))
    assert _errors(sarif_validator, document) == []
    _assert_github_accepts(document)
    assert document["runs"][0]["results"] == []


def test_the_validator_rejects_what_the_schema_forbids(
    sarif_validator: Draft202012Validator,
) -> None:
    """The schema check is live: a wrong level, a missing message and an unknown top-level key
    are each reported."""
    result = sample_result()
    document = json.loads(render_sarif(result, RULES))
    document["runs"][0]["results"][0]["level"] = "critical"
    del document["runs"][0]["results"][1]["message"]
    document["extra"] = True
    errors = _errors(sarif_validator, document)
    assert any(e.startswith("runs/0/results/0/level") for e in errors), errors
    assert any(e.startswith("runs/0/results/1") and "message" in e for e in errors), errors
    assert any("extra" in e for e in errors), errors
