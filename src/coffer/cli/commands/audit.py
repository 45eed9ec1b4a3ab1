"""``coffer audit``: list entries, verify the log (live, or an export offline), export it,
print the public key, check one entry's inclusion proof, prune old entries.

What an entry holds is partly attacker-controlled (key names, user agents): every cell and
message shown goes through ``visible``, so no control character reaches the terminal raw."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coffer.cli.audit_view import (
    ENTRY_COLUMNS,
    TIME_RULE,
    entry_row,
    read_public_key,
    read_witness,
    report_lines,
    unix_time,
    utc_time,
    visible,
    write_atomically,
)
from coffer.cli.client import ApiClient, path_part
from coffer.cli.common import JsonOpt, YesOpt, api, handle_errors
from coffer.cli.exit_codes import VERIFY_FAILED
from coffer.cli.output import emit, print_json, print_table
from coffer.domain import errors as err

if TYPE_CHECKING:
    from coffer.crypto.audit_keys import AuditPublicKey

audit_app = typer.Typer(
    help="Query, verify and export the tamper-evident audit log.", no_args_is_help=True
)

AUDIT = "/api/v1/audit"
EXPORT_TIMEOUT_S = 600.0

SinceOpt = Annotated[str | None, typer.Option("--since", help=f"From then on: {TIME_RULE}.")]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write to this file (atomically).")
]
PublicKeyOpt = Annotated[
    Path | None,
    typer.Option("--public-key", help="The audit public key you trust (PEM or base64)."),
]


class ExportFormat(StrEnum):
    """What ``coffer audit export`` writes."""

    JSONL = "jsonl"
    CEF = "cef"
    SYSLOG = "syslog"


# --- commands ----------------------------------------------------------------------------


@audit_app.command("list")
@handle_errors
def list_entries(
    since: SinceOpt = None,
    until: Annotated[str | None, typer.Option("--until", help=f"Up to: {TIME_RULE}.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="secret.read, or an area: secret.*")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Exact key, prefix* or glob (db/*).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Identity id or member e-mail.")
    ] = None,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project.")] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Environment.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Entries per page.")] = 100,
    cursor: Annotated[
        str | None, typer.Option("--cursor", help="Continue where a page ended.")
    ] = None,
    all_pages: Annotated[
        bool, typer.Option("--all-pages", help="Follow the cursor to the last page.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List audit entries of your organization, newest first (admins and owners)."""
    params = {
        "since": unix_time(since, "--since"),
        "until": unix_time(until, "--until"),
        "action": action,
        "key": key,
        "actor": actor,
        "project": project,
        "environment": env,
        "limit": limit,
    }
    with api() as client:
        entries, cursor = fetch_pages(client, params, cursor, every=all_pages)
    if as_json:
        print_json({"entries": entries, "next": cursor})
        return
    rows = [entry_row(entry) for entry in entries]
    print_table("Audit log", ENTRY_COLUMNS, rows, whole=("id", "time (UTC)"))
    if cursor:
        sys.stdout.write(f"More entries: repeat with --cursor {visible(cursor)} (or --all-pages)\n")


def fetch_pages(
    client: ApiClient, params: dict[str, Any], cursor: str | None, *, every: bool
) -> tuple[list[dict[str, Any]], str | None]:
    """Returns the entries of the page at ``cursor`` (the first when None), or of it and
    every later page when ``every``, with the cursor of the page after them (None at the
    end). None-valued ``params`` are left out."""
    query = {name: value for name, value in params.items() if value is not None}
    entries: list[dict[str, Any]] = []
    while True:
        page = client.get_json(AUDIT, **query, **({"cursor": cursor} if cursor else {}))
        entries += page["entries"]
        cursor = page["next"]
        if not (every and cursor):
            return entries, cursor


