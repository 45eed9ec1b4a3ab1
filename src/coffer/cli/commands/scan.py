"""``coffer scan``: find secrets in a folder, a file, git history, staged changes or stdin.

Exit codes: 0 nothing reported, 1 findings reported, 2 an error (a bad option or settings
file, a git failure, an unreadable path, the vault unreachable with ``--match-vault``, or an
internal error). The report shows secrets masked; their plaintext is never printed or written.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer
from typer.exceptions import TyperException

from coffer.domain.errors import CofferError, InvalidInput

if TYPE_CHECKING:
    from coffer.scanner.allowlist import Allowlist
    from coffer.scanner.rules import RuleSet
    from coffer.scanner.runner import ProgressCallback, ScanResult
    from coffer.scanner.sources import Listing
    from coffer.scanner.vault_link import VaultMatch

P = ParamSpec("P")
R = TypeVar("R")

FORMATS = ("text", "json", "sarif")
CLEAN, FOUND, ERROR = 0, 1, 2


def _scan_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Every coffer error of a scan (bad input, git, settings, vault) is ``error [field]: ...``
    on stderr and exit code 2, so that hooks and CI tell errors from findings (exit 1).

    This is the command's outermost edge, so anything else that goes wrong (a crashed worker
    pool, an error of the regex library) is ``error: internal error (<type>)`` and exit code 2
    too, never a traceback and an exit code that reads as "secrets found". The exception's
    message is not shown: it could quote scanned text."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except CofferError as exc:
            field = f" [{exc.field}]" if exc.field else ""
            sys.stderr.write(f"error{field}: {exc.message}\n")
            raise typer.Exit(ERROR) from None
        except (typer.Exit, typer.Abort, TyperException):
            raise  # typer's own ways out: an exit code, Ctrl-C, a usage error
        except Exception as exc:  # noqa: BLE001 - the outermost edge of `coffer scan`
            sys.stderr.write(f"error: internal error ({type(exc).__name__})\n")
            raise typer.Exit(ERROR) from None

    return wrapper


@_scan_errors
def scan(
    path: Annotated[
        str,
        typer.Argument(
            help="Folder or file to scan; - reads standard input; with --git or --staged, "
            "a folder of the repository.",
        ),
    ] = ".",
    git: Annotated[bool, typer.Option("--git", help="Scan the whole git history.")] = False,
    staged: Annotated[
        bool, typer.Option("--staged", help="Scan the lines staged for commit (pre-commit).")
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="text, json or sarif.")] = "text",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Settings file (default: .coffer-scan.toml at the root)."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="Do not report findings whose fingerprint is listed."),
    ] = None,
    update_baseline: Annotated[
        Path | None,
        typer.Option(
            "--update-baseline", help="Add every current finding to this baseline; exit 0."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Worker processes (default: one per CPU).")
    ] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Never show a progress bar.")
    ] = False,
    max_file_size: Annotated[
        str | None,
        typer.Option("--max-file-size", help="Skip larger files, e.g. 512KB or 10MB."),
    ] = None,
    match_vault: Annotated[
        bool,
        typer.Option("--match-vault", help="Name the vault secrets that findings match."),
    ] = False,
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="With --match-vault: compare this project only."),
    ] = None,
) -> None:
    """Find secrets (API keys, tokens, private keys, passwords) in code."""
    from coffer.scanner.allowlist import Allowlist
    from coffer.scanner.baseline import load_baseline, write_baseline
    from coffer.scanner.engine import Engine
    from coffer.scanner.project_config import (
        baseline_path,
        load_project_config,
        parse_size,
        rules_for,
    )
    from coffer.scanner.runner import run_scan

    _check_options(path, git=git, staged=staged, fmt=fmt, workers=workers)
    if project is not None and not match_vault:
        raise InvalidInput("--project only applies with --match-vault", field="project")
    root = _root(path, git=git, staged=staged)
    settings = load_project_config(config, root=root)
    max_bytes = (
        parse_size(max_file_size, field="max-file-size")
        if max_file_size is not None
        else settings.max_file_bytes
    )
    rules = rules_for(settings)
    engine = Engine(rules)
    accepted: frozenset[str] = frozenset()
    if update_baseline is None:
        known = baseline or baseline_path(settings, config, root=root)
        accepted = load_baseline(known) if known is not None else frozenset()
    allowlist = Allowlist.from_config(settings, accepted)
    listing = _listing(path, root, git=git, staged=staged, allowlist=allowlist, max_bytes=max_bytes)
    with _progress_bar(enabled=not no_progress and sys.stderr.isatty()) as progress:
        result = run_scan(
            listing,
            engine,
            allowlist=allowlist,
            workers=workers,
            max_file_bytes=max_bytes,
            progress=progress,
        )
    if update_baseline is not None:
        total = write_baseline(update_baseline, result.findings)
        sys.stderr.write(
            f"{update_baseline}: {total} fingerprints "
            f"({len(result.findings)} findings in this scan)\n"
        )
        raise typer.Exit(CLEAN)
    matches = _vault_matches(result, project) if match_vault and result.findings else {}
    _emit(_render(fmt, result, rules, matches, root, color=output is None), output, result)
    raise typer.Exit(FOUND if result.findings else CLEAN)


def _check_options(path: str, *, git: bool, staged: bool, fmt: str, workers: int | None) -> None:
    if git and staged:
        raise InvalidInput("--git and --staged cannot be used together", field="staged")
    if path == "-" and (git or staged):
        raise InvalidInput(
            "standard input (-) cannot be scanned with --git or --staged", field="path"
        )
    if fmt not in FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(FORMATS)}", field="format")
    if workers is not None and workers < 1:
        raise InvalidInput("--workers must be 1 or more", field="workers")


def _root(path: str, *, git: bool, staged: bool) -> Path:
    """The folder the settings file and display paths are relative to."""
    from coffer.scanner.git_sources import repository_root
    from coffer.scanner.sources import project_root

    if git or staged:
        return repository_root(Path(path))
    if path == "-":
        return project_root(Path.cwd())
    if not Path(path).exists():
        raise InvalidInput(f"{path}: no such file or directory", field="path")
    return project_root(Path(path))


def _listing(
    path: str, root: Path, *, git: bool, staged: bool, allowlist: Allowlist, max_bytes: int
) -> Listing:
    from coffer.scanner.git_sources import history_listing, staged_listing
    from coffer.scanner.sources import path_listing, stdin_listing

    skip = allowlist.skips_path
    if git:
        return history_listing(Path(path), max_file_bytes=max_bytes, skip_path=skip)
    if staged:
        return staged_listing(Path(path), max_file_bytes=max_bytes, skip_path=skip)
    if path == "-":
        return stdin_listing(sys.stdin.buffer, max_file_bytes=max_bytes)
    return path_listing(Path(path), root=root, max_file_bytes=max_bytes, skip_path=skip)


@contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[ProgressCallback | None]:
    """A Rich progress bar on stderr, redrawn only when a batch finishes (no refresh thread,
    so worker processes are never forked while another thread holds a lock)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("scanning"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, auto_refresh=False) as bar:
        task = bar.add_task("scan", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, refresh=True)

        yield update


