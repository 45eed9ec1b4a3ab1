"""Runs a scan: reads the items a source listed, scans them with an ``Engine``, drops what the
allow-list allows, and returns a ``ScanResult`` whose findings are in a stable order.

Small scans run in this process. Larger ones (``PARALLEL_MIN_BYTES`` or ``PARALLEL_MIN_FILES``)
go to a pool of worker processes: each receives the engine once (its initializer) and then
batches of items (paths and blob ids, not contents), reads them itself (files directly, git
blobs through its own ``git cat-file --batch``) and sends back findings. The result does not
depend on the number of workers.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Protocol

from coffer.scanner.engine import Engine
from coffer.scanner.findings import Finding
from coffer.scanner.git_sources import BlobReader
from coffer.scanner.sources import (
    DEFAULT_MAX_FILE_BYTES,
    Listing,
    ScanItem,
    Skipped,
    read_file_item,
    skip_reason,
)

__all__ = [
    "FindingFilter",
    "ProgressCallback",
    "ScanResult",
    "Skipped",
    "default_workers",
    "finding_order",
    "run_scan",
]

PARALLEL_MIN_BYTES = 2 * 1024 * 1024
PARALLEL_MIN_FILES = 1000
_BATCH_MIN_BYTES = 256 * 1024
_BATCH_MAX_BYTES = 8 * 1024 * 1024
_BATCH_MIN_FILES = 32
_BATCH_MAX_FILES = 400
_BATCHES_PER_WORKER = 8

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes done, bytes in all) as batches finish."""


@dataclass(frozen=True)
class ScanResult:
    """What a scan found: findings in ``finding_order``, the notes on skipped files (by path),
    how many files and bytes were scanned, and the wall time."""

    findings: list[Finding]
    skipped: list[Skipped]
    files_scanned: int
    bytes_scanned: int
    seconds: float


class FindingFilter(Protocol):
    """What ``run_scan`` needs of an allow-list (``coffer.scanner.allowlist.Allowlist``)."""

    def allows(self, finding: Finding) -> bool:
        """True when ``finding`` must not be reported."""
        ...


