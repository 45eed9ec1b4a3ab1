"""``coffer backup create|verify|restore``: encrypted backups of the vault on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coffer.cli.commands.local import DirOpt
from coffer.cli.common import JsonOpt, handle_errors
from coffer.cli.output import emit
from coffer.cli.shares import share_reader

if TYPE_CHECKING:
    from coffer.services.backups import BackupSummary

backup_app = typer.Typer(
    help="Encrypted, integrity-checked backups of the whole vault (run on the vault's machine).",
    no_args_is_help=True,
)

FileArg = Annotated[Path, typer.Argument(help="Backup file.", dir_okay=False)]


def _summary_json(summary: BackupSummary, path: Path) -> dict[str, Any]:
    return {
        "file": str(path),
        "size_bytes": summary.size_bytes or path.stat().st_size,
        "generation": summary.generation,
        "provider": summary.provider,
        "key_id": summary.key_id,
        "secret_versions": summary.secret_versions,
        "audit_entries": summary.audit_entries,
        "rows": summary.rows,
        "seconds": round(summary.seconds, 3),
    }


def _describe(summary: BackupSummary) -> str:
    return (
        f"{sum(summary.rows.values())} rows, {summary.secret_versions} secret versions, "
        f"{summary.audit_entries} audit entries under the signed checkpoint; opens with root "
        f"key generation {summary.generation} ({summary.provider}, key {summary.key_id})"
    )


@backup_app.command("create")
@handle_errors
def create(file: FileArg, directory: DirOpt = None, as_json: JsonOpt = False) -> None:
    """Write an encrypted backup of the vault (never a plaintext) to FILE.

    Needs the vault's root key (a Shamir-split one: its shares, asked for or one per line of
    stdin); the vault keeps serving meanwhile."""
    from coffer.bootstrap.operator import backup_vault
    from coffer.config import Settings

    summary = backup_vault(Settings.from_env(directory=directory), file, share_reader())
    emit(_summary_json(summary, file), as_json, f"Wrote {file}: {_describe(summary)}")


@backup_app.command("verify")
@handle_errors
def verify(file: FileArg, directory: DirOpt = None, as_json: JsonOpt = False) -> None:
    """Check FILE completely: integrity of every chunk, every secret decrypting and the audit
    log verifying (by a trial restore that is then deleted). Needs the root key."""
    from coffer.bootstrap.operator import verify_backup
    from coffer.config import Settings

    summary = verify_backup(Settings.from_env(directory=directory), file, share_reader())
    emit(_summary_json(summary, file), as_json, f"{file} is intact: {_describe(summary)}")


@backup_app.command("restore")
@handle_errors
def restore(
    file: FileArg,
    directory: DirOpt = None,
    root_key_file: Annotated[
        Path | None,
        typer.Option(
            "--root-key-file",
            help="The backed-up vault's root key file (copied into the new vault).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore FILE into an empty vault (--dir, or COFFER_DATABASE_URL).

    The root key must be the one the backup was made under: the vault's key file in --dir,
    --root-key-file, COFFER_ROOT_KEY, or the HSM/KMS settings."""
    from coffer.bootstrap.operator import restore_vault
    from coffer.config import Settings

    settings = Settings.from_env(directory=directory)
    summary = restore_vault(settings, file, root_key_file=root_key_file, ask_share=share_reader())
    emit(
        _summary_json(summary, file),
        as_json,
        f"Restored {file} into {settings.directory}: {_describe(summary)}",
    )
