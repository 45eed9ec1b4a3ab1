"""What a folder scan reads and reports: git's ignore rules, skip notes for binary and huge
files, symbolic links left alone, standard input, and a result that does not depend on the
number of worker processes."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from coffer.domain.errors import InvalidInput
from coffer.scanner.engine import Engine
from coffer.scanner.findings import Finding
from coffer.scanner.rules import builtin_rules
from coffer.scanner.runner import PARALLEL_MIN_BYTES, ScanResult, Skipped, run_scan
from coffer.scanner.samples import generate
from coffer.scanner.sources import (
    Listing,
    ScanItem,
    path_listing,
    project_root,
    read_file_item,
    stdin_listing,
)

RULES = builtin_rules()
ENGINE = Engine(RULES)


def aws_key(seed: int) -> str:
    """A generated fake AWS access key id."""
    return generate(RULES.by_id("aws-access-key-id"), random.Random(seed))


def write(root: Path, relative: str, text: str | bytes) -> Path:
    """Writes ``text`` to ``root/relative``, creating folders."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def listed(listing: Listing) -> list[str]:
    """The display paths of a listing's items, sorted."""
    return sorted(item.path for item in listing.items)


def test_nested_gitignore_files_apply_relative_to_their_folder(tmp_path: Path) -> None:
    """A .gitignore ignores paths below its own folder; a deeper one can re-include with !."""
    (tmp_path / ".git").mkdir()
    write(tmp_path, ".gitignore", "*.log\nbuild/\n/only-top.txt\n")
    write(tmp_path, "sub/.gitignore", "!keep.log\nlocal.txt\n")
    for name in (
        "app.py",
        "debug.log",
        "only-top.txt",
        "local.txt",
        "build/out.py",
        "sub/keep.log",
        "sub/drop.log",
        "sub/local.txt",
        "sub/only-top.txt",
        "sub/build/x.py",
        "sub/deeper/local.txt",
    ):
        write(tmp_path, name, "x\n")
    assert listed(path_listing(tmp_path)) == [
        ".gitignore",
        "app.py",
        "local.txt",
        "sub/.gitignore",
        "sub/keep.log",
        "sub/only-top.txt",
    ]


def test_info_exclude_applies_and_the_git_folder_is_never_entered(tmp_path: Path) -> None:
    """Patterns in .git/info/exclude ignore files; nothing inside .git is listed."""
    write(tmp_path, ".git/info/exclude", "secret-notes.txt\n")
    write(tmp_path, ".git/config", f"token = {aws_key(1)}\n")
    write(tmp_path, "secret-notes.txt", "x\n")
    write(tmp_path, "docs/secret-notes.txt", "x\n")
    write(tmp_path, "main.py", "x\n")
    assert listed(path_listing(tmp_path)) == ["main.py"]


def test_a_subfolder_scan_uses_enclosing_ignores_and_repository_paths(tmp_path: Path) -> None:
    """Scanning a subfolder applies the .gitignore files above it and names files from the top
    of the repository, as git does."""
    (tmp_path / ".git").mkdir()
    write(tmp_path, ".gitignore", "*.tmp\nsrc/generated/\n")
    write(tmp_path, "src/.gitignore", "/local.py\n")
    for name in ("src/app.py", "src/cache.tmp", "src/generated/x.py", "src/local.py"):
        write(tmp_path, name, "x\n")
    write(tmp_path, "src/pkg/local.py", "x\n")
    assert project_root(tmp_path / "src") == tmp_path.resolve()
    assert listed(path_listing(tmp_path / "src")) == [
        "src/.gitignore",
        "src/app.py",
        "src/pkg/local.py",
    ]


def test_outside_a_repository_paths_are_relative_to_the_folder(tmp_path: Path) -> None:
    """Without a repository the scanned folder is the root of display paths."""
    write(tmp_path, "a/b.txt", "x\n")
    assert listed(path_listing(tmp_path / "a")) == ["b.txt"]


def test_huge_files_are_skipped_with_a_note_without_being_read(tmp_path: Path) -> None:
    """A file over the size limit is not listed but noted with the limit."""
    write(tmp_path, "big.txt", "a" * 2048)
    write(tmp_path, "small.txt", "a" * 10)
    listing = path_listing(tmp_path, max_file_bytes=1024)
    assert listed(listing) == ["small.txt"]
    assert listing.skipped == [Skipped("big.txt", "larger than 1 KB")]


def test_binary_files_are_skipped_with_a_note(tmp_path: Path) -> None:
    """A file with a NUL byte in its first 8 KiB is noted as binary and its secret ignored."""
    write(tmp_path, "image.png", b"\x89PNG\x00\x00" + aws_key(2).encode())
    write(tmp_path, "late-nul.txt", f"key = {aws_key(3)}\n".encode() + b"a" * 9000 + b"\x00")
    result = run_scan(path_listing(tmp_path), ENGINE, workers=1)
    assert result.skipped == [Skipped("image.png", "binary")]
    assert [(f.path, f.secret) for f in result.findings] == [("late-nul.txt", aws_key(3))]
    assert result.files_scanned == 1


