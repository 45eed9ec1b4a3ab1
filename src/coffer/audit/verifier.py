"""Checks a stream of sealed entries against signed checkpoints and names the first bad one.

The same engine checks a live database and an exported file. Entries arrive in the order
they are stored (by leaf index); each is hashed and appended to a Merkle frontier, and each
checkpoint's root is compared when the frontier reaches its size. It catches:

- a changed entry (its content no longer hashes to its recorded leaf, or the root differs),
- a deleted entry (a gap in the indexes), an inserted or reordered one (an index out of
  order, or a root that differs),
- a truncated tail (the log ends before the last checkpoint's size),
- an edited, forged, removed or replayed checkpoint (bad signature, a gap or a step back in
  checkpoint numbers, or a checkpoint older than one seen before).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from coffer.audit.checkpoints import Checkpoint
from coffer.crypto.audit_keys import AuditPublicKey
from coffer.crypto.merkle import Frontier, leaf_hash

_MAX_PROBLEMS = 20

# (first index, stop index) -> a problem naming the bad entry in that range, or None.
Diagnose = Callable[[int, int], "Problem | None"]


@dataclass(frozen=True)
class Problem:
    """One thing that does not verify. ``index``/``entry_id`` name the entry when known."""

    kind: str
    message: str
    index: int | None = None
    entry_id: str | None = None

    def to_json(self) -> dict[str, object]:
        """The problem as a JSON object."""
        return {
            "kind": self.kind,
            "message": self.message,
            "index": self.index,
            "entry_id": self.entry_id,
        }


@dataclass
class VerifyReport:
    """The outcome: ``ok`` only when nothing failed."""

    entries: int = 0
    checkpoints: int = 0
    start_index: int = 0
    tree_size: int = 0
    latest: Checkpoint | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every entry and checkpoint verified."""
        return not self.problems

    def first_problem(self) -> Problem | None:
        """The first problem: the earliest entry named, else the earliest position, else
        the first found."""
        for candidates in (
            [p for p in self.problems if p.entry_id is not None and p.index is not None],
            [p for p in self.problems if p.index is not None],
        ):
            if candidates:
                return min(candidates, key=lambda p: p.index or 0)
        return self.problems[0] if self.problems else None

    def to_json(self) -> dict[str, object]:
        """The report as a JSON object."""
        first = self.first_problem()
        return {
            "ok": self.ok,
            "entries_checked": self.entries,
            "checkpoints_checked": self.checkpoints,
            "start_index": self.start_index,
            "tree_size": self.tree_size,
            "latest_checkpoint": self.latest.to_json() if self.latest else None,
            "first_problem": first.to_json() if first else None,
            "problems": [p.to_json() for p in self.problems],
        }