def _vault_matches(result: ScanResult, project: str | None) -> dict[str, VaultMatch]:
    from coffer.cli.vault_match import match_vault

    return match_vault(result.findings, project=project)


def _render(
    fmt: str,
    result: ScanResult,
    rules: RuleSet,
    matches: Mapping[str, VaultMatch],
    root: Path,
    *,
    color: bool,
) -> str:
    if fmt == "json":
        from coffer.scanner.report_json import render_json

        return render_json(result, matches)
    if fmt == "sarif":
        from coffer.scanner.sarif import render_sarif

        return render_sarif(result, rules, matches, root=root)
    from coffer.scanner.report_text import render_text

    paint = color and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    return render_text(result, matches, color=paint)


def _emit(report: str, output: Path | None, result: ScanResult) -> None:
    """Writes ``report`` to ``output`` (then a one-line summary to stderr) or to stdout.

    When whoever reads stdout stops early (``coffer scan | head``), the rest of the report is
    dropped without a word and the exit code stays the scan's (1 when it found secrets): the
    reader chose to stop, and the scan's verdict holds."""
    if output is None:
        try:
            sys.stdout.write(report)
            sys.stdout.flush()
        except BrokenPipeError:
            _discard_stdout()
        return
    try:
        output.write_text(report, encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot write {output}: {exc.strerror}", field="output") from None
    found = len(result.findings)
    summary = f"{found} finding{'s' if found != 1 else ''}" if found else "no secrets found"
    sys.stderr.write(f"coffer scan: {summary}; report written to {output}\n")


def _discard_stdout() -> None:
    """Points stdout at the null device, so that Python's own flush at exit does not fail on
    the closed pipe again."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, sys.stdout.fileno())
    finally:
        os.close(null)