def default_workers() -> int:
    """The number of CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def run_scan(
    listing: Listing,
    engine: Engine,
    *,
    allowlist: FindingFilter | None = None,
    workers: int | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    progress: ProgressCallback | None = None,
) -> ScanResult:
    """Scans every item of ``listing`` and returns the ``ScanResult``.

    ``workers`` (default: the CPUs available) caps the worker processes; 1 scans in this
    process. Findings that ``allowlist`` allows are left out; items with ``added_lines``
    report findings on those lines only; findings in git blobs carry the blob's commit,
    author and date, and a secret met again at the same path in a later commit (every later
    version of a file holds it too) is reported once, at the earliest commit that has it there.
    ``listing.skipped`` and the files found binary, too large or unreadable while reading make
    up ``skipped``.
    """
    started = time.perf_counter()
    items = listing.items
    total = sum(item.size for item in items)
    count = workers if workers is not None else default_workers()
    batches = list(_batches(items, total, count))
    parallel = count > 1 and len(batches) > 1
    if parallel and (total >= PARALLEL_MIN_BYTES or len(items) >= PARALLEL_MIN_FILES):
        outcomes = _scan_in_pool(batches, engine, max_file_bytes, count, total, progress)
    else:
        outcomes = _scan_here(batches, engine, max_file_bytes, total, progress)
    findings: list[Finding] = []
    skipped = list(listing.skipped)
    files = scanned_bytes = 0
    for outcome in outcomes:
        findings.extend(f for f in outcome.findings if allowlist is None or not allowlist.allows(f))
        skipped.extend(outcome.skipped)
        files += outcome.files
        scanned_bytes += outcome.bytes
    findings = _first_commit_only(findings, items)
    findings.sort(key=finding_order)
    skipped.sort(key=lambda note: (note.path, note.reason))
    return ScanResult(
        findings=findings,
        skipped=skipped,
        files_scanned=files,
        bytes_scanned=scanned_bytes,
        seconds=time.perf_counter() - started,
    )


def finding_order(finding: Finding) -> tuple[str, int, int, int, int, str, str, str]:
    """The key findings are reported in: path, line, column, end line, end column, commit,
    rule id, then fingerprint, so that no two different findings tie and the same scan always
    renders the same report."""
    return (
        finding.path,
        finding.line,
        finding.column,
        finding.end_line,
        finding.end_column,
        finding.commit or "",
        finding.rule_id,
        finding.fingerprint,
    )


def _first_commit_only(findings: list[Finding], items: Sequence[ScanItem]) -> list[Finding]:
    """Drops history findings whose secret already shows at the same path in an earlier
    commit. Commits are ranked by where their first item is in ``items`` (a history listing
    is oldest first, parents before children); findings without a commit are all kept."""
    rank: dict[str, int] = {}
    for position, item in enumerate(items):
        if item.commit is not None:
            rank.setdefault(item.commit, position)
    if not rank:
        return findings
    first: dict[tuple[str, str], int] = {}
    for finding in findings:
        if finding.commit is not None:
            key, place = (finding.path, finding.secret), rank[finding.commit]
            first[key] = min(first.get(key, place), place)
    return [f for f in findings if f.commit is None or rank[f.commit] == first[(f.path, f.secret)]]


@dataclass
class _Outcome:
    """What one batch gave: findings (not yet allow-listed), skip notes, files and bytes
    scanned, and the listed size of the batch (for progress)."""

    findings: list[Finding] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    listed: int = 0


def _batches(items: Sequence[ScanItem], total: int, workers: int) -> Iterator[list[ScanItem]]:
    """Splits ``items`` in order into about ``workers * 8`` batches (of bounded bytes and
    files), so that workers stay busy to the end and messages stay few."""
    parts = workers * _BATCHES_PER_WORKER
    target = min(max(total // parts, _BATCH_MIN_BYTES), _BATCH_MAX_BYTES)
    most_files = min(max(len(items) // parts, _BATCH_MIN_FILES), _BATCH_MAX_FILES)
    batch: list[ScanItem] = []
    size = 0
    for item in items:
        batch.append(item)
        size += item.size
        if size >= target or len(batch) >= most_files:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class _BatchScanner:
    """Reads and scans batches of items with one engine; holds a ``BlobReader`` per repository."""

    def __init__(self, engine: Engine, max_file_bytes: int) -> None:
        self.engine = engine
        self.max_file_bytes = max_file_bytes
        self._readers: dict[str, BlobReader] = {}

    def close(self) -> None:
        """Ends the ``git cat-file`` processes this scanner started."""
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def scan_batch(self, batch: Sequence[ScanItem]) -> _Outcome:
        """Scans each item of ``batch``; unreadable, binary or oversized ones become notes."""
        outcome = _Outcome(listed=sum(item.size for item in batch))
        for item in batch:
            content = self._read(item)
            if isinstance(content, Skipped):
                outcome.skipped.append(content)
                continue
            outcome.files += 1
            outcome.bytes += len(content)
            outcome.findings.extend(self._findings(item, content))
        return outcome

    def _read(self, item: ScanItem) -> bytes | Skipped:
        if item.blob is None:
            return read_file_item(item, self.max_file_bytes)
        assert item.repo is not None, "a blob item names its repository"
        reader = self._readers.get(item.repo)
        if reader is None:
            reader = self._readers[item.repo] = BlobReader(item.repo)
        data = reader.read(item.blob)
        if data is None:
            return Skipped(item.path, f"unreadable: git object {item.blob} is missing")
        reason = skip_reason(data, self.max_file_bytes)
        return Skipped(item.path, reason) if reason else data

    def _findings(self, item: ScanItem, content: bytes) -> list[Finding]:
        found = self.engine.scan(content, item.path)
        if item.added_lines is not None:
            found = [finding for finding in found if finding.line in item.added_lines]
        if item.commit is not None:
            found = [
                dataclasses.replace(f, commit=item.commit, author=item.author, date=item.date)
                for f in found
            ]
        return found


def _scan_here(
    batches: list[list[ScanItem]],
    engine: Engine,
    max_file_bytes: int,
    total: int,
    progress: ProgressCallback | None,
) -> list[_Outcome]:
    scanner = _BatchScanner(engine, max_file_bytes)
    outcomes: list[_Outcome] = []
    done = 0
    try:
        for batch in batches:
            outcomes.append(scanner.scan_batch(batch))
            done += outcomes[-1].listed
            if progress is not None:
                progress(done, total)
    finally:
        scanner.close()
    return outcomes


# The scanner of a worker process, set once by the pool's initializer. Its ``git cat-file``
# children end by themselves when the worker exits and their standard input closes.
_worker_scanner: _BatchScanner | None = None


def _start_worker(engine: Engine, max_file_bytes: int) -> None:
    global _worker_scanner
    _worker_scanner = _BatchScanner(engine, max_file_bytes)


def _scan_in_worker(batch: list[ScanItem]) -> _Outcome:
    assert _worker_scanner is not None, "the pool initializer sets the worker's scanner"
    return _worker_scanner.scan_batch(batch)


def _scan_in_pool(
    batches: list[list[ScanItem]],
    engine: Engine,
    max_file_bytes: int,
    workers: int,
    total: int,
    progress: ProgressCallback | None,
) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    done = 0
    with ProcessPoolExecutor(
        max_workers=min(workers, len(batches)),
        initializer=_start_worker,
        initargs=(engine, max_file_bytes),
    ) as pool:
        futures: list[Future[_Outcome]] = [pool.submit(_scan_in_worker, b) for b in batches]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            done += outcome.listed
            if progress is not None:
                progress(done, total)
    return outcomes
