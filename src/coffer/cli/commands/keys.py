"""``coffer rotate-key`` (a project's data key, through the server), ``coffer rotate-root`` and
``coffer root-key status`` (the vault's root key, on the machine that holds the vault).

Progress bars go to stderr and only to a terminal, and vanish when done, so stdout carries
nothing but the result (the final JSON with ``--json``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coffer.cli.client import path_part
from coffer.cli.commands.local import DirOpt
from coffer.cli.common import JsonOpt, ProjectOpt, YesOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table

if TYPE_CHECKING:
    from coffer.config import Settings
    from coffer.domain.root_keys import RootKeyRecord, RootKeyStatus

root_key_app = typer.Typer(
    help="The vault's root key (run where the vault is, like `coffer init`).",
    no_args_is_help=True,
)

KeyBatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch",
        help="Secret versions re-encrypted per step, 1 to 20000 (default 2000).",
        show_default=False,
    ),
]
RootBatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch",
        help="Sealed keys re-sealed per step, 1 to 20000 (default 500).",
        show_default=False,
    ),
]


def _batch(value: int | None, default: int) -> int:
    """``--batch`` checked before anything changes; raises InvalidInput naming ``batch``."""
    from coffer.services.key_rotation import parse_batch

    return default if value is None else parse_batch(value)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@contextmanager
def _progress(description: str, total: int, *, shown: bool) -> Iterator[Callable[[int], None]]:
    """Yields ``advance(n)``, which moves a transient progress bar on stderr by ``n`` (the
    total grows when more arrive than expected). Nothing is drawn unless ``shown`` and
    stderr is an interactive terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    if not shown or not console.is_interactive:
        yield lambda _count: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=max(total, 1))
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            bar.update(task, completed=done, total=max(total, done, 1))

        yield advance


# --- a project's data key (through the server) ---------------------------------------------


@handle_errors
def rotate_key(project: ProjectOpt, batch: KeyBatchOpt = None, as_json: JsonOpt = False) -> None:
    """Rotate a project's data key: a new key version, every secret version re-encrypted
    under it in steps, then the old key versions destroyed (admins and owners).

    Reads and writes go on meanwhile. An interrupted rotation resumes when run again."""
    from coffer.services.key_rotation import DEFAULT_BATCH

    size = _batch(batch, DEFAULT_BATCH)
    path = f"/api/v1/projects/{path_part(project)}/key-rotation"
    with api() as client:
        resumed = bool(client.get_json(path)["running"])
        status = client.send_json("POST", path, None)
        version = status["key_version"]
        if resumed and not as_json:
            sys.stdout.write(
                f"Resuming the rotation of project {project}'s data key to version {version} "
                f"({_plural(status['remaining_versions'], 'version')} left)\n"
            )
            sys.stdout.flush()
        reencrypted = 0
        cursor: str | None = None
        with _progress(
            "Re-encrypting secret versions", status["remaining_versions"], shown=not as_json
        ) as advance:
            while True:
                step = client.send_json("POST", f"{path}/steps", {"batch": size, "cursor": cursor})
                reencrypted += step["reencrypted"]
                advance(step["reencrypted"])
                if step["done"]:
                    break
                cursor = step["cursor"]
    destroyed = [int(v) for v in status["retiring_key_versions"]]
    versions = ", ".join(map(str, destroyed))
    old = f"old key version{'s' if len(destroyed) > 1 else ''} {versions} destroyed"
    emit(
        {
            "project": project,
            "key_version": step["key_version"],
            "resumed": resumed,
            "reencrypted": reencrypted,
            "destroyed_key_versions": destroyed,
        },
        as_json,
        f"Rotated project {project}'s data key to version {step['key_version']}: "
        f"{_plural(reencrypted, 'version')} re-encrypted, "
        f"{old if destroyed else 'no old key version to destroy'}",
    )


# --- the vault's root key (local) ------------------------------------------------------------


def _settings_of_vault(directory: Path | None) -> Settings:
    """The settings of the vault in ``directory`` (``--dir``, else COFFER_DIR); raises
    ConfigError when there is no initialised vault there (nothing is created)."""
    from coffer.bootstrap import vault_exists
    from coffer.config import Settings
    from coffer.domain.errors import ConfigError

    settings = Settings.from_env(directory=directory)
    if not vault_exists(settings):
        where = settings.directory if settings.is_sqlite else "COFFER_DATABASE_URL"
        raise ConfigError(f"no coffer vault in {where}; run `coffer init` first")
    return settings


def _utc(seconds: float | None) -> str | None:
    from coffer.cli.audit_view import utc_time

    return utc_time(seconds) if seconds is not None else None


def _generation_json(record: RootKeyRecord) -> dict[str, Any]:
    return {
        "generation": record.generation,
        "state": record.state.value,
        "provider": record.provider.value,
        "key_id": record.key_id,
        "created_at": _utc(record.created_at),
        "activated_at": _utc(record.activated_at),
        "retired_at": _utc(record.retired_at),
    }


def _generation_text(record: RootKeyRecord) -> str:
    return f"generation {record.generation} ({record.provider.value}, key id {record.key_id})"


