"""``coffer secrets``: set, get, list, info, reset, delete, history, rollback.

Also the pieces that ``coffer ephemeral`` and ``coffer share`` share with it: reading a value
(argument, ``-`` for stdin, or a hidden prompt), the limit options, and describing limits."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coffer.cli.client import key_part, path_part
from coffer.cli.commands.inventory import inventory_fields
from coffer.cli.common import EnvOpt, JsonOpt, ProjectOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table, short_time
from coffer.domain.errors import InvalidInput
from coffer.domain.names import validate_key_name

if TYPE_CHECKING:
    import httpx

secrets_app = typer.Typer(help="Read and write secrets.", no_args_is_help=True)

KeyArg = Annotated[str, typer.Argument(help="Secret key, e.g. DB_PASSWORD or db/password.")]
CommentOpt = Annotated[str | None, typer.Option("--comment", "-c", help="Why it changed.")]
ReasonOpt = Annotated[
    str | None,
    typer.Option(
        "--reason",
        envvar="COFFER_REASON",
        help="Why you read it (recorded in the audit log; required where a policy says so).",
        show_default=False,
    ),
]


def reason_params(reason: str | None) -> dict[str, str]:
    """The ``reason`` query parameter of a read that states why (none when not given)."""
    return {} if reason is None else {"reason": reason}


def env_path(project: str, env: str) -> str:
    """Returns the API path of an environment."""
    return f"/api/v1/projects/{path_part(project)}/environments/{path_part(env)}"


def secret_path(project: str, env: str, route: str, key: str) -> str:
    """Returns the API path of a key under ``route`` (secrets, history, rollback). The key is
    checked here first: URL libraries collapse "a/../b" before the server could refuse it."""
    validate_key_name(key)
    return f"{env_path(project, env)}/{route}/{key_part(key)}"


TtlOpt = Annotated[
    str | None,
    typer.Option("--ttl", help="Time to live: seconds or 30s, 5m, 2h, 7d (1 s to 365 days)."),
]
ReadsOpt = Annotated[
    int | None,
    typer.Option("--reads", help="Reads allowed; the last one burns the secret (or seals it)."),
]
NoDeleteOpt = Annotated[
    bool,
    typer.Option(
        "--no-delete",
        help="Seal the secret at its last read instead of destroying it (reset reopens it).",
    ),
]
BurnOpt = Annotated[
    bool | None,
    typer.Option(
        "--burn/--seal",
        help="After the last read destroy the secret (--burn) or keep it sealed (--seal).",
        show_default=False,
    ),
]
NoReadsOpt = Annotated[bool, typer.Option("--no-reads", help="Remove the read limit.")]


def read_value(value: str | None, *, prompt: str = "Value") -> str:
    """Returns the value a command was given: the argument itself; stdin for ``-`` (without
    the one trailing newline that ``echo`` and here-strings add); or, when omitted, a hidden
    prompt on a terminal. Raises InvalidInput naming ``value`` when it is omitted and stdin
    is not a terminal (the CLI never reads stdin unless told to)."""
    if value is None:
        if not sys.stdin.isatty():
            raise InvalidInput(
                "no value: pass it as an argument, or - to read it from stdin", field="value"
            )
        answer: str = typer.prompt(prompt, hide_input=True)
        return answer
    if value != "-":
        return value
    data = sys.stdin.read()
    return data[:-1] if data.endswith("\n") else data


def limit_fields(ttl: str | None, reads: int | None, no_delete: bool) -> dict[str, Any]:
    """The request fields of --ttl, --reads and --no-delete: only those given (the TTL as
    typed: the server parses and checks it, naming the field it refuses)."""
    fields: dict[str, Any] = {}
    if ttl is not None:
        fields["ttl_seconds"] = ttl
    if reads is not None:
        fields["max_reads"] = reads
    if no_delete:
        fields["delete"] = False
    return fields


def change_fields(
    *,
    ttl: str | None = None,
    no_ttl: bool = False,
    reads: int | None = None,
    no_reads: bool = False,
    burn: bool | None = None,
) -> dict[str, Any]:
    """The PATCH fields of a limit change: only those given; ``None`` removes a TTL or read
    limit. Raises InvalidInput naming the field when a value and its removal are both given."""
    fields: dict[str, Any] = {}
    if ttl is not None and no_ttl:
        raise InvalidInput("give --ttl or --no-ttl, not both", field="ttl_seconds")
    if reads is not None and no_reads:
        raise InvalidInput("give --reads or --no-reads, not both", field="max_reads")
    if ttl is not None or no_ttl:
        fields["ttl_seconds"] = ttl
    if reads is not None or no_reads:
        fields["max_reads"] = reads
    if burn is not None:
        fields["delete"] = burn
    return fields


def plural(count: int, noun: str) -> str:
    """``1 read``, ``2 reads``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def describe_limits(limits: dict[str, Any] | None) -> str:
    """A ``limits`` object in one line, e.g. ``2 of 3 reads left, then burned; expires
    2026-01-31T18:00:00.000Z`` ("no limits" for None or an unlimited secret)."""
    if not limits:
        return "no limits"
    parts = []
    if limits["status"] == "sealed":
        parts.append("sealed")
    if limits["max_reads"] is not None:
        after = "burned" if limits["delete"] else "sealed"
        reads = plural(limits["max_reads"], "read")
        parts.append(f"{limits['reads_remaining']} of {reads} left, then {after}")
    if limits["expires_at"] is not None:
        parts.append(f"expires {limits['expires_at']}")
    return "; ".join(parts) or "no limits"


