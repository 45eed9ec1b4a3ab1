"""``coffer audit``: list entries, verify the log (live, or an export offline), export it,
print the public key, check one entry's inclusion proof, prune old entries.

What an entry holds is partly attacker-controlled (key names, user agents): every cell and
message shown goes through ``visible``, so no control character reaches the terminal raw."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
MORE_PROBLEMS = 10
EXPORT_TIMEOUT_S = 600.0
UA_WIDTH = 40
TIME_RULE = "Unix seconds, an ISO 8601 time (UTC unless it has an offset) or a span ago (2h, 7d)"

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


# --- input -------------------------------------------------------------------------------


def unix_time(text: str | None, option: str) -> float | None:
    """Returns ``text`` as Unix seconds: a plain number as is, a span such as ``2h`` or
    ``7d`` counted back from now, else an ISO 8601 date or time (UTC when it has no offset);
    None for None. Raises InvalidInput naming ``option`` when it is none of those."""
    import time
    from datetime import UTC, datetime

    from coffer.domain.durations import parse_duration

    if text is None:
        return None
    value = text.strip()
    try:
        if value[-1:].isalpha() and value[:1].isdigit() and "-" not in value:
            span = parse_duration(value, field=option, minimum=0, maximum=100 * 365 * 86400)
            return time.time() - span
        if value.replace(".", "", 1).isdigit():
            return float(value)
        moment = datetime.fromisoformat(value)
    except (ValueError, err.InvalidInput):
        raise err.InvalidInput(
            f"{option} must be {TIME_RULE}; got {value[:40]!r}", field=option.lstrip("-")
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def read_public_key(path: Path) -> AuditPublicKey:
    """Returns the key in ``path`` (PEM or base64, as ``coffer audit public-key`` prints it).
    Raises InvalidInput naming ``--public-key`` when it cannot be read or is no such key."""
    from coffer.crypto.audit_keys import AuditPublicKey

    try:
        return AuditPublicKey.from_text(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError) as exc:
        raise err.InvalidInput(
            f"--public-key: cannot read {path}: {exc}", field="public_key"
        ) from None
    except err.InvalidInput as exc:
        reason = exc.message.removeprefix("public key: ")
        raise err.InvalidInput(f"--public-key {path}: {reason}", field="public_key") from None


def read_witness(path: Path | None) -> dict[str, Any] | None:
    """Returns the checkpoint saved in a witness file, or None when there is no file yet.
    Raises InvalidInput naming ``--witness`` when the file holds no checkpoint."""
    from coffer.audit.checkpoints import Checkpoint

    if path is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_bytes())
        Checkpoint.from_json(data)
    except (OSError, ValueError, err.InvalidInput) as exc:
        reason = exc.message if isinstance(exc, err.InvalidInput) else str(exc)
        raise err.InvalidInput(
            f"--witness {path} does not hold a saved checkpoint ({reason})", field="witness"
        ) from None
    return dict(data)


# --- output ------------------------------------------------------------------------------


def visible(value: object) -> str:
    """Returns ``value`` as text safe for a terminal: control, format and separator
    characters (newlines, ESC, C1 controls, bidi overrides) and the backslash are written
    as Python-style escapes (``\\n``, ``\\x1b``, ``\\u202e``, ``\\\\``); None is empty."""
    text = "" if value is None else str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(
        char if char.isprintable() and char != "\\" else char.encode("unicode_escape").decode()
        for char in text
    )


def utc_time(seconds: float | None) -> str:
    """Unix seconds as ``2026-01-31T18:00:05Z`` (empty for None)."""
    from datetime import UTC, datetime

    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_row(record: dict[str, Any]) -> tuple[str, ...]:
    """One table row of a record. The actor's id is cut to its last 8 characters: the
    leading characters of a ULID are its creation time, the trailing ones tell ids apart."""
    actor = record["actor"]
    actor_id = actor["id"] or ""
    where = "/".join(part for part in (record["project"], record["environment"]) if part)
    user_agent = visible(record["user_agent"])
    cut = user_agent[: UA_WIDTH - 1] + "…" if len(user_agent) > UA_WIDTH else user_agent
    return (
        utc_time(record["time"]),
        visible(record["id"]),
        visible(record["action"]),
        visible(f"{actor['kind'] or '?'} {'…' + actor_id[-8:] if actor_id else ''}".strip()),
        visible(where),
        visible(record["key"]),
        visible(record["source_ip"]),
        cut,
        visible(record["result"]),
    )


ENTRY_COLUMNS = (
    "time (UTC)", "id", "action", "actor", "where", "key", "source IP", "user agent", "result"
)  # fmt: skip


def report_lines(report: dict[str, Any]) -> list[str]:
    """The human form of a verification report (the JSON of ``VerifyReport``)."""
    if report["ok"]:
        latest = report["latest_checkpoint"]
        head = (
            f"latest checkpoint #{latest['seq']} signed {utc_time(latest['timestamp'])} by key "
            f"{visible(latest['key_id'])}"
            if latest
            else "no checkpoint yet"
        )
        return [
            f"verified: {report['entries_checked']} entries, {report['checkpoints_checked']} "
            f"checkpoints, tree size {report['tree_size']}, {head}"
        ]
    first = report["first_problem"]
    others = [p for p in report["problems"] if p != first]
    lines = [f"FAILED: {visible(first['message'])}"]
    lines += [f"  also: {visible(p['message'])}" for p in others[:MORE_PROBLEMS]]
    if len(others) > MORE_PROBLEMS:
        lines.append(f"  ({len(others) - MORE_PROBLEMS} more; --json lists them)")
    return lines


def write_atomically(path: Path, chunks: Iterable[bytes]) -> tuple[int, int]:
    """Writes ``chunks`` to a temporary file (mode 0600) next to ``path`` and renames it
    into place, so ``path`` is either the whole new content or untouched. Returns (bytes,
    lines) written. Raises InvalidInput naming the file when it cannot be written."""
    import tempfile

    size = lines = 0
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise err.InvalidInput(f"cannot write {path}: {exc.strerror}", field="output") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                size += len(chunk)
                lines += chunk.count(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return size, lines


# --- streaming downloads -----------------------------------------------------------------


class DownloadClient(ApiClient):
    """An ApiClient that hands a response body over in chunks instead of reading it whole
    (exports can be far larger than memory should hold)."""

    def __enter__(self) -> DownloadClient:
        return self

    def chunks(self, path: str, params: dict[str, Any]) -> Iterator[bytes]:
        """Yields the body of ``GET path`` as it arrives. Raises the server's error as a
        CofferError before yielding anything, and ServerUnreachable when the transfer
        breaks off."""
        import httpx

        token = self._settings.token
        if not token:
            raise err.Unauthenticated("no token: run `coffer login` or set COFFER_TOKEN")
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with self._http.stream("GET", path, params=params, headers=headers) as response:
                if not response.is_success:
                    response.read()
                    raise self._error(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise err.ServerUnreachable(
                f"cannot reach the coffer server at {self.addr}, or the download broke off "
                f"({exc.__class__.__name__}: {exc})"
            ) from None


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

    with DownloadClient(load_client_settings(), timeout=EXPORT_TIMEOUT_S) as client:
        chunks = client.chunks(f"{AUDIT}/export", params)
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