def _old_key_note(old: RootKeyRecord, new: RootKeyRecord, settings: Settings) -> str:
    """Where the previous root key is left, and that older backups need it."""
    from coffer.domain.root_keys import ProviderName

    before = "Backups made before this rotation need the old root key"
    if old.provider is ProviderName.LOCAL:
        if settings.root_key_b64 is not None:
            return f"{before} (COFFER_ROOT_KEY); the vault no longer uses it."
        if new.provider is ProviderName.LOCAL:
            return f"{before}: {settings.root_key_file} now holds the new key instead."
        return f"{before} ({settings.root_key_file}); the vault no longer uses it."
    if old.key_id == new.key_id:
        return f"The {old.provider.value} key {old.key_id} now wraps the new key-encryption key."
    if old.provider is ProviderName.PKCS11:
        return (
            f"{before}: the HSM key {old.key_id} is left in the token, for its owner to "
            "destroy once those backups no longer matter."
        )
    return (
        f"{before}: the {old.provider.value} key {old.key_id} is left as it is, for its owner "
        "to destroy once those backups no longer matter."
    )


@handle_errors
def rotate_root(
    directory: DirOpt = None,
    batch: RootBatchOpt = None,
    approvals: Annotated[
        list[str] | None,
        typer.Option(
            "--approval",
            help="Repeatable. A root.rotate approval (`coffer approvals request root.rotate`) "
            "that another admin granted; needed where root_rotation_approvals is 2.",
            show_default=False,
        ),
    ] = None,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Rotate the vault's root key: a new one under COFFER_ROOT_PROVIDER (so this also moves
    a vault between providers), every key sealed under the old one re-sealed, then the new
    one made active. Runs here, on the vault; a running server follows by itself. Where an
    organization wants two people for it, --approval names their approval (used once).

    An interrupted rotation resumes when run again."""
    from coffer.bootstrap.operator import operator_vault
    from coffer.cli.shares import share_reader
    from coffer.domain.root_keys import ProviderName
    from coffer.services.root_rotation import DEFAULT_BATCH, RootRotation, root_key_status

    size = _batch(batch, DEFAULT_BATCH)
    settings = _settings_of_vault(directory)
    with operator_vault(settings, share_reader()) as vault:
        before = root_key_status(vault.engine)
        old = before.active
        resumed = before.pending is not None
        if not resumed and not yes:
            target = vault.providers.configured.value
            question = f"Replace the root key, {_generation_text(old)}, with a new {target} key?"
            if old.provider is ProviderName.LOCAL and settings.root_key_b64 is None:
                question += f" Keep a copy of {settings.root_key_file} for older backups first."
            if not typer.confirm(question, err=True):
                raise typer.Exit(1)
        rotation = RootRotation(
            vault.engine, vault.opened.keks, vault.providers, vault.opened.audit_keys
        )
        pending = rotation.start(approvals or ())
        if resumed and not as_json:
            sys.stdout.write(f"Resuming the root rotation to {_generation_text(pending)}\n")
            sys.stdout.flush()
        with _progress(
            "Re-sealing keys", rotation.remaining(pending), shown=not as_json
        ) as advance:
            new, moved = rotation.run(pending, size, advance)
        after = root_key_status(vault.engine).history
    old = next((record for record in after if record.generation == old.generation), old)
    note = _old_key_note(old, new, settings)
    emit(
        {
            "previous": _generation_json(old),
            "current": _generation_json(new),
            "resumed": resumed,
            "resealed": moved,
            "note": note,
        },
        as_json,
        f"Rotated the root key from {_generation_text(old)} to {_generation_text(new)}: "
        f"{_plural(moved, 'key')} re-sealed.\n{note}",
    )


@root_key_app.command("status")
@handle_errors
def root_key_status(directory: DirOpt = None, as_json: JsonOpt = False) -> None:
    """Show the vault's root key: provider, key id, generation, when it was last rotated, a
    rotation under way and every generation so far. Needs no key."""
    from coffer.services.root_rotation import root_key_status as read_status
    from coffer.storage.database import create_engine

    settings = _settings_of_vault(directory)
    engine = create_engine(settings.database_url)
    try:
        status = read_status(engine)
    finally:
        engine.dispose()
    _print_status(status, as_json)


def _print_status(status: RootKeyStatus, as_json: bool) -> None:
    active, pending = status.active, status.pending
    rotated = _utc(active.activated_at) if active.generation > 1 else None
    if as_json:
        print_json(
            {
                "active": _generation_json(active),
                "last_rotated": rotated,
                "pending": _generation_json(pending) if pending else None,
                "remaining": status.remaining,
                "history": [_generation_json(record) for record in status.history],
            }
        )
        return
    waiting = (
        f"{_generation_text(pending)}, {_plural(status.remaining, 'key')} left to re-seal "
        "(run `coffer rotate-root` to finish)"
        if pending
        else "none"
    )
    facts = {
        "provider": active.provider.value,
        "key id": active.key_id,
        "generation": str(active.generation),
        "created": _utc(active.created_at),
        "activated": _utc(active.activated_at) or "",
        "last rotated": rotated or "never",
        "pending rotation": waiting,
    }
    sys.stdout.write("".join(f"{label + ':':<18}{value}\n" for label, value in facts.items()))
    rows = [
        (
            record.generation,
            record.state.value,
            record.provider.value,
            record.key_id,
            _utc(record.created_at),
            _utc(record.activated_at),
            _utc(record.retired_at),
        )
        for record in status.history
    ]
    columns = ("generation", "state", "provider", "key id", "created", "activated", "retired")
    print_table("Root key generations", columns, rows, whole=("key id",))