def limit_cells(limits: dict[str, Any] | None) -> tuple[str, str, str]:
    """The table cells (reads left, expires, status) of a ``limits`` object (blank
    without one)."""
    if not limits:
        return ("", "", "")
    reads = (
        f"{limits['reads_remaining']} of {limits['max_reads']}"
        if limits["max_reads"] is not None
        else ""
    )
    return (reads, short_time(limits["expires_at"]), limits["status"])


LIMIT_COLUMNS = ("reads left", "expires", "status")


def head_info(response: httpx.Response, key: str) -> dict[str, Any]:
    """What a ``HEAD`` answer says about a secret, from its ``X-Coffer-*`` headers: status,
    version (vault secrets only), read count, read limit, reads remaining and expiry (None
    where the secret has no such limit)."""
    headers = response.headers

    def number(name: str) -> int | None:
        text = headers.get(name)
        return None if text is None else int(text)

    info: dict[str, Any] = {"key": key, "status": headers.get("x-coffer-status")}
    if "x-coffer-version" in headers:
        info["version"] = number("x-coffer-version")
    info.update(
        read_count=number("x-coffer-read-count"),
        max_reads=number("x-coffer-max-reads"),
        reads_remaining=number("x-coffer-reads-remaining"),
        expires_at=headers.get("x-coffer-expires-at"),
    )
    return info


def print_head_info(info: dict[str, Any], as_json: bool) -> None:
    """Prints ``head_info`` as JSON, or one ``label: value`` line per known fact."""
    if as_json:
        print_json(info)
        return
    lines = [("status", info["status"])]
    if "version" in info:
        lines.append(("version", info["version"]))
    if info["max_reads"] is not None:
        lines += [
            ("read count", info["read_count"]),
            ("max reads", info["max_reads"]),
            ("reads remaining", info["reads_remaining"]),
        ]
    if info["expires_at"] is not None:
        lines.append(("expires at", info["expires_at"]))
    if info["max_reads"] is None and info["expires_at"] is None:
        lines.append(("limits", "none (reads are not counted)"))
    sys.stdout.write("".join(f"{label + ':':<17}{value}\n" for label, value in lines))


