"""The secret scanner next to Betterleaks and detect-secrets, on one labelled corpus, in one run.

The corpus comes from ``tests.scanner_corpus`` (``--size-mb``, default 20; ``--seed``): files
of many kinds with every rule's fake credentials planted and decoys that are not credentials.
It is generated once and cached in the temporary folder, keyed by the size, the seed, the
rule files and the generator's source.

Each tool scans the corpus folder as a whole process, as a user runs it:

- ``coffer scan DIR --format json --no-progress`` with the default workers (one per CPU),
  and again with ``--workers 1``;
- ``betterleaks fs DIR -o report.json`` (filesystem mode: no git history; default rules);
- ``detect-secrets scan --all-files .`` in the corpus folder (a JSON baseline on stdout).

Runs are interleaved (coffer, coffer -w1, Betterleaks, coffer, ...) after one warm-up run of
each fast tool, so drift on a shared machine hits all of them; detect-secrets, about fifty
times slower, runs ``--slow-runs`` times (default 1). For each tool: the median wall time,
MB/s (corpus bytes / median wall time), the CPU seconds it used (children's user + system),
its findings, the planted secrets it found (a finding in the same file whose lines cover the
planted line, or whose secret -- text, coffer fingerprint or detect-secrets' SHA-1 -- is the
planted one), the decoys it reported, and its other findings (neither planted nor decoy
lines: false positives in filler). Then recall per kind, and the ratios of MB/s (of the
medians, and the median of the ratios of runs made in the same round).

Usage::

    .venv/bin/python bench/scan_bench.py [--size-mb 20] [--seed 8] [--runs 5] [--slow-runs 1]
                                         [--skip detect-secrets] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.scanner_corpus import Manifest, PlantedSecret, generate_corpus  # noqa: E402

from coffer.scanner.findings import fingerprint  # noqa: E402
from coffer.scanner.rules import KINDS  # noqa: E402

BIN = Path(sys.executable).parent
SECRETS_PER_MB = 100
DECOYS_PER_MB = 100


@dataclass(frozen=True)
class Hit:
    """One finding of any tool, reduced to what scoring needs."""

    path: str
    line: int
    end_line: int
    secret: str | None = None
    fingerprint: str | None = None
    sha1: str | None = None


@dataclass
class Tool:
    """A scanner as a command: ``argv(corpus, report)`` and ``parse(corpus, report, stdout)``."""

    name: str
    argv: Callable[[Path, Path], list[str]]
    parse: Callable[[Path, Path, str], list[Hit]]
    runs: int
    warmup: int = 1
    in_corpus: bool = False  # run with the corpus as the working folder
    ok_codes: tuple[int, ...] = (0,)
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)


@dataclass
class Score:
    findings: int
    found: int
    planted: int
    decoys: int
    decoy_findings: int
    other: int
    by_kind: dict[str, tuple[int, int]]


def _relative(path: str, corpus: Path) -> str:
    if path.startswith(str(corpus)):
        path = path[len(str(corpus)) :].lstrip("/")
    return path.removeprefix("./")


def parse_coffer(corpus: Path, report: Path, stdout: str) -> list[Hit]:
    """coffer's JSON report: masked secrets, so findings are matched by fingerprint."""
    document = json.loads(stdout)
    return [
        Hit(_relative(f["path"], corpus), f["line"], f["line"], fingerprint=f["fingerprint"])
        for f in document["findings"]
    ]


def parse_betterleaks(corpus: Path, report: Path, stdout: str) -> list[Hit]:
    """Betterleaks' JSON report (``findings[].location`` and ``match.value``)."""
    document = json.loads(report.read_text("utf-8"))
    findings = document["findings"] if isinstance(document, dict) else document
    return [
        Hit(
            _relative(f["location"]["path"], corpus),
            f["location"]["start_line"],
            f["location"]["end_line"],
            secret=f["match"]["value"],
        )
        for f in findings or []
    ]


def parse_detect_secrets(corpus: Path, report: Path, stdout: str) -> list[Hit]:
    """detect-secrets' baseline: a SHA-1 of each secret and its line."""
    results = json.loads(stdout)["results"]
    return [
        Hit(_relative(name, corpus), f["line_number"], f["line_number"], sha1=f["hashed_secret"])
        for name, found in results.items()
        for f in found
    ]