@audit_app.command("verify")
@handle_errors
def verify(
    export: Annotated[
        Path | None,
        typer.Option("--export", help="Check this JSONL export offline instead of the server."),
    ] = None,
    public_key: PublicKeyOpt = None,
    witness: Annotated[
        Path | None,
        typer.Option(
            "--witness",
            help="A checkpoint file from an earlier run: the log must not have gone back "
            "behind it. Updated (or created) when everything verifies.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify every entry against the signed checkpoints: the live log on the server, or an
    export with --export FILE --public-key FILE (no server needed).

    Exits 0 when everything verifies, 9 when anything does not (naming the first bad entry)."""
    if (export is None) != (public_key is None):
        raise err.InvalidInput(
            "--export FILE and --public-key FILE go together (omit both to verify the server)",
            field="public_key" if export else "export",
        )
    known = read_witness(witness)
    if export is not None and public_key is not None:
        report = verify_file(export, read_public_key(public_key), known)
    else:
        with api() as client:
            body = {"known_checkpoint": known} if known else None
            report = client.send_json("POST", f"{AUDIT}/verify", body)
    if as_json:
        print_json(report)
    else:
        sys.stdout.write("\n".join(report_lines(report)) + "\n")
    if not report["ok"]:
        raise typer.Exit(VERIFY_FAILED)
    if witness is not None and report["latest_checkpoint"]:
        text = json.dumps(report["latest_checkpoint"], indent=2) + "\n"
        write_atomically(witness, [text.encode("ascii")])


def verify_file(path: Path, key: AuditPublicKey, known: dict[str, Any] | None) -> dict[str, Any]:
    """Verifies an export file read line by line (never whole); returns the report's JSON.
    Raises InvalidInput naming ``--export`` when the file cannot be read or is no export."""
    from coffer.audit.checkpoints import Checkpoint
    from coffer.audit.export import verify_export

    witness = Checkpoint.from_json(known) if known else None
    try:
        with path.open("rb") as handle:
            return verify_export(handle, key, known=witness).to_json()
    except OSError as exc:
        raise err.InvalidInput(
            f"--export: cannot read {path}: {exc.strerror}", field="export"
        ) from None
    except err.InvalidInput as exc:
        reason = exc.message.removeprefix("export: ")
        raise err.InvalidInput(f"--export {path}: {reason}", field="export") from None


@audit_app.command("export")
@handle_errors
def export_log(
    fmt: Annotated[
        ExportFormat, typer.Option("--format", help="jsonl (with proofs), cef or syslog.")
    ] = ExportFormat.JSONL,
    since: SinceOpt = None,
    output: OutputOpt = None,
) -> None:
    """Download the log (your organization's entries) to stdout or --output FILE.

    The JSONL form carries the signed checkpoints: check it with
    `coffer audit verify --export FILE --public-key KEY`."""
    params: dict[str, Any] = {"format": fmt.value}
    start = unix_time(since, "--since")
    if start is not None:
        params["since"] = start
    from coffer.cli.settings_file import load_client_settings

    with ApiClient(load_client_settings(), timeout=EXPORT_TIMEOUT_S) as client:
        chunks = client.stream(f"{AUDIT}/export", params)
        if output is None:
            for chunk in chunks:
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            return
        size, lines = write_atomically(output, chunks)
    sys.stderr.write(f"Wrote {lines} lines ({size} bytes) of {fmt.value} to {output}\n")


@audit_app.command("public-key")
@handle_errors
def print_public_key(
    pem: Annotated[bool, typer.Option("--pem", help="PEM (the default).")] = False,
    as_base64: Annotated[
        bool, typer.Option("--base64", help="Base64 of the 32 raw bytes.")
    ] = False,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the Ed25519 key that verifies the log's checkpoints (no token needed)."""
    if pem and as_base64:
        raise err.InvalidInput("give --pem or --base64, not both", field="base64")
    with api() as client:
        data = client.request("GET", f"{AUDIT}/public-key", authenticated=False).json()
    text = data["public_key"] + "\n" if as_base64 else data["pem"]
    if output is not None:
        write_atomically(output, [text.encode("ascii")])
        sys.stderr.write(f"Wrote the audit public key (key id {data['key_id']}) to {output}\n")
    if as_json:
        print_json(data)
    elif output is None:
        sys.stdout.write(text)


@audit_app.command("proof")
@handle_errors
def proof(
    entry_id: Annotated[str, typer.Argument(help="The entry's id (from `coffer audit list`).")],
    public_key: PublicKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch an entry's inclusion proof and check it here against the latest signed
    checkpoint (with --public-key, or else the key the server gives)."""
    from coffer.crypto.audit_keys import AuditPublicKey

    key = read_public_key(public_key) if public_key else None
    with api() as client:
        data = client.get_json(f"{AUDIT}/entries/{path_part(entry_id)}/proof")
        if key is None:
            served = client.request("GET", f"{AUDIT}/public-key", authenticated=False).json()
            key = AuditPublicKey.from_text(served["pem"])
    problem = proof_problem(data, entry_id, key)
    if problem is None:
        checkpoint = data["checkpoint"]
        summary = (
            f"entry {visible(entry_id)} (#{data['index']}) is in checkpoint #{checkpoint['seq']} "
            f"(size {checkpoint['tree_size']}) signed {utc_time(checkpoint['timestamp'])} by key "
            f"{visible(checkpoint['key_id'])}: proof verified"
        )
    else:
        summary = f"FAILED: {visible(problem)}"
    emit({**data, "verified": problem is None, "problem": problem}, as_json, summary)
    if problem:
        raise typer.Exit(VERIFY_FAILED)


def proof_problem(data: dict[str, Any], entry_id: str, key: AuditPublicKey) -> str | None:
    """Returns what is wrong with an inclusion proof answer, or None when the canonical
    entry is ``entry_id`` at the claimed index, its leaf hash leads through the audit path
    to the checkpoint's root, and ``key`` signed that checkpoint."""
    from coffer.audit.checkpoints import Checkpoint
    from coffer.crypto.merkle import leaf_hash, root_from_inclusion_proof

    try:
        canonical = data["canonical"].encode("ascii")
        stated = json.loads(canonical)
        claimed = (stated["id"], stated["index"])
        checkpoint = Checkpoint.from_json(data["checkpoint"])
        path = [bytes.fromhex(h) for h in data["proof"]]
        index = int(data["index"])
        root = root_from_inclusion_proof(index, checkpoint.tree_size, leaf_hash(canonical), path)
    except (KeyError, TypeError, ValueError, AttributeError, err.InvalidInput) as exc:
        return f"the proof is malformed ({exc.__class__.__name__}: {exc})"
    if claimed != (entry_id, index):
        return f"the proof is for another entry ({claimed[0]} at #{claimed[1]})"
    if root != checkpoint.root_hash:
        return f"the audit path does not lead to the root of checkpoint #{checkpoint.seq}"
    if not checkpoint.signature_valid(key):
        return f"checkpoint #{checkpoint.seq} is not signed by this public key"
    return None


@audit_app.command("prune")
@handle_errors
def prune(
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            min=1,
            help="Keep this many days (default: the server's COFFER_AUDIT_RETENTION_DAYS).",
        ),
    ] = None,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove entries older than the retention period (owner only). What remains still
    verifies from a signed checkpoint, and the prune itself is recorded."""
    kept = f"the last {days} days" if days else "the retention period"
    if not yes and not typer.confirm(f"Remove audit entries older than {kept}?"):
        raise typer.Exit(1)
    with api() as client:
        data = client.send_json("POST", f"{AUDIT}/prune", {"days": days} if days else None)
    emit(
        data,
        as_json,
        f"Pruned {data['removed']} entries; the log now starts at entry #{data['before_index']}",
    )