@secrets_app.command("set")
@handle_errors
def set_secret(
    key: KeyArg,
    value: Annotated[str, typer.Argument(help="The value, or - to read it from stdin.")],
    project: ProjectOpt,
    env: EnvOpt,
    comment: CommentOpt = None,
    ttl: TtlOpt = None,
    reads: ReadsOpt = None,
    no_delete: NoDeleteOpt = False,
    owner: Annotated[str | None, typer.Option("--owner", help="Inventory: its owner.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="Inventory: its system.")] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="Inventory: what it is.")
    ] = None,
    sensitivity: Annotated[
        str | None,
        typer.Option("--sensitivity", help="Inventory: public, internal, confidential, secret."),
    ] = None,
    rotate_every: Annotated[
        str | None, typer.Option("--rotate-every", help="Inventory: rotation period, e.g. 90d.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a new version of a secret. --ttl and --reads limit it (a new version without
    them keeps the secret's limits and counts its reads afresh). --owner, --system,
    --description, --sensitivity and --rotate-every set its inventory metadata with it."""
    body: dict[str, Any] = {"value": read_value(value), "comment": comment}
    body.update(limit_fields(ttl, reads, no_delete))
    inventory = inventory_fields(
        owner=owner,
        system=system,
        description=description,
        sensitivity=sensitivity,
        rotate_every=rotate_every,
    )
    if inventory:
        body["inventory"] = inventory
    with api() as client:
        data = client.send_json("PUT", secret_path(project, env, "secrets", key), body)
    text = f"{data['outcome'].capitalize()} {key} (version {data['version']})"
    if data.get("limits"):
        text += f": {describe_limits(data['limits'])}"
    emit(data, as_json, text)


@secrets_app.command("get")
@handle_errors
def get_secret(
    key: KeyArg,
    project: ProjectOpt,
    env: EnvOpt,
    version: Annotated[int | None, typer.Option("--version", help="A past version.")] = None,
    expand: Annotated[bool, typer.Option("--expand", help="Expand ${...} references.")] = False,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a secret's value (the current version unless --version). --reason (or
    COFFER_REASON) states why, where the environment's policy wants reads to."""
    params: dict[str, object] = {"expand": "true" if expand else "false", **reason_params(reason)}
    if version is not None:
        params["version"] = version
    with api() as client:
        data = client.get_json(secret_path(project, env, "secrets", key), **params)
    if as_json:
        print_json(data)
    else:
        sys.stdout.write(data["value"] + "\n")


@secrets_app.command("list")
@handle_errors
def list_secrets(project: ProjectOpt, env: EnvOpt, as_json: JsonOpt = False) -> None:
    """List the keys of an environment (no values)."""
    with api() as client:
        data = client.get_json(f"{env_path(project, env)}/secrets")
    if as_json:
        print_json(data)
        return
    secrets = data["secrets"]
    columns: tuple[str, ...] = ("key", "version", "updated")
    rows: list[tuple[Any, ...]] = [(s["key"], s["version"], s["updated_at"]) for s in secrets]
    if any(s.get("limits") for s in secrets):
        columns += LIMIT_COLUMNS
        rows = [(*row, *limit_cells(s.get("limits"))) for row, s in zip(rows, secrets, strict=True)]
    print_table(f"{project} / {env}", columns, rows)


@secrets_app.command("info")
@handle_errors
def info(key: KeyArg, project: ProjectOpt, env: EnvOpt, as_json: JsonOpt = False) -> None:
    """Show a secret's status, version, read count, reads remaining and expiry without
    reading it (nothing is counted; a sealed secret shows status sealed)."""
    path = secret_path(project, env, "secrets", key)
    with api() as client:
        response = client.head(path, what=f"secret {key!r} in {project}/{env}")
    print_head_info(head_info(response, key), as_json)


@secrets_app.command("reset")
@handle_errors
def reset(
    key: KeyArg,
    project: ProjectOpt,
    env: EnvOpt,
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="A new time to live, counted from now.")
    ] = None,
    reads: Annotated[int | None, typer.Option("--reads", help="A new read limit.")] = None,
    no_ttl: Annotated[bool, typer.Option("--no-ttl", help="Remove the time to live.")] = False,
    no_reads: NoReadsOpt = False,
    burn: BurnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Zero a secret's read count and unseal it, changing its limits as given (needs write
    access)."""
    body: dict[str, Any] = {"reset": True}
    body.update(change_fields(ttl=ttl, no_ttl=no_ttl, reads=reads, no_reads=no_reads, burn=burn))
    with api() as client:
        data = client.send_json("PATCH", secret_path(project, env, "secrets", key), body)
    emit(data, as_json, f"Reset {key}: {describe_limits(data.get('limits'))}")


@secrets_app.command("delete")
@handle_errors
def delete_secret(key: KeyArg, project: ProjectOpt, env: EnvOpt, as_json: JsonOpt = False) -> None:
    """Delete a secret and all its versions (irreversible)."""
    with api() as client:
        data = client.request("DELETE", secret_path(project, env, "secrets", key)).json()
    emit(data, as_json, f"Deleted {key} ({data['versions_destroyed']} versions destroyed)")


@secrets_app.command("history")
@handle_errors
def history(key: KeyArg, project: ProjectOpt, env: EnvOpt, as_json: JsonOpt = False) -> None:
    """Show every version of a secret: who wrote it, when and why (no values)."""
    with api() as client:
        data = client.get_json(secret_path(project, env, "history", key))
    if as_json:
        print_json(data)
        return
    rows = [
        (v["version"], v["created_at"], f"{v['author']['kind']} {v['author']['id']}", v["comment"])
        for v in data["versions"]
    ]
    print_table(f"History of {key}", ("version", "written", "author", "comment"), rows)


@secrets_app.command("rollback")
@handle_errors
def rollback(
    key: KeyArg,
    project: ProjectOpt,
    env: EnvOpt,
    version: Annotated[int, typer.Option("--version", help="Version to restore.")],
    comment: CommentOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a new version that carries an earlier version's value."""
    if version < 1:
        raise InvalidInput("--version must be a positive integer", field="version")
    body = {"version": version, "comment": comment}
    with api() as client:
        data = client.send_json("POST", secret_path(project, env, "rollback", key), body)
    emit(data, as_json, f"Rolled {key} back to version {version} (now version {data['version']})")