def tools(runs: int, slow_runs: int) -> list[Tool]:
    coffer = str(BIN / "coffer")
    return [
        Tool(
            "coffer",
            lambda corpus, _: [coffer, "scan", str(corpus), "--format", "json", "--no-progress"],
            parse_coffer,
            runs,
            ok_codes=(0, 1),
        ),
        Tool(
            "coffer --workers 1",
            lambda corpus, _: [
                *(coffer, "scan", str(corpus), "--format", "json", "--no-progress"),
                *("--workers", "1"),
            ],
            parse_coffer,
            runs,
            ok_codes=(0, 1),
        ),
        Tool(
            "Betterleaks",
            lambda corpus, report: [
                *(str(BIN / "betterleaks"), "fs", str(corpus), "-o", str(report)),
                *("--no-banner", "--no-color", "--log-level", "error", "--exit-code", "0"),
            ],
            parse_betterleaks,
            runs,
        ),
        Tool(
            "detect-secrets",
            lambda corpus, _: [str(BIN / "detect-secrets"), "scan", "--all-files", "."],
            parse_detect_secrets,
            slow_runs,
            warmup=0,
            in_corpus=True,
        ),
    ]


def prepare_corpus(size_mb: float, seed: int, cache: Path) -> tuple[Path, Manifest]:
    """Returns the cached corpus for (size, seed, rules, generator), generating it if needed."""
    digest = hashlib.sha256(f"{size_mb}/{seed}/{SECRETS_PER_MB}/{DECOYS_PER_MB}".encode())
    sources = sorted((ROOT / "src/coffer/scanner/rule_data").glob("*.toml"))
    sources += sorted((ROOT / "tests").glob("scanner_corpus*.py"))
    for source in sources:
        digest.update(source.read_bytes())
    folder = cache / f"corpus-{seed}-{size_mb:g}mb-{digest.hexdigest()[:12]}"
    manifest_path = cache / f"{folder.name}.manifest.json"
    if folder.is_dir() and manifest_path.is_file():
        return folder, Manifest.load(manifest_path)
    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    manifest = generate_corpus(
        folder,
        size_bytes=int(size_mb * 1_000_000),
        seed=seed,
        secrets_per_mb=SECRETS_PER_MB,
        decoys_per_mb=DECOYS_PER_MB,
    )
    partial = manifest_path.with_suffix(".partial")
    manifest.save(partial)
    partial.replace(manifest_path)
    print(f"generated {folder} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return folder, manifest


def run_once(tool: Tool, corpus: Path, report: Path) -> tuple[float, float, str]:
    """Runs ``tool`` once; returns (wall seconds, CPU seconds, stdout)."""
    report.unlink(missing_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        tool.argv(corpus, report),
        cwd=corpus if tool.in_corpus else None,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in tool.ok_codes:
        raise SystemExit(f"{tool.name} failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def measure(chosen: list[Tool], corpus: Path, scratch: Path) -> None:
    """Interleaved rounds: each round runs every tool that still has runs to do."""
    rounds = max(tool.warmup + tool.runs for tool in chosen)
    for number in range(rounds):
        for index, tool in enumerate(chosen):
            if number >= tool.warmup + tool.runs:
                continue
            report = scratch / f"report-{index}.json"
            wall, cpu, stdout = run_once(tool, corpus, report)
            if number < tool.warmup:
                continue
            tool.walls.append(wall)
            tool.cpus.append(cpu)
            if not tool.hits:
                tool.hits = tool.parse(corpus, report, stdout)
            print(f"  {tool.name}: {wall:.2f}s", file=sys.stderr)


def score(manifest: Manifest, hits: list[Hit]) -> Score:
    """Matches ``hits`` to the planted secrets and decoys of ``manifest``."""
    by_path: dict[str, list[Hit]] = {}
    for hit in hits:
        by_path.setdefault(hit.path, []).append(hit)

    def found(planted: PlantedSecret) -> bool:
        prints = (fingerprint(planted.secret), hashlib.sha1(planted.secret.encode()).hexdigest())  # noqa: S324
        for hit in by_path.get(planted.path, []):
            if hit.line <= planted.line <= hit.end_line:
                return True
            if hit.secret and (hit.secret in planted.secret or planted.secret in hit.secret):
                return True
            if hit.fingerprint in prints or hit.sha1 in prints:
                return True
        return False

    planted_lines = {(p.path, p.line) for p in manifest.planted}
    decoy_at: dict[tuple[str, int], int] = {}
    for number, decoy in enumerate(manifest.decoys):
        for line in range(decoy.line, decoy.end_line + 1):
            decoy_at[(decoy.path, line)] = number
    decoys_hit: set[int] = set()
    decoy_findings = other = 0
    for hit in hits:
        lines = range(hit.line, hit.end_line + 1)
        on_decoy = {decoy_at[(hit.path, n)] for n in lines if (hit.path, n) in decoy_at}
        if on_decoy:
            decoys_hit |= on_decoy
            decoy_findings += 1
        elif not any((hit.path, n) in planted_lines for n in lines):
            other += 1
    totals: Counter[str] = Counter()
    founds: Counter[str] = Counter()
    for planted in manifest.planted:
        totals[planted.kind] += 1
        founds[planted.kind] += found(planted)
    return Score(
        findings=len(hits),
        found=sum(founds.values()),
        planted=len(manifest.planted),
        decoys=len(decoys_hit),
        decoy_findings=decoy_findings,
        other=other,
        by_kind={kind: (founds[kind], totals[kind]) for kind in KINDS if totals[kind]},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=20)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slow-runs", type=int, default=1)
    parser.add_argument("--skip", action="append", default=[], help="a tool's name to leave out")
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "coffer-scan-bench"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    corpus, manifest = prepare_corpus(args.size_mb, args.seed, args.cache)
    size = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
    chosen = [tool for tool in tools(args.runs, args.slow_runs) if tool.name not in args.skip]
    with tempfile.TemporaryDirectory(prefix="scan-bench-") as scratch:
        measure(chosen, corpus, Path(scratch))
    report(manifest, size, chosen, args)


def report(manifest: Manifest, size: int, chosen: list[Tool], args: argparse.Namespace) -> None:
    megabytes = size / 1_000_000
    print(
        f"\nCorpus: {megabytes:.1f} MB, {manifest.files} files, {len(manifest.planted)} planted "
        f"secrets ({len({p.rule_id for p in manifest.planted})} rules), "
        f"{len(manifest.decoys)} decoys; seed {args.seed}\n"
    )
    print("| tool | runs | wall s (median) | MB/s | CPU s | findings | recall | decoys reported "
          "| other findings |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    figures: dict[str, dict[str, object]] = {}
    scores: dict[str, Score] = {}
    for tool in chosen:
        wall = statistics.median(tool.walls)
        cpu = statistics.median(tool.cpus)
        result = score(manifest, tool.hits)
        scores[tool.name] = result
        recall = result.found / result.planted
        print(
            f"| {tool.name} | {len(tool.walls)} | {wall:.2f} ({min(tool.walls):.2f}-"
            f"{max(tool.walls):.2f}) | {megabytes / wall:.1f} | {cpu:.1f} | {result.findings} | "
            f"{recall:.1%} ({result.found}/{result.planted}) | {result.decoys} "
            f"({result.decoy_findings} findings) | {result.other} |"
        )
        figures[tool.name] = {
            "wall_median": wall,
            "walls": tool.walls,
            "cpu_median": cpu,
            "mb_per_s": megabytes / wall,
            "findings": result.findings,
            "found": result.found,
            "planted": result.planted,
            "decoys_reported": result.decoys,
            "other_findings": result.other,
            "by_kind": result.by_kind,
        }
    names = [tool.name for tool in chosen]
    print("\nRecall per kind (found/planted):\n")
    print("| kind | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for kind in KINDS:
        cells = []
        for name in names:
            found, total = scores[name].by_kind.get(kind, (0, 0))
            cells.append(f"{found}/{total}" if total else "-")
        if any(cell != "-" for cell in cells):
            print(f"| {kind} | " + " | ".join(cells) + " |")
    rate = {name: float(str(figures[name]["mb_per_s"])) for name in names}
    walls = {tool.name: tool.walls for tool in chosen}
    print()
    for ours in ("coffer", "coffer --workers 1"):
        for theirs in ("Betterleaks", "detect-secrets"):
            if ours in rate and theirs in rate:
                # Runs of one round ran back to back: their ratio cancels the machine's drift.
                pairs = [b / a for a, b in zip(walls[ours], walls[theirs], strict=False)]
                print(
                    f"{ours} MB/s / {theirs} MB/s = {rate[ours] / rate[theirs]:.2f} "
                    f"(same-round ratios: median {statistics.median(pairs):.2f} of {len(pairs)})"
                )
    if args.json:
        args.json.write_text(json.dumps({"corpus_mb": megabytes, "tools": figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
