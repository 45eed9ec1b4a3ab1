"""``coffer guard install`` / ``uninstall``: a git pre-commit hook that runs ``coffer scan
--staged``, for repositories that do not use the pre-commit framework.

The hook lives where git looks for hooks (``core.hooksPath`` when set, the shared hooks folder
of a linked worktree): ``git rev-parse --git-path hooks`` says where. It calls this very Python
(``<python> -m coffer``), so it works without ``coffer`` on the PATH of whoever commits. A
marker line tells a hook coffer wrote from anyone else's, which is never replaced without
``--force`` (and then kept beside it as ``pre-commit.bak``) and never removed by uninstall.
"""

from __future__ import annotations

import shlex
import stat
import sys
from pathlib import Path
from typing import Annotated

import typer

from coffer.cli.common import handle_errors
from coffer.domain.errors import InvalidInput

guard_app = typer.Typer(
    help="Install or remove a git pre-commit hook that blocks commits adding secrets.",
    no_args_is_help=True,
)

HOOK_MARKER = "# coffer guard: this hook was written by `coffer guard install`"
HOOK_NAME = "pre-commit"

RepoOpt = Annotated[
    Path, typer.Option("--repo", help="A folder of the repository (default: the current one).")
]


def hook_script(python: str) -> str:
    """Returns the text of the hook that runs ``python -m coffer scan --staged``."""
    return (
        "#!/bin/sh\n"
        f"{HOOK_MARKER}\n"
        "# `coffer guard uninstall` removes it. It stops a commit whose staged lines hold a\n"
        "# secret (exit 1) or when the scan fails (exit 2); `git commit --no-verify` skips it.\n"
        f"exec {shlex.quote(python)} -m coffer scan --staged --no-progress\n"
    )


def hook_path(repo: Path) -> Path:
    """Returns where git looks for the pre-commit hook of the repository holding ``repo``;
    raises ``InvalidInput`` (field ``repo``) when ``repo`` is not in a git repository."""
    from coffer.scanner.git_sources import run_git

    try:
        hooks = run_git(repo, "rev-parse", "--git-path", "hooks")
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="repo") from None
    folder = Path(hooks.decode("utf-8", "surrogateescape").rstrip("\n"))
    return (repo / folder if not folder.is_absolute() else folder).resolve() / HOOK_NAME


def _written_by_coffer(path: Path) -> bool:
    try:
        return HOOK_MARKER in path.read_text("utf-8", errors="replace")
    except OSError:
        return False  # unreadable: treated as someone else's hook, so it is left alone


@guard_app.command("install")
@handle_errors
def install(
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace another pre-commit hook (kept as .bak)."),
    ] = False,
    repo: RepoOpt = Path(),
) -> None:
    """Write a git pre-commit hook that runs `coffer scan --staged`."""
    target = hook_path(repo)
    script = hook_script(str(Path(sys.executable).absolute()))
    if target.exists() or target.is_symlink():
        if _written_by_coffer(target):
            if target.read_text("utf-8", errors="replace") == script:
                typer.echo(f"coffer's pre-commit hook is already installed: {target}")
                return
        elif not force:
            raise InvalidInput(
                f"{target} exists and was not written by coffer; "
                "use --force to replace it (it is kept as pre-commit.bak)",
                field="force",
            )
        else:
            backup = target.with_name(HOOK_NAME + ".bak")
            target.replace(backup)
            typer.echo(f"kept the previous hook as {backup}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(script, encoding="utf-8")
    mode = target.stat().st_mode
    target.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    typer.echo(f"installed coffer's pre-commit hook: {target}")


@guard_app.command("uninstall")
@handle_errors
def uninstall(repo: RepoOpt = Path()) -> None:
    """Remove the pre-commit hook that `coffer guard install` wrote (no other)."""
    target = hook_path(repo)
    if not target.exists() and not target.is_symlink():
        typer.echo(f"no pre-commit hook to remove at {target}")
        return
    if not _written_by_coffer(target):
        raise InvalidInput(f"{target} was not written by coffer; it is left in place", field="repo")
    target.unlink()
    typer.echo(f"removed coffer's pre-commit hook: {target}")
