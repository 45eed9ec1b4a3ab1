"""Git sources: a repository's whole history (``--git``) and its staged changes (``--staged``).

History lists every blob reachable from any ref once, named by the first commit (oldest first,
parents before children) whose diff brings it in: that commit, its author and date, and the path
it had there. Staged changes list the index content of added and modified files with the
numbers of their added lines, so that a pre-commit hook reports only what the commit adds.

Contents are read later, through ``BlobReader``: one ``git cat-file --batch`` process per
repository and scanning process. Git is run as a program (no library), with the caller's
environment, so that ``GIT_INDEX_FILE`` set by ``git commit`` for a hook is honoured.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from coffer.domain.errors import InvalidInput
from coffer.scanner.sources import (
    DEFAULT_MAX_FILE_BYTES,
    Listing,
    PathFilter,
    ScanItem,
    Skipped,
    too_large,
)

_NO_OBJECT = "0" * 40
_SKIPPED_MODES = ("160000", "120000")  # submodule commits and symbolic links hold no file text
_HEADER = "\x01"
_LOG_FORMAT = f"--format={_HEADER}%H%x00%an <%ae>%x00%aI"
_HUNK = re.compile(rb"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")
_C_ESCAPES = {b"a": 7, b"b": 8, b"t": 9, b"n": 10, b"v": 11, b"f": 12, b"r": 13}


def run_git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """Returns the standard output of ``git -C repo ARGS``; raises ``InvalidInput`` (field
    ``path``) with git's own message when git fails or is not installed."""
    try:
        completed = subprocess.run(
            ["git", "-C", str(repo), "-c", "core.quotePath=false", *args],
            input=stdin,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise InvalidInput(
            "git is not installed (needed by --git and --staged)", field="path"
        ) from None
    if completed.returncode != 0:
        message = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = message[0] if message else f"exit status {completed.returncode}"
        raise InvalidInput(f"{repo}: git {args[0]} failed: {reason}", field="path")
    return completed.stdout


def repository_root(repo: Path) -> Path:
    """Returns the top of the work tree holding ``repo`` (the git folder of a bare repository);
    raises ``InvalidInput`` when ``repo`` is not in a git repository."""
    bare = run_git(repo, "rev-parse", "--is-bare-repository").strip() == b"true"
    top = run_git(repo, "rev-parse", "--absolute-git-dir" if bare else "--show-toplevel")
    return Path(top.decode("utf-8", "surrogateescape").rstrip("\n"))


def history_listing(
    repo: Path,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    skip_path: PathFilter | None = None,
) -> Listing:
    """Returns every blob in the history of all refs of ``repo``, each once, with the commit
    that introduced it. Raises ``InvalidInput`` when ``repo`` is not a git repository."""
    run_git(repo, "rev-parse", "--git-dir")
    introduced, not_files = _introducing_commits(repo)
    sizes, paths = _reachable_blobs(repo)
    origins = [(oid, *origin) for oid, origin in introduced.items() if oid in sizes]
    # Blobs no commit diff brings in (a tag pointing at a tree or a blob): named by rev-list.
    # Symbolic link targets the log saw are not file text and stay out here too.
    origins += [
        (oid, path, None, None, None)
        for oid, path in paths.items()
        if oid not in introduced and oid not in not_files
    ]
    listing = Listing()
    for oid, path, commit, author, date in origins:
        if skip_path is not None and skip_path(path):
            continue
        size = sizes[oid]
        if size > max_file_bytes:
            listing.skipped.append(Skipped(path, too_large(max_file_bytes)))
            continue
        listing.items.append(
            ScanItem(
                path=path,
                size=size,
                blob=oid,
                repo=str(repo),
                commit=commit,
                author=author,
                date=date,
            )
        )
    return listing


def _introducing_commits(
    repo: Path,
) -> tuple[dict[str, tuple[str, str | None, str | None, str | None]], set[str]]:
    """Maps each blob id to (path, commit, author, date) of the first commit whose diff adds it
    (a merge counts against its first parent, so a conflict resolution is its own origin), and
    returns the ids of the blobs the log saw as symbolic links (not file text).

    Options that user settings could otherwise turn on are turned off: signatures
    (``log.showSignature`` puts gpg's words among the commits), colour, external diff drivers
    and relative paths; renames are not followed (each blob is named by the path it came in
    at, and a renamed blob is the same blob)."""
    output = run_git(
        repo,
        "log",
        "--all",
        "--topo-order",
        "--reverse",
        "--raw",
        "--no-abbrev",
        "--no-renames",
        "--no-ext-diff",
        "--no-show-signature",
        "--no-color",
        "--no-relative",
        "--diff-merges=first-parent",
        "-z",
        _LOG_FORMAT,
    )
    introduced: dict[str, tuple[str, str | None, str | None, str | None]] = {}
    not_files: set[str] = set()
    tokens = iter(output.split(b"\x00"))
    commit = author = date = None
    for token in tokens:
        if token.startswith(_HEADER.encode()):
            commit = token[1:].decode("ascii")
            author = next(tokens).decode("utf-8", "replace")
            date = next(tokens).decode("ascii")
        elif token.lstrip(b"\n").startswith(b":"):
            path = next(tokens).decode("utf-8", "replace")
            fields = token.lstrip(b"\n")[1:].decode("ascii").split()
            mode, oid = fields[1], fields[3]
            if oid == _NO_OBJECT:
                continue
            if mode in _SKIPPED_MODES:
                not_files.add(oid)
            elif oid not in introduced:
                introduced[oid] = (path, commit, author, date)
    return introduced, not_files


def _reachable_blobs(repo: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Returns (size of every blob reachable from a ref, path of those the log does not
    name), from ``rev-list --objects --all`` fed to ``cat-file --batch-check``."""
    objects = run_git(repo, "rev-list", "--objects", "--all")
    checked = run_git(
        repo,
        "cat-file",
        "--batch-check=%(objectname) %(objecttype) %(objectsize) %(rest)",
        stdin=objects,
    )
    sizes: dict[str, int] = {}
    paths: dict[str, str] = {}
    for line in checked.splitlines():
        oid, kind, size, *rest = line.decode("utf-8", "replace").split(" ", 3)
        if kind == "blob":
            sizes[oid] = int(size)
            paths[oid] = rest[0] if rest else oid
    return sizes, paths


def staged_listing(
    repo: Path,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    skip_path: PathFilter | None = None,
) -> Listing:
    """Returns the index content of files added, modified or renamed in the index of ``repo``
    (paths relative to the work tree's top, a renamed file under its new name), each limited
    to its added lines. A file renamed without changes adds no lines and is not listed.
    Raises ``InvalidInput`` when ``repo`` is not a git work tree."""
    run_git(repo, "rev-parse", "--show-toplevel")
    common = ("-M", "--no-ext-diff", "--no-relative", "--no-color", "--diff-filter=AMTR")
    raw = run_git(repo, "diff", "--cached", "--raw", "-z", "--no-abbrev", *common)
    staged = _parse_raw(raw)
    if not staged:
        return Listing()
    patch = run_git(
        repo,
        "diff",
        "--cached",
        "-U0",
        "--no-textconv",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        *common,
    )
    added = _added_lines(patch)
    sizes = _blob_sizes(repo, [oid for oid, _ in staged])
    listing = Listing()
    for oid, path in staged:
        if skip_path is not None and skip_path(path):
            continue
        if sizes[oid] > max_file_bytes:
            listing.skipped.append(Skipped(path, too_large(max_file_bytes)))
            continue
        lines = added.get(path, frozenset())
        if lines:
            listing.items.append(
                ScanItem(path=path, size=sizes[oid], blob=oid, repo=str(repo), added_lines=lines)
            )
    return listing


def _parse_raw(raw: bytes) -> list[tuple[str, str]]:
    """(blob id, path) of each ``--raw -z`` entry whose new side is a regular file; a rename
    or copy entry (status ``R`` or ``C``, followed by two paths) gives its new path."""
    tokens = iter(raw.split(b"\x00"))
    entries: list[tuple[str, str]] = []
    for meta in tokens:
        if not meta.startswith(b":"):
            continue
        fields = meta[1:].decode("ascii").split()
        path = next(tokens, b"")
        if fields[4][:1] in ("R", "C"):
            path = next(tokens, b"")
        if fields[1] not in _SKIPPED_MODES and fields[3] != _NO_OBJECT:
            entries.append((fields[3], path.decode("utf-8", "replace")))
    return entries


def _added_lines(patch: bytes) -> dict[str, frozenset[int]]:
    """Maps each path of a ``-U0`` patch to the numbers of its added lines (new side).

    File names are read only from a file's header (from ``diff --git`` to its first hunk):
    inside a hunk, an added line that starts with ``++ `` shows as ``+++ `` and is content."""
    added: dict[str, set[int]] = {}
    current: set[int] | None = None
    in_header = False
    for line in patch.split(b"\n"):
        if line.startswith(b"diff --git "):
            current, in_header = None, True
        elif in_header and line.startswith(b"+++ "):
            name = _unquote(line[4:].rstrip(b"\t"))
            current = None if name == b"/dev/null" else added.setdefault(_new_path(name), set())
        elif line.startswith(b"@@"):
            in_header = False
            if current is not None and (hunk := _HUNK.match(line)):
                start, count = int(hunk.group(1)), int(hunk.group(2) or 1)
                current.update(range(start, start + count))
    return {path: frozenset(lines) for path, lines in added.items()}


def _new_path(name: bytes) -> str:
    return name.removeprefix(b"b/").decode("utf-8", "replace")


def _unquote(name: bytes) -> bytes:
    """Undoes git's C-style quoting of a path (``"a\\tb"``, octal escapes for other bytes)."""
    if not (name.startswith(b'"') and name.endswith(b'"') and len(name) >= 2):
        return name
    body, out, index = name[1:-1], bytearray(), 0
    while index < len(body):
        char = body[index : index + 1]
        if char != b"\\":
            out += char
            index += 1
            continue
        escape = body[index + 1 : index + 2]
        if escape.isdigit():
            out.append(int(body[index + 1 : index + 4], 8))
            index += 4
        else:
            out.append(_C_ESCAPES.get(escape, escape[0] if escape else 92))
            index += 2
    return bytes(out)


def _blob_sizes(repo: Path, oids: Sequence[str]) -> dict[str, int]:
    checked = run_git(
        repo,
        "cat-file",
        "--batch-check=%(objectname) %(objectsize)",
        stdin="".join(f"{oid}\n" for oid in oids).encode("ascii"),
    )
    sizes: dict[str, int] = {}
    for line in checked.decode("ascii").splitlines():
        oid, size = line.split()
        sizes[oid] = int(size)
    return sizes


class BlobReader:
    """Reads blobs of one repository through a single ``git cat-file --batch`` process,
    started on first use; ``close`` (or leaving a ``with`` block) ends it."""

    def __init__(self, repo: str) -> None:
        self._repo = repo
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def read(self, oid: str) -> bytes | None:
        """Returns the content of blob ``oid``, or None when the repository does not have it."""
        process = self._start()
        stdin, stdout = _pipes(process)
        stdin.write(oid.encode("ascii") + b"\n")
        stdin.flush()
        header = stdout.readline().split()
        if len(header) != 3:
            return None  # "<oid> missing" (or an ambiguous name): nothing to read
        size = int(header[2])
        data = stdout.read(size)
        stdout.read(1)  # the newline that ends each object
        return data

    def close(self) -> None:
        """Ends the ``cat-file`` process, if one was started."""
        if self._process is None:
            return
        process, self._process = self._process, None
        stdin, _ = _pipes(process)
        stdin.close()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            self._process = subprocess.Popen(
                ["git", "-C", self._repo, "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        return self._process


def _pipes(process: subprocess.Popen[bytes]) -> tuple[IO[bytes], IO[bytes]]:
    assert process.stdin is not None and process.stdout is not None
    return process.stdin, process.stdout
