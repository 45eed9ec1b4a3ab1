"""The matching engine: a multi-pattern pre-filter, then ``re`` on the candidate rules only.

Hyperscan (Vectorscan's API) compiles every rule's regex in pre-filter mode into one database
and scans a buffer once, reporting which rules *may* match; Python's ``re`` then finds and
locates the matches of those rules alone. Most buffers hold no secret, so most of the work is
Hyperscan's single pass. Where Hyperscan is not installed, a single regex of every rule's
keywords plays the pre-filter's part (slower, same results).

In a large buffer, a rule whose matches cannot span lines is confirmed only on the lines where
one of its keywords occurs (found case-blind in one lower-cased copy of the buffer): ``re`` with
``(?i)`` is slow per byte, and those lines are a small part of most files.

The compiled database is cached on disk (``$XDG_CACHE_HOME/coffer``), keyed by the rules'
content, so a pre-commit hook does not pay for compilation on every commit.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coffer.domain.errors import InvalidInput
from coffer.scanner.checksums import VERIFIERS
from coffer.scanner.filters import reject_reason
from coffer.scanner.findings import Finding
from coffer.scanner.regex_shape import can_match_newline
from coffer.scanner.rules import Rule, RuleSet

try:  # pragma: no cover - exercised by which platform runs the tests
    import hyperscan
except ImportError:  # pragma: no cover
    hyperscan = None  # type: ignore[assignment]

INLINE_IGNORE = b"coffer:ignore"
# Below this size a candidate rule runs over the whole buffer; above it, over keyword lines.
WINDOWED_FROM_BYTES = 8192
_WIDE_REPEAT = re.compile(r"(?<!\\)\{(\d+),(\d+)\}")
_WIDE = 64
_QUOTES = (b'"', b"'", b"`")


@dataclass(frozen=True, slots=True)
class _Candidate:
    rule: Rule
    start: int
    end: int
    secret: str
    verified: bool


class Engine:
    """Scans buffers with a ``RuleSet``. Safe to pickle (worker processes rebuild it cheaply).

    Raises ``InvalidInput`` naming the rule when a rule's regex cannot be compiled by the
    pre-filter.
    """

    def __init__(self, rules: RuleSet, *, cache_dir: Path | None = None) -> None:
        self.rules = rules
        self._compile_confirmers()
        self._cache_dir = cache_dir
        self._serialized: bytes | None = None
        self._database: Any = None
        self._keyword_rules: dict[bytes, list[int]] = {}
        if hyperscan is not None:
            self._serialized = _load_or_compile(rules, cache_dir)
            self._database = _load(self._serialized)
        else:
            self._build_keyword_filter()

    @property
    def prefilter(self) -> str:
        """``"hyperscan"`` or ``"keywords"``: which pre-filter this engine runs."""
        return "hyperscan" if self._database is not None else "keywords"

    def __getstate__(self) -> dict[str, Any]:
        return {"rules": self.rules, "serialized": self._serialized}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.rules = state["rules"]
        self._compile_confirmers()
        self._cache_dir = None
        self._serialized = state["serialized"]
        self._database = None
        self._keyword_rules = {}
        if self._serialized is not None and hyperscan is not None:
            self._database = _load(self._serialized)
        else:
            self._build_keyword_filter()

    def candidate_rules(self, data: bytes) -> list[int]:
        """Returns the indexes of the rules that may match ``data``, in rule order."""
        if self._database is not None:
            hits: set[int] = set()

            def on_match(rule_index: int, _start: int, _end: int, _flags: int, _ctx: Any) -> None:
                hits.add(rule_index)

            self._database.scan(data, match_event_handler=on_match)
            return sorted(hits)
        # Each keyword is looked for on its own: one alternation would report only one keyword
        # per position and miss a keyword that lies inside a longer one.
        lowered = data.lower()
        found: set[int] = set()
        for keyword, indexes in self._keyword_rules.items():
            if keyword in lowered:
                found.update(indexes)
        return sorted(found)

    def _compile_confirmers(self) -> None:
        rules = self.rules.rules
        self._patterns = [rule.compiled() for rule in rules]
        # Filled on a rule's first candidate buffer: most scans need a handful of the rules.
        self._single_line: dict[int, bool] = {}
        self._keyword_finders: dict[int, re.Pattern[bytes]] = {}

    def _windows(self, index: int, data: bytes, lowered: bytes) -> list[tuple[int, int]]:
        """Returns where rule ``index`` must be confirmed in ``data``: the keyword lines of a
        single-line rule, or the whole buffer."""
        single_line = self._single_line.get(index)
        if single_line is None:
            single_line = not can_match_newline(self.rules.rules[index].regex)
            self._single_line[index] = single_line
        if not single_line:
            return [(0, len(data))]
        finder = self._keyword_finders.get(index)
        if finder is None:
            keywords = self.rules.rules[index].keywords
            finder = re.compile(b"|".join(re.escape(k.encode("utf-8")) for k in keywords))
            self._keyword_finders[index] = finder
        return _keyword_lines(finder, lowered)

    def scan(self, data: bytes, path: str) -> list[Finding]:
        """Returns the findings in ``data`` (the content of ``path``), in order of position.

        Matches on a line holding ``coffer:ignore`` are skipped; where a provider rule and a
        generic rule match the same text, only the provider rule's finding is kept.
        """
        candidates: list[_Candidate] = []
        lowered: bytes | None = None
        whole = [(0, len(data))]
        for index in self.candidate_rules(data):
            rule, pattern = self.rules.rules[index], self._patterns[index]
            windows = whole
            if len(data) >= WINDOWED_FROM_BYTES:
                lowered = data.lower() if lowered is None else lowered
                windows = self._windows(index, data, lowered)
            for start, end in windows:
                candidates.extend(self._confirm(rule, pattern, data, path, start, end))
        if not candidates:
            return []
        return list(_locate(_deduplicate(candidates), data, path))

    def _confirm(
        self, rule: Rule, pattern: re.Pattern[bytes], data: bytes, path: str, start: int, end: int
    ) -> Iterator[_Candidate]:
        group = rule.secret_group
        verify = VERIFIERS.get(rule.checksum) if rule.checksum else None
        for match in pattern.finditer(data, start, end):
            raw = match.group(group)
            if not raw:
                continue
            secret = raw.decode("utf-8", "replace")
            begin = match.start(group)
            quoted = begin > 0 and data[begin - 1 : begin] in _QUOTES
            if reject_reason(rule, secret, path, quoted=quoted) is not None:
                continue
            verified = False
            if verify is not None:
                if not verify(secret):
                    continue
                verified = True
            yield _Candidate(rule, match.start(group), match.end(group), secret, verified)

    def _build_keyword_filter(self) -> None:
        keyword_rules: dict[bytes, list[int]] = {}
        for index, rule in enumerate(self.rules.rules):
            for keyword in rule.keywords:
                keyword_rules.setdefault(keyword.encode("utf-8"), []).append(index)
        self._keyword_rules = keyword_rules


def _keyword_lines(finder: re.Pattern[bytes], lowered: bytes) -> list[tuple[int, int]]:
    """Returns the (start, end) of each run of adjacent lines of ``lowered`` holding a
    keyword, in order, once.

    ``re`` sees the real neighbours of a window (``\b`` looks past its start), and a window
    ends where its line does, so a match found in a window is the one a whole-buffer search
    finds.
    """
    windows: list[tuple[int, int]] = []
    line_end = -1
    for hit in finder.finditer(lowered):
        position = hit.start()
        if position < line_end:
            continue
        line_start = lowered.rfind(b"\n", 0, position) + 1
        line_end = lowered.find(b"\n", position)
        if line_end == -1:
            line_end = len(lowered)
        if windows and windows[-1][1] + 1 == line_start:
            # The next line: one window of whole lines holds every match either line holds.
            windows[-1] = (windows[-1][0], line_end)
        else:
            windows.append((line_start, line_end))
    return windows


def _deduplicate(candidates: list[_Candidate]) -> list[_Candidate]:
    """Keeps one candidate per overlapping span, preferring provider rules to generic ones,
    then the rule listed first, then the longer secret. O(n log n): kept spans never overlap,
    so a candidate need only be checked against its neighbours among them."""
    order = {id(c.rule): i for i, c in enumerate(candidates)}
    ranked = sorted(
        candidates, key=lambda c: (c.rule.generic, order[id(c.rule)], -(c.end - c.start))
    )
    starts: list[int] = []
    kept: list[_Candidate] = []
    for candidate in ranked:
        at = bisect.bisect_left(starts, candidate.start)
        if at > 0 and kept[at - 1].end > candidate.start:
            continue
        if at < len(kept) and kept[at].start < candidate.end:
            continue
        starts.insert(at, candidate.start)
        kept.insert(at, candidate)
    return kept


def _locate(candidates: Iterable[_Candidate], data: bytes, path: str) -> Iterator[Finding]:
    """Yields a finding per candidate with its 1-based start and end positions, skipping those
    with ``coffer:ignore`` on any line they span."""
    line = 1
    position = 0
    for candidate in candidates:
        line += data.count(b"\n", position, candidate.start)
        position = candidate.start
        line_start = data.rfind(b"\n", 0, candidate.start) + 1
        line_end = data.find(b"\n", candidate.end)
        if INLINE_IGNORE in data[line_start : line_end if line_end != -1 else len(data)]:
            continue
        column = len(data[line_start : candidate.start].decode("utf-8", "replace")) + 1
        end_line = line + data.count(b"\n", candidate.start, candidate.end)
        last_line_start = data.rfind(b"\n", 0, candidate.end) + 1
        end_column = len(data[last_line_start : candidate.end].decode("utf-8", "replace")) + 1
        yield Finding(
            rule_id=candidate.rule.id,
            title=candidate.rule.title,
            kind=candidate.rule.kind,
            severity=candidate.rule.severity,
            path=path,
            line=line,
            column=column,
            end_column=end_column,
            secret=candidate.secret,
            verified=candidate.verified,
            end_line=end_line,
        )


def _load_or_compile(rules: RuleSet, cache_dir: Path | None) -> bytes:
    key = _cache_key(rules)
    folder = cache_dir if cache_dir is not None else _default_cache_dir()
    cached = folder / f"scanner-{key}.hsdb" if folder is not None else None
    if cached is not None and cached.is_file():
        try:
            data = cached.read_bytes()
            _load(data)
            return data
        except (OSError, hyperscan.error):
            pass  # a damaged or foreign cache file is rebuilt below
    serialized: bytes = hyperscan.dumpb(_compile(rules))
    if cached is not None:
        _write_cache(cached, serialized)
    return serialized


def _load(serialized: bytes) -> Any:
    """Returns a scannable database from ``dumpb`` bytes (a loaded database needs its own
    scratch space)."""
    database = hyperscan.loadb(serialized, hyperscan.HS_MODE_BLOCK)
    database.scratch = hyperscan.Scratch(database)
    return database


def _compile(rules: RuleSet) -> Any:
    flags = (
        hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_ALLOWEMPTY
    )
    expressions = [prefilter_expression(rule.regex).encode("utf-8") for rule in rules.rules]
    database = hyperscan.Database()
    try:
        database.compile(
            expressions=expressions,
            ids=list(range(len(expressions))),
            elements=len(expressions),
            flags=[flags] * len(expressions),
        )
    except hyperscan.error:
        for rule in rules.rules:
            _compile_one(rule, flags)
        raise
    return database


def prefilter_expression(regex: str) -> str:
    """Returns ``regex`` with every bounded repeat wider than 64 made open-ended.

    The pre-filter only has to accept a superset of the matches, and Hyperscan compiles a
    wide bounded repeat (``[\\s\\S]{64,32000}`` in a PEM rule) about ten times slower than an
    open one: 372 rules compile in under a second instead of six.
    """
    return _WIDE_REPEAT.sub(
        lambda m: f"{{{m.group(1)},}}" if int(m.group(2)) > _WIDE else m.group(0), regex
    )


def _compile_one(rule: Rule, flags: int) -> None:
    try:
        hyperscan.Database().compile(
            expressions=[prefilter_expression(rule.regex).encode("utf-8")], flags=[flags]
        )
    except hyperscan.error as exc:
        raise InvalidInput(
            f"{rule.source}: rule {rule.id!r}: the regex is not supported by the pre-filter "
            f"({exc}); keep bounded repeats small",
            field="rule.regex",
        ) from exc


def _cache_key(rules: RuleSet) -> str:
    digest = hashlib.sha256(b"v2" + getattr(hyperscan, "__version__", "").encode())
    for rule in rules.rules:
        digest.update(rule.regex.encode("utf-8") + b"\x00")
    return digest.hexdigest()[:32]


def _default_cache_dir() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coffer"


def _write_cache(target: Path, data: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(data)
        temporary.replace(target)
    except OSError:
        pass  # a cache is an optimisation: an unwritable cache directory only costs time
