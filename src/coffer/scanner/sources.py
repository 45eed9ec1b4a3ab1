"""What a scan reads: ``ScanItem`` (one file, blob or buffer) and the sources that list them.

A source returns a ``Listing``: the items to scan and ``Skipped`` notes for what it left out.
Items hold no content; their bytes are read when they are scanned (``read_file_item`` for files
and buffers, ``git_sources.BlobReader`` for git blobs), so listing a tree costs one ``stat`` per
file. This module covers directories, single files and standard input; ``git_sources`` covers
git history and staged changes.

Directory walks follow git's ignore rules: every ``.gitignore`` (its patterns relative to its own
folder, deeper files overriding shallower ones) and ``.git/info/exclude`` of the enclosing
repository. The ``.git`` folder is never entered and symbolic links are never followed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pathspec

from coffer.domain.errors import InvalidInput

DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024
BINARY_SNIFF_BYTES = 8192
STDIN_PATH = "<stdin>"

PathFilter = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file the scan left out and why: ``"binary"``, ``"larger than 10 MB"``,
    ``"unreadable: ..."``."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class ScanItem:
    """One thing to scan, without its content.

    ``path`` is the display path (POSIX, relative to the repository or as the user named it);
    ``size`` is its length in bytes. Exactly one of ``file`` (a filesystem path to read),
    ``data`` (bytes already in memory) or ``blob`` (a git object id in repository ``repo``)
    says where the bytes are. ``commit``, ``author`` and ``date`` describe the commit that
    introduced a git blob; ``added_lines``, when set, limits findings to those 1-based lines.
    """

    path: str
    size: int
    file: str | None = None
    data: bytes | None = field(default=None, repr=False)
    blob: str | None = None
    repo: str | None = None
    commit: str | None = None
    author: str | None = None
    date: str | None = None
    added_lines: frozenset[int] | None = None


@dataclass(slots=True)
class Listing:
    """The items a source found and the notes on what it skipped."""

    items: list[ScanItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def format_size(size: int) -> str:
    """Returns ``size`` bytes as people write it: ``10 MB``, ``512 KB``, ``300 bytes``
    (1 KB = 1,024 bytes)."""
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def too_large(max_file_bytes: int) -> str:
    """Returns the ``Skipped`` reason for a file over ``max_file_bytes``."""
    return f"larger than {format_size(max_file_bytes)}"


def skip_reason(data: bytes, max_file_bytes: int) -> str | None:
    """Returns why content is not scanned (too large, or binary: a NUL byte in its first
    8 KiB), or None when it is scanned."""
    if len(data) > max_file_bytes:
        return too_large(max_file_bytes)
    if b"\x00" in data[:BINARY_SNIFF_BYTES]:
        return "binary"
    return None


def read_file_item(item: ScanItem, max_file_bytes: int) -> bytes | Skipped:
    """Returns the bytes of a file or buffer item, or ``Skipped`` when it is unreadable, binary
    or over ``max_file_bytes`` (checked again here: a file may grow after it was listed)."""
    if item.data is not None:
        data = item.data
    else:
        assert item.file is not None, "read_file_item needs a file or data item"
        try:
            with open(item.file, "rb") as stream:  # noqa: PTH123 - hot path, no Path object
                data = stream.read(max_file_bytes + 1)
        except OSError as exc:
            return Skipped(item.path, f"unreadable: {exc.strerror or exc}")
    reason = skip_reason(data, max_file_bytes)
    return Skipped(item.path, reason) if reason else data


def stdin_listing(stream: BinaryIO, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Listing:
    """Returns standard input as one item named ``<stdin>`` (read now: it can be read once)."""
    data = stream.read(max_file_bytes + 1)
    if len(data) > max_file_bytes:
        return Listing(skipped=[Skipped(STDIN_PATH, too_large(max_file_bytes))])
    return Listing(items=[ScanItem(path=STDIN_PATH, size=len(data), data=data)])


def project_root(target: Path) -> Path:
    """Returns the absolute folder that display paths and the project's settings are relative
    to: the top of the git work tree holding ``target``, else ``target`` itself when it is a
    folder, else the folder holding it."""
    absolute = target.resolve()
    start = absolute if absolute.is_dir() else absolute.parent
    return _work_tree_top(start) or start


def _work_tree_top(folder: Path) -> Path | None:
    return next((f for f in (folder, *folder.parents) if (f / ".git").exists()), None)


def path_listing(
    target: Path,
    *,
    root: Path | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    skip_path: PathFilter | None = None,
) -> Listing:
    """Returns the files under folder ``target`` that git would not ignore, or ``target``
    itself when it is a file. Display paths are relative to ``root`` (default:
    ``project_root(target)``), so ``coffer scan .`` inside ``src/`` of a repository names
    ``src/app.py``; a target outside ``root`` keeps the path as given.

    Raises ``InvalidInput`` (field ``path``) when ``target`` does not exist or is neither a
    file nor a folder. Files for which ``skip_path`` (a path allow-list) is true are left out
    without a note and without being read.
    """
    if not target.exists():
        raise InvalidInput(f"{target}: no such file or directory", field="path")
    base = root.resolve() if root is not None else project_root(target)
    absolute = target.resolve()
    below = (
        _path_down(base, absolute)
        if absolute.is_relative_to(base)
        else target.as_posix().rstrip("/") + "/"
    )
    if target.is_file():
        return _single_file(target, below.rstrip("/"), max_file_bytes, skip_path)
    if not target.is_dir():
        raise InvalidInput(f"{target} is neither a file nor a folder", field="path")
    listing = Listing()
    for entry, rel in _walk(target, _enclosing_ignores(absolute), listing, below):
        display = below + rel
        if skip_path is not None and skip_path(display):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            listing.skipped.append(Skipped(display, f"unreadable: {exc.strerror or exc}"))
            continue
        _add_file(listing, entry.path, display, info, max_file_bytes)
    return listing


def _single_file(
    target: Path, display: str, max_file_bytes: int, skip_path: PathFilter | None
) -> Listing:
    listing = Listing()
    if skip_path is not None and skip_path(display):
        return listing
    try:
        info = target.stat()
    except OSError as exc:
        raise InvalidInput(f"{target}: cannot read ({exc.strerror})", field="path") from None
    _add_file(listing, str(target), display, info, max_file_bytes)
    return listing


def _add_file(
    listing: Listing, file: str, display: str, info: os.stat_result, max_file_bytes: int
) -> None:
    if info.st_size > max_file_bytes:
        listing.skipped.append(Skipped(display, too_large(max_file_bytes)))
    else:
        listing.items.append(ScanItem(path=display, size=info.st_size, file=file))


@dataclass(frozen=True, slots=True)
class _IgnoreFile:
    """The patterns of one ignore file and the folder (relative to the walk root, ``""`` for
    the root or above it) they are relative to; ``above`` is the path from that folder down to
    the walk root, for ignore files of enclosing folders."""

    base: str
    spec: pathspec.GitIgnoreSpec
    above: str = ""

    def decides(self, rel: str) -> bool | None:
        """True: ``rel`` (relative to the walk root) is ignored; False: re-included by a ``!``
        pattern; None: no pattern of this file speaks about it."""
        if self.base and not rel.startswith(self.base):
            return None
        return self.spec.check_file(self.above + rel[len(self.base) :]).include


def _ignored(rel: str, ignores: list[_IgnoreFile]) -> bool:
    verdict = False
    for ignore in ignores:
        decision = ignore.decides(rel)
        if decision is not None:
            verdict = decision
    return verdict


def _read_ignore_file(path: Path) -> pathspec.GitIgnoreSpec | None:
    try:
        lines = path.read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return None  # no ignore file here (or an unreadable one, which git also passes over)
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _enclosing_ignores(root: Path) -> list[_IgnoreFile]:
    """The ignore files that apply to ``root`` from above it: ``.git/info/exclude`` and the
    ``.gitignore`` files of the folders from the repository's top down to ``root``'s parent
    (``root``'s own ``.gitignore`` is read by the walk)."""
    absolute = root.resolve()
    top = _work_tree_top(absolute)
    if top is None:
        return []
    ignores: list[_IgnoreFile] = []
    exclude = _read_ignore_file(top / ".git" / "info" / "exclude")
    if exclude is not None:
        ignores.append(_IgnoreFile("", exclude, _path_down(top, absolute)))
    for folder in reversed(absolute.parents):
        if folder == top or top in folder.parents:
            spec = _read_ignore_file(folder / ".gitignore")
            if spec is not None:
                ignores.append(_IgnoreFile("", spec, _path_down(folder, absolute)))
    return ignores


def _path_down(folder: Path, root: Path) -> str:
    """``root`` relative to its ancestor ``folder``, with a trailing ``/`` (``""`` when equal)."""
    below = root.relative_to(folder).as_posix()
    return "" if below == "." else below + "/"


def _walk(
    root: Path, inherited: list[_IgnoreFile], listing: Listing, prefix: str
) -> Iterator[tuple[os.DirEntry[str], str]]:
    """Yields ``(entry, path relative to root)`` for every regular file git would not ignore,
    in sorted order; notes unreadable folders (their display path is ``prefix`` + the relative
    path) in ``listing.skipped``."""
    stack: list[tuple[str, str, list[_IgnoreFile]]] = [(str(root), "", inherited)]
    while stack:
        folder, rel_folder, ignores = stack.pop()
        own = _read_ignore_file(Path(folder) / ".gitignore")
        if own is not None:
            ignores = [*ignores, _IgnoreFile(rel_folder, own)]
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            note = Skipped((prefix + rel_folder).rstrip("/") or ".", f"unreadable: {exc.strerror}")
            listing.skipped.append(note)
            continue
        folders: list[tuple[str, str, list[_IgnoreFile]]] = []
        for entry in entries:
            if entry.name == ".git" or entry.is_symlink():
                continue
            rel = rel_folder + entry.name
            if entry.is_dir(follow_symlinks=False):
                if not _ignored(rel + "/", ignores):
                    folders.append((entry.path, rel + "/", ignores))
            elif entry.is_file(follow_symlinks=False) and not _ignored(rel, ignores):
                yield entry, rel
        stack.extend(reversed(folders))