def test_read_file_item_notes_a_file_that_vanished(tmp_path: Path) -> None:
    """A listed file that cannot be read any more becomes an ``unreadable`` note."""
    item = ScanItem(path="gone.txt", size=3, file=str(tmp_path / "gone.txt"))
    note = read_file_item(item, 1024)
    assert isinstance(note, Skipped)
    assert note.path == "gone.txt"
    assert note.reason.startswith("unreadable: ")


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    """Links to files or folders (inside or outside the scan) are neither listed nor read."""
    outside = tmp_path / "outside"
    write(outside, "creds.txt", f"aws = {aws_key(4)}\n")
    root = tmp_path / "root"
    write(root, "real.txt", "x\n")
    (root / "linked-dir").symlink_to(outside, target_is_directory=True)
    (root / "linked-file.txt").symlink_to(outside / "creds.txt")
    (root / "loop").symlink_to(root, target_is_directory=True)
    listing = path_listing(root)
    assert listed(listing) == ["real.txt"]
    assert run_scan(listing, ENGINE, workers=1).findings == []


def test_a_single_file_and_a_missing_path(tmp_path: Path) -> None:
    """A file path lists that file; a missing path is refused naming the field."""
    write(tmp_path, "one.env", f"AWS={aws_key(5)}\n")
    listing = path_listing(tmp_path / "one.env")
    assert listed(listing) == ["one.env"]
    with pytest.raises(InvalidInput) as error:
        path_listing(tmp_path / "nope")
    assert error.value.field == "path"


def test_a_path_allow_list_leaves_files_out(tmp_path: Path) -> None:
    """Files the skip predicate names are not listed (so never read) and get no note."""
    write(tmp_path, "fixtures/keys.txt", "a" * 4096)
    write(tmp_path, "app.py", "x\n")
    listing = path_listing(
        tmp_path, max_file_bytes=1024, skip_path=lambda p: p.startswith("fixtures/")
    )
    assert listed(listing) == ["app.py"]
    assert listing.skipped == []


def test_standard_input_is_one_item_named_stdin() -> None:
    """Standard input is scanned as ``<stdin>``; more than the limit is a note instead."""
    key = aws_key(6)
    result = run_scan(stdin_listing(io.BytesIO(f"x\nid={key}\n".encode())), ENGINE)
    assert [(f.path, f.line, f.secret) for f in result.findings] == [("<stdin>", 2, key)]
    big = stdin_listing(io.BytesIO(b"a" * 100), max_file_bytes=10)
    assert big.items == []
    assert big.skipped == [Skipped("<stdin>", "larger than 10 bytes")]


def test_added_lines_limit_findings() -> None:
    """An item with ``added_lines`` reports only findings on those lines."""
    old, new = aws_key(7), aws_key(8)
    data = f"a={old}\nb={new}\n".encode()
    item = ScanItem(path="c.py", size=len(data), data=data, added_lines=frozenset({2}))
    result = run_scan(Listing(items=[item]), ENGINE)
    assert [(f.line, f.secret) for f in result.findings] == [(2, new)]


class _AllowFirstKey:
    """An allow-list that accepts one secret."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def allows(self, finding: Finding) -> bool:
        return finding.secret == self.secret


def _corpus(root: Path, files: int) -> None:
    for index in range(files):
        body = "".join(f"padding line {n:05d} of a module\n" for n in range(250 + index % 7))
        write(root, f"pkg{index % 9}/mod{index}.py", f"{body}k = '{aws_key(100 + index)}'\n")


def _summary(result: ScanResult) -> list[tuple[str, int, int, str]]:
    return [(f.path, f.line, f.column, f.secret) for f in result.findings]


def test_worker_processes_give_the_same_sorted_result(tmp_path: Path) -> None:
    """Over 2 MB of files scanned by two worker processes give exactly the findings, order and
    counts of a scan in one process; progress ends at the total; the allow-list applies."""
    _corpus(tmp_path, 300)
    listing = path_listing(tmp_path)
    assert sum(item.size for item in listing.items) >= PARALLEL_MIN_BYTES
    allow = _AllowFirstKey(aws_key(100))
    calls: list[tuple[int, int]] = []
    alone = run_scan(listing, ENGINE, allowlist=allow, workers=1)
    pooled = run_scan(
        listing, ENGINE, allowlist=allow, workers=2, progress=lambda d, t: calls.append((d, t))
    )
    assert _summary(pooled) == _summary(alone)
    assert len(pooled.findings) == 299
    assert _summary(pooled) == sorted(_summary(pooled), key=lambda row: row[:3])
    assert (pooled.files_scanned, pooled.bytes_scanned) == (300, alone.bytes_scanned)
    assert calls[-1][0] == calls[-1][1] == sum(item.size for item in listing.items)
    assert len(calls) > 1
