"""The scanner on a generated, labelled corpus (``tests.scanner_corpus``): about 2 MB of files of
many kinds with fake credentials of every rule planted the ways people write them, and decoys
that are not credentials. Scanned the way ``coffer scan DIR`` scans (directory listing, worker
processes, built-in rules), on two seeds so the filters are not tuned to one corpus.

Per kind, at least 99% of the planted secrets are found on their line; no decoy line and no
filler line is reported.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from coffer.scanner.engine import Engine
from coffer.scanner.findings import Finding
from coffer.scanner.rules import KINDS, builtin_rules
from coffer.scanner.runner import run_scan
from coffer.scanner.sources import path_listing
from tests.scanner_corpus import Manifest, PlantedSecret, generate_corpus

SEEDS = (11, 2024)
CORPUS_BYTES = 2_000_000
MIN_RECALL = 0.99


@dataclass(frozen=True)
class Scanned:
    manifest: Manifest
    findings: list[Finding]


@pytest.fixture(scope="module", params=SEEDS, ids=lambda seed: f"seed{seed}")
def scanned(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Scanned:
    root = tmp_path_factory.mktemp(f"corpus{request.param}")
    manifest = generate_corpus(root, size_bytes=CORPUS_BYTES, seed=request.param)
    result = run_scan(path_listing(root, root=root), Engine(builtin_rules()))
    assert result.files_scanned == manifest.files, result.skipped[:5]
    return Scanned(manifest, result.findings)


def _found(planted: PlantedSecret, on_line: list[Finding]) -> bool:
    return any(f.secret in planted.secret or planted.secret in f.secret for f in on_line)


def _by_line(findings: list[Finding]) -> dict[tuple[str, int], list[Finding]]:
    lines: dict[tuple[str, int], list[Finding]] = defaultdict(list)
    for finding in findings:
        lines[(finding.path, finding.line)].append(finding)
    return lines


def _decoy_lines(manifest: Manifest) -> dict[tuple[str, int], str]:
    return {
        (decoy.path, line): decoy.kind
        for decoy in manifest.decoys
        for line in range(decoy.line, decoy.end_line + 1)
    }


@pytest.mark.parametrize("kind", KINDS)
def test_recall_per_kind_is_at_least_99_percent(scanned: Scanned, kind: str) -> None:
    """At least 99% of the secrets planted for each kind are reported on their own line."""
    lines = _by_line(scanned.findings)
    planted = [p for p in scanned.manifest.planted if p.kind == kind]
    missed = [p for p in planted if not _found(p, lines[(p.path, p.line)])]
    found = len(planted) - len(missed)
    assert planted, f"{kind}: nothing planted (no rule of this kind?)"
    detail = ", ".join(f"{p.rule_id} in {p.syntax} at {p.path}:{p.line}" for p in missed[:10])
    assert found >= MIN_RECALL * len(planted), (
        f"{kind}: found {found} of {len(planted)} planted; missed: {detail}"
    )


def test_no_decoy_is_reported(scanned: Scanned) -> None:
    """No finding falls on a decoy line (examples, placeholders, lookups, hashes, fixtures...)."""
    decoys = _decoy_lines(scanned.manifest)
    hits = [(decoys[(f.path, f.line)], f) for f in scanned.findings if (f.path, f.line) in decoys]
    counts = Counter(kind for kind, _ in hits)
    detail = "; ".join(
        f"{kind}: {f.rule_id} {f.masked} at {f.path}:{f.line}" for kind, f in hits[:10]
    )
    assert not hits, f"decoys reported {dict(counts)} of {len(decoys)} decoy lines: {detail}"


def test_nothing_is_reported_off_the_planted_lines(scanned: Scanned) -> None:
    """Every finding is on a line where a secret was planted or on a decoy line (counted by the
    decoy test): filler code and text produce no finding."""
    planted = {(p.path, p.line) for p in scanned.manifest.planted}
    decoys = _decoy_lines(scanned.manifest)
    stray = [f for f in scanned.findings if (f.path, f.line) not in planted | decoys.keys()]
    detail = "; ".join(f"{f.rule_id} {f.masked} at {f.path}:{f.line}" for f in stray[:10])
    assert not stray, f"{len(stray)} findings off the planted lines: {detail}"


def test_corpus_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    """Two corpora generated with one seed are the same files with the same labels."""
    first = generate_corpus(tmp_path / "a", size_bytes=200_000, seed=5)
    second = generate_corpus(tmp_path / "b", size_bytes=200_000, seed=5)
    assert first.planted == second.planted and first.decoys == second.decoys
    names = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*"))
    assert names == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*"))
    assert all(
        (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        for name in names
        if (tmp_path / "a" / name).is_file()
    )