class LogVerifier:
    """Feed checkpoints and entries in stored order, then call ``finish``."""

    def __init__(
        self,
        public_key: AuditPublicKey,
        *,
        start_index: int = 0,
        start_frontier: Frontier | None = None,
        diagnose: Diagnose | None = None,
    ) -> None:
        self._key = public_key
        self._frontier = start_frontier.copy() if start_frontier else Frontier()
        if self._frontier.size != start_index:
            raise ValueError("the start frontier must have start_index leaves")
        self._diagnose = diagnose
        self._report = VerifyReport(start_index=start_index)
        self._pending: dict[int, list[Checkpoint]] = {}
        self._last: Checkpoint | None = None
        self._broken = False  # after a gap or reorder, later roots cannot match
        self._range_start = start_index
        self._range_named = False  # a bad entry was already named in the current range
        self._last_id: str | None = None
        self._watched: Checkpoint | None = None

    @property
    def size(self) -> int:
        """The number of leaves seen so far (including the pruned prefix)."""
        return self._frontier.size

    def problem(self, problem: Problem) -> None:
        """Records a problem found outside the engine (by a reader of a file or database)."""
        if len(self._report.problems) < _MAX_PROBLEMS:
            self._report.problems.append(problem)

    def watch(self, known: Checkpoint) -> None:
        """Checks, when the entries reach its size, that the tree still has the root of
        ``known`` (a checkpoint seen earlier): a log restored from an older copy that has
        grown again since cannot pass for the one that was seen."""
        if known.signature_valid(self._key) and known.tree_size > self._frontier.size:
            self._watched = known

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Checks a checkpoint's signature and its place after the previous one; its root is
        compared when the entries reach its size."""
        if not checkpoint.signature_valid(self._key):
            other = checkpoint.key_id != self._key.key_id
            self.problem(
                Problem(
                    "checkpoint_signature",
                    f"checkpoint #{checkpoint.seq} (size {checkpoint.tree_size}) "
                    + (
                        f"is signed by another key ({checkpoint.key_id})"
                        if other
                        else "has a signature that does not verify: it was edited or forged"
                    ),
                )
            )
            return
        self._report.checkpoints += 1
        previous = self._last
        if previous is not None:
            if checkpoint.seq <= previous.seq:
                self.problem(
                    Problem(
                        "checkpoint_replayed",
                        f"checkpoint #{checkpoint.seq} appears after #{previous.seq}: "
                        "an old checkpoint was replayed or checkpoints were reordered",
                    )
                )
                return
            if checkpoint.tree_size < previous.tree_size:
                self.problem(
                    Problem(
                        "checkpoint_replayed",
                        f"checkpoint #{checkpoint.seq} covers {checkpoint.tree_size} entries, "
                        f"fewer than #{previous.seq} ({previous.tree_size})",
                    )
                )
                return
            if checkpoint.seq != previous.seq + 1:
                self.problem(
                    Problem(
                        "checkpoint_missing",
                        f"checkpoints #{previous.seq + 1} to #{checkpoint.seq - 1} are missing",
                    )
                )
        self._last = checkpoint
        self._report.latest = checkpoint
        if checkpoint.tree_size < self._report.start_index:
            return  # history before the pruned prefix: its entries are gone
        if checkpoint.tree_size < self._frontier.size:
            self.problem(
                Problem(
                    "checkpoint_out_of_place",
                    f"checkpoint #{checkpoint.seq} (size {checkpoint.tree_size}) appears after "
                    f"entry #{self._frontier.size - 1}: it was moved",
                )
            )
            return
        self._pending.setdefault(checkpoint.tree_size, []).append(checkpoint)
        self._check_roots()

    def add_entry(
        self,
        index: int | None,
        entry_id: str,
        canonical: bytes | None,
        recorded_leaf: bytes | None,
    ) -> None:
        """Checks one entry: ``canonical`` are its canonical bytes (with its index),
        ``recorded_leaf`` the leaf hash stored or exported with it (if any). A redacted
        entry has no canonical bytes: its recorded leaf stands in for it."""
        expected = self._frontier.size
        self._report.entries += 1
        if index != expected and not self._broken:
            self._broken = True
            if index is None or index < expected:
                self.problem(
                    Problem(
                        "entry_out_of_order",
                        f"entry #{expected} should come next but entry {entry_id} says "
                        f"#{index}: an entry was inserted or the entries were reordered",
                        expected,
                        entry_id,
                    )
                )
            else:
                after = f" after entry {self._last_id}" if self._last_id else ""
                missing = (
                    f"entry #{expected} is" if index == expected + 1 else
                    f"entries #{expected} to #{index - 1} are"
                )  # fmt: skip
                self.problem(
                    Problem(
                        "entry_missing",
                        f"{missing} missing{after}: deleted or moved (the next entry here is "
                        f"{entry_id} at #{index})",
                        expected,
                        None,
                    )
                )
        if canonical is None:
            if recorded_leaf is None:
                raise ValueError("a redacted entry needs its leaf hash")
            leaf = recorded_leaf
        else:
            leaf = leaf_hash(canonical)
        if recorded_leaf is not None and recorded_leaf != leaf:
            self._name_earlier_forgery(expected)
            self._range_named = True
            self.problem(
                Problem(
                    "entry_changed",
                    f"entry #{expected} ({entry_id}) was changed after it was sealed: its "
                    "content no longer matches its leaf hash",
                    expected,
                    entry_id,
                )
            )
        self._frontier.append(leaf)
        self._last_id = entry_id
        if self._pending:
            self._check_roots()
        watched = self._watched
        if watched is not None and self._frontier.size == watched.tree_size:
            self._watched = None
            if self._frontier.root() != watched.root_hash and not self._broken:
                self.problem(
                    Problem(
                        "forked",
                        f"the first {watched.tree_size} entries no longer hash to checkpoint "
                        f"#{watched.seq} seen before: the log was replaced by another copy "
                        "(restored from an older backup, or forked)",
                    )
                )

    def _name_earlier_forgery(self, index: int) -> None:
        """Before the first changed entry of a range is reported, looks (by MAC, when the
        reader can) for an earlier entry of the range that was forged with a correct leaf
        hash: an insertion shifts the entries after it, and the first one to show is not
        the culprit."""
        if self._diagnose is None or self._range_named or index == self._range_start:
            return
        found = self._diagnose(self._range_start, index)
        if found is not None:
            self.problem(found)

    def _check_roots(self) -> None:
        size = self._frontier.size
        for checkpoint in self._pending.pop(size, []):
            if self._broken:
                continue
            if self._frontier.root() == checkpoint.root_hash:
                self._range_start = size
                continue
            self._broken = True
            if self._range_named:
                continue  # the bad entry is already named; the root differs because of it
            found = self._diagnose(self._range_start, size) if self._diagnose else None
            self.problem(
                found
                or Problem(
                    "root_mismatch",
                    f"entries #{self._range_start} to #{size - 1} do not match signed "
                    f"checkpoint #{checkpoint.seq}: one of them was changed, inserted or "
                    "removed",
                    self._range_start,
                    None,
                )
            )

    def finish(
        self, *, known: Checkpoint | None = None, final: Checkpoint | None = None
    ) -> VerifyReport:
        """Ends the stream: checks the tail against ``final`` (the checkpoint the log must
        end at, such as an export header's) or else the last checkpoint seen and, when
        ``known`` (a checkpoint seen earlier, e.g. by an auditor) is given, that the log
        has not been rolled back behind it. Returns the report."""
        report = self._report
        report.tree_size = self._frontier.size
        last = final or self._last
        if last is None and report.tree_size > report.start_index:
            self.problem(Problem("no_checkpoint", "no valid signed checkpoint covers the log"))
        if last is not None and report.tree_size < last.tree_size:
            self.problem(
                Problem(
                    "truncated",
                    f"the log ends at entry #{report.tree_size - 1} but checkpoint #{last.seq} "
                    f"covers {last.tree_size} entries: entries #{report.tree_size} to "
                    f"#{last.tree_size - 1} were removed (truncated)",
                    report.tree_size,
                    None,
                )
            )
        rolled_back = known is not None and self._check_known(known, last)
        if last is not None and report.tree_size > last.tree_size and not rolled_back:
            self.problem(
                Problem(
                    "beyond_checkpoint",
                    f"entries from #{last.tree_size} on are not covered by any signed "
                    "checkpoint: they were added afterwards",
                    last.tree_size,
                    None,
                )
            )
        return report

    def _check_known(self, known: Checkpoint, last: Checkpoint | None) -> bool:
        """Reports a log that fell behind ``known``; returns True when it did."""
        if not known.signature_valid(self._key):
            self.problem(Problem("witness", "the remembered checkpoint's signature is invalid"))
            return False
        if last is None or last.seq < known.seq or last.tree_size < known.tree_size:
            shown = f"#{last.seq} (size {last.tree_size})" if last else "none"
            vouched = min(self._report.tree_size, last.tree_size if last else 0)
            self.problem(
                Problem(
                    "rolled_back",
                    f"checkpoint #{known.seq} (size {known.tree_size}) was seen before, but "
                    f"the latest here is {shown}: the log was truncated or an old "
                    f"checkpoint replayed; nothing from entry #{vouched} on is vouched for",
                    vouched,
                    None,
                )
            )
            return True
        if last.seq == known.seq and last.root_hash != known.root_hash:
            self.problem(
                Problem(
                    "forked",
                    f"checkpoint #{known.seq} differs from the one seen before: the log forked",
                )
            )
        return False
