"""Precision on real code: coffer's own repository (code, docs, benchmarks, deployment files)
scans clean with the repository's .coffer-scan.toml, which allows only the rule data files and
the tests' deliberate fakes."""

from __future__ import annotations

from pathlib import Path

from coffer.scanner.allowlist import Allowlist
from coffer.scanner.engine import Engine
from coffer.scanner.project_config import load_project_config, rules_for
from coffer.scanner.runner import run_scan
from coffer.scanner.sources import path_listing

ROOT = Path(__file__).resolve().parents[2]


def test_coffers_own_repository_scans_clean() -> None:
    """No finding in about 250 files of Python, Markdown, YAML and TOML written by people."""
    config = load_project_config(None, root=ROOT)
    allowlist = Allowlist.from_config(config)
    listing = path_listing(ROOT, root=ROOT, skip_path=allowlist.skips_path)
    result = run_scan(listing, Engine(rules_for(config)), allowlist=allowlist, workers=1)
    assert result.files_scanned > 150
    assert [(f.path, f.line, f.rule_id) for f in result.findings] == []
