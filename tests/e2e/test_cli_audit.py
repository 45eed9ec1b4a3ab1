"""`coffer audit` typed into the CLI against real servers. On each backend: listing with
filters and pages, live verification, export formats, inclusion proofs and pruning. On one
SQLite vault (what does not depend on the backend, and what edits the database file): the
public key, exports verified offline and attacked line by line, bad input, terminal-safe
listing, attacks on the database behind the running server, and witness files against a
restored older copy of the database.

Servers seal every second and sign a checkpoint whenever verify, export or proof asks, so the
tests never wait for the log: they call one of those and read what it reports.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from tests.e2e.harness import (
    Cli,
    ServerProcess,
    base_env,
    failed,
    ok,
    ok_json,
    start_server,
    unique_name,
)

OK, INVALID_INPUT, NOT_FOUND, VERIFY_FAILED = 0, 2, 3, 9
PROD, DEV = "production", "development"
VERIFIED = re.compile(
    r"^verified: (\d+) entries, (\d+) checkpoints, tree size (\d+), latest checkpoint #(\d+) "
    r"signed \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ by key [0-9a-f]{16}\n$"
)
UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
T = TypeVar("T")


# --- helpers ---------------------------------------------------------------------------------


def not_verified(result: subprocess.CompletedProcess[str]) -> str:
    """Returns stdout of a verification that must fail: exit 9, a FAILED line first."""
    assert result.returncode == VERIFY_FAILED, (
        f"expected exit {VERIFY_FAILED}, got {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert result.stdout.startswith("FAILED: "), result.stdout
    return result.stdout


def secrets_file(directory: Path, values: dict[str, str]) -> Path:
    """Writes ``values`` as a JSON file for `coffer import` (one call, many secrets)."""
    path = directory / f"secrets-{len(list(directory.glob('secrets-*')))}.json"
    path.write_text(json.dumps(values))
    return path


def table_rows(stdout: str) -> list[str]:
    """The data rows of a Rich table (lines that start with the row border)."""
    return [line for line in stdout.splitlines() if line.startswith("│")]


@dataclass
class Trail:
    """A project with a few secrets written and read, on the module's server."""

    server: ServerProcess
    cli: Cli
    base: Path
    project: str

    def export(self, name: str) -> Path:
        """Exports the log as JSONL to ``name`` in the test directory; returns its path."""
        path = self.base / name
        result = self.cli("audit", "export", "-o", str(path))
        assert ok(result) == ""
        assert re.fullmatch(rf"Wrote \d+ lines \(\d+ bytes\) of jsonl to {path}\n", result.stderr)
        return path


@pytest.fixture(scope="module")
def trail(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Trail:
    """Three production secrets and one development secret written, one of them read."""
    assert server.token is not None
    base = tmp_path_factory.mktemp("audit-trail")
    cli = Cli(base_env(base, {"COFFER_ADDR": server.addr, "COFFER_TOKEN": server.token}), base)
    project = unique_name("audit")
    ok(cli("projects", "create", project))
    production = secrets_file(base, {"db/password": "pw-1", "db/user": "app", "api/token": "t"})
    for result in cli.many(
        ("import", str(production), "-p", project, "-e", PROD),
        ("secrets", "set", "DEBUG", "1", "-p", project, "-e", DEV),
    ):
        ok(result)
    ok(cli("secrets", "get", "db/password", "-p", project, "-e", PROD))
    return Trail(server, cli, base, project)


# --- on each backend: listing, live verification, export formats, proofs, pruning --------------


def test_list_shows_a_readable_table_newest_first(trail: Trail) -> None:
    """The table has one row per entry, newest first, with UTC times, actor and place."""
    out = ok(trail.cli("audit", "list", "--project", trail.project))
    assert out.startswith("Audit log")
    header = next(line for line in out.splitlines() if line.startswith("┃"))
    for column in ("time (UTC)", "id", "action", "actor", "where", "key", "source IP", "result"):
        assert column in header
    rows = table_rows(out)
    assert len(rows) == 6, out  # project.created, 4 x secret.created, secret.read
    assert "secret.read" in rows[0] and "project.created" in rows[-1]
    newest = rows[0]
    assert UTC_TIME.search(newest)
    assert f"{trail.project}/{PROD}" in newest and "db/password" in newest
    assert "bootstrap …" in newest and "127.0.0.1" in newest and "success" in newest
    assert "More entries" not in out


def test_list_filters_by_action_key_environment_actor_and_time(trail: Trail) -> None:
    """Each filter narrows the list the way its help says."""
    base = ("audit", "list", "--project", trail.project, "--json")
    reads, db_keys, dev, creations, old = trail.cli.many(
        (*base, "--action", "secret.read"),
        (*base, "--key", "db/*"),
        (*base, "--env", DEV),
        (*base, "--action", "secret.*", "--since", "1h", "--until", "2999-01-01"),
        (*base, "--until", "946684800"),  # 2000-01-01
    )
    assert [e["action"] for e in ok_json(reads)["entries"]] == ["secret.read"]
    assert sorted(e["key"] for e in ok_json(db_keys)["entries"]) == [
        "db/password", "db/password", "db/user",
    ]  # fmt: skip
    assert [(e["key"], e["environment"]) for e in ok_json(dev)["entries"]] == [("DEBUG", DEV)]
    assert len(ok_json(creations)["entries"]) == 5
    assert ok_json(old) == {"entries": [], "next": None}

    actor = ok_json(reads)["entries"][0]["actor"]["id"]
    since = ("--since", "2020-01-01T00:00:00Z")
    by_actor = ok_json(trail.cli(*base, "--actor", actor, *since))["entries"]
    assert len(by_actor) == 6 and {e["actor"]["id"] for e in by_actor} == {actor}


def test_list_pages_with_a_cursor(trail: Trail) -> None:
    """--limit cuts a page and prints the cursor; --cursor continues; --all-pages follows it."""
    base = ("audit", "list", "--project", trail.project, "--limit", "4")
    first = ok(trail.cli(*base))
    hint = re.search(r"More entries: repeat with --cursor (\S+) \(or --all-pages\)\n", first)
    assert hint, first
    every, second = (
        ok_json(result)
        for result in trail.cli.many(
            (*base, "--all-pages", "--json"), (*base, "--cursor", hint[1], "--json")
        )
    )
    assert second["next"] is None and every["next"] is None
    ids = [e["id"] for e in every["entries"]]
    assert len(ids) == len(set(ids)) == 6
    assert [row.split("│")[2].strip() for row in table_rows(first)] == ids[:4]
    assert [e["id"] for e in second["entries"]] == ids[4:]


def test_verify_checks_the_live_log(trail: Trail) -> None:
    """`coffer audit verify` exits 0 with one summary line; --json gives the report."""
    text, report = trail.cli.many(("audit", "verify"), ("audit", "verify", "--json"))
    found = VERIFIED.match(ok(text))
    assert found, text.stdout
    assert int(found.group(1)) >= 7 and int(found.group(2)) >= 1
    data = ok_json(report)
    assert data["ok"] is True and data["problems"] == [] and data["first_problem"] is None
    assert data["latest_checkpoint"]["tree_size"] == data["tree_size"]


def test_export_streams_each_format(trail: Trail) -> None:
    """JSONL, CEF and syslog go to stdout, one line per entry, the project's entries in each."""
    jsonl, cef, syslog = trail.cli.many(
        ("audit", "export"),
        ("audit", "export", "--format", "cef", "--since", "1h"),
        ("audit", "export", "--format", "syslog", "--since", "1h"),
    )
    assert json.loads(ok(jsonl).splitlines()[0])["type"] == "header"
    cef_lines = [line for line in ok(cef).splitlines() if trail.project in line]
    assert len(cef_lines) >= 6 and all(line.startswith("CEF:0|coffer|") for line in cef_lines)
    syslog_lines = [line for line in ok(syslog).splitlines() if trail.project in line]
    assert len(syslog_lines) >= 6 and all(line.startswith("<") for line in syslog_lines)
    assert cef.stderr == syslog.stderr == ""


def test_proof_is_checked_locally(trail: Trail) -> None:
    """An entry's inclusion proof, checked here with the server's key, verifies; an unknown
    entry exits 3."""
    listed = ok_json(trail.cli("audit", "list", "--project", trail.project, "--json"))
    entry_id = listed["entries"][-1]["id"]
    served, unknown = trail.cli.many(
        ("audit", "proof", entry_id), ("audit", "proof", "01NOSUCHENTRY0000000000000")
    )
    assert re.fullmatch(
        rf"entry {entry_id} \(#\d+\) is in checkpoint #\d+ \(size \d+\) signed \S+ by key "
        r"[0-9a-f]{16}: proof verified\n",
        ok(served),
    )
    assert "no sealed audit entry" in failed(unknown, NOT_FOUND)


def test_prune_keeps_recent_entries_and_records_itself(trail: Trail) -> None:
    """Pruning with nothing older than the period removes nothing and is recorded."""
    out = ok(trail.cli("audit", "prune", "--days", "3650", "--yes"))
    assert re.fullmatch(r"Pruned 0 entries; the log now starts at entry #\d+\n", out)
    pruned = ok_json(trail.cli("audit", "list", "--action", "audit.pruned", "--json"))
    assert pruned["entries"][0]["metadata"]["removed"] == 0


# --- on one SQLite vault: public key, offline verification, bad input, terminal safety -----


@dataclass
class SqliteVault(Trail):
    """A trail on a SQLite vault of its own, whose database file a test may edit."""

    @property
    def database(self) -> Path:
        """The vault's SQLite file."""
        return self.server.directory / "coffer.db"

    def tamper(self, change: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``change`` in one transaction on the database file, behind the server's back."""
        with closing(sqlite3.connect(self.database, timeout=10)) as db, db:
            return change(db)


@pytest.fixture(scope="module")
def sqlite_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteVault]:
    """A server on a new SQLite vault where six secrets were written and the log verified
    (the tests that need one backend only, and those that edit the database, use it)."""
    base = tmp_path_factory.mktemp("sqlite-vault")
    server = start_server(base / "vault", None, base / "server.log", base)
    assert server.token is not None
    try:
        cli = Cli(base_env(base, {"COFFER_ADDR": server.addr, "COFFER_TOKEN": server.token}), base)
        ok(cli("projects", "create", "web"))
        values = secrets_file(base, {f"k{n}": f"v{n}" for n in range(6)})
        ok(cli("import", str(values), "-p", "web", "-e", PROD))
        ok(cli("audit", "verify"))
        yield SqliteVault(server, cli, base, "web")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def public_key(sqlite_vault: SqliteVault) -> Path:
    """The server's audit public key, saved with `coffer audit public-key -o`."""
    path = sqlite_vault.base / "audit-key.pem"
    result = sqlite_vault.cli("audit", "public-key", "-o", str(path))
    assert ok(result) == ""
    assert "Wrote the audit public key (key id " in result.stderr
    return path


@pytest.fixture(scope="module")
def exported(sqlite_vault: SqliteVault) -> Path:
    """The log exported as JSONL once the vault was set up."""
    return sqlite_vault.export("trail.jsonl")


def test_public_key_prints_pem_or_base64(sqlite_vault: SqliteVault, public_key: Path) -> None:
    """The key prints as PEM by default, as base64 with --base64, the same key both ways."""
    from coffer.crypto.audit_keys import AuditPublicKey

    pem, raw, both = sqlite_vault.cli.many(
        ("audit", "public-key"),
        ("audit", "public-key", "--base64"),
        ("audit", "public-key", "--pem", "--base64"),
    )
    assert ok(pem) == public_key.read_text()
    assert pem.stdout.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert re.fullmatch(r"[A-Za-z0-9+/]{43}=\n", ok(raw))
    assert AuditPublicKey.from_text(raw.stdout).raw == AuditPublicKey.from_text(pem.stdout).raw
    assert "--base64" in failed(both, INVALID_INPUT)


def test_export_verifies_offline_with_the_public_key(
    sqlite_vault: SqliteVault, public_key: Path, exported: Path
) -> None:
    """An exported file verifies with only the public key (PEM or base64), no server."""
    header = json.loads(exported.read_bytes().splitlines()[0])
    assert header["format"] == "coffer-audit-export/v1"
    b64 = sqlite_vault.base / "audit-key.b64"
    ok(sqlite_vault.cli("audit", "public-key", "--base64", "-o", str(b64)))
    auditor = sqlite_vault.base / "auditor"  # no address, no token
    offline = Cli(base_env(auditor), sqlite_vault.base)
    pem_check, b64_check = offline.many(
        ("audit", "verify", "--export", str(exported), "--public-key", str(public_key)),
        ("audit", "verify", "--export", str(exported), "--public-key", str(b64)),
    )
    for result in (pem_check, b64_check):
        found = VERIFIED.match(ok(result))
        assert found, result.stdout
        assert int(found.group(3)) == header["checkpoint"]["tree_size"]
        assert int(found.group(4)) == header["checkpoint"]["seq"]


def test_proof_is_checked_against_the_key_you_give(
    sqlite_vault: SqliteVault, public_key: Path, tmp_path: Path
) -> None:
    """With --public-key the proof's checkpoint must carry that key's signature: the vault's
    key verifies, a stranger's exits 9."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    listed = ok_json(sqlite_vault.cli("audit", "list", "--key", "k1", "--json"))
    entry_id = listed["entries"][0]["id"]
    pinned, foreign = sqlite_vault.cli.many(
        ("audit", "proof", entry_id, "--public-key", str(public_key), "--json"),
        ("audit", "proof", entry_id, "--public-key", str(stranger)),
    )
    data = ok_json(pinned)
    assert data["verified"] is True and data["problem"] is None
    assert data["entry"]["id"] == entry_id and data["entry"]["key"] == "k1"
    assert re.fullmatch(
        r"FAILED: checkpoint #\d+ is not signed by this public key\n", not_verified(foreign)
    )


def _raw_request_with_user_agent(server: ServerProcess, path: str, user_agent: bytes) -> bytes:
    """Sends one GET with ``user_agent`` as raw header bytes (HTTP clients refuse such
    bytes; an attacker's client does not) and returns the status line."""
    assert server.token is not None
    request = (
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.token}\r\n"
            "Connection: close\r\n"
        ).encode()
        + b"User-Agent: "
        + user_agent
        + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(request)
        return conn.recv(64).split(b"\r\n")[0]


def _append_entry_as_coffer(server: ServerProcess, key: str, user_agent: str) -> str:
    """Appends an entry for the vault's organization with the vault's own keys, as the server
    would for a key name that today's name rules refuse (an older version's, say); returns
    its id."""
    from coffer.audit.writer import AuditWriter
    from coffer.bootstrap import audit_keys_for
    from coffer.crypto.keys import load_root_key
    from coffer.domain.events import Event
    from coffer.domain.models import Actor, ActorKind, CallContext
    from coffer.storage.database import create_engine

    keys = audit_keys_for(load_root_key(env_value=None, key_file=server.directory / "root.key"))
    engine = create_engine(server.database_url or f"sqlite:///{server.directory / 'coffer.db'}")
    try:
        with engine.begin() as conn:
            org_id = conn.execute(sa.text("SELECT id FROM organizations")).scalar_one()
            actor = Actor("01HOSTILEACTOR0000000000AA", ActorKind.MACHINE, org_id, "hostile")
            ctx = CallContext(actor, source_ip="127.0.0.1", user_agent=user_agent)
            return AuditWriter(keys).append(
                conn, ctx, Event.SECRET_READ, project="hostile", environment=PROD, key=key
            )
    finally:
        engine.dispose()


def test_control_characters_in_entries_never_reach_the_terminal_raw(
    sqlite_vault: SqliteVault,
) -> None:
    """ESC, newlines, C1 controls and bidi overrides in keys and user agents are shown as
    visible escapes, each entry on one row, and no markup is interpreted."""
    server, path = sqlite_vault.server, f"/api/v1/projects/web/environments/{PROD}/secrets/k0"
    status = _raw_request_with_user_agent(server, path, b"probe\x9b31mred\xe2\x80\xae")
    assert status == b"HTTP/1.1 200 OK"
    hostile_id = _append_entry_as_coffer(
        server, "evil\x1b[31m\nFAKE ROW [bold]x[/bold]", "agent\x1b]0;pwned\x07\r"
    )

    probe, hostile = sqlite_vault.cli.many(
        ("audit", "list", "--project", "web", "--key", "k0", "--action", "secret.read"),
        ("audit", "list", "--project", "hostile"),
    )
    for out in (ok(probe), ok(hostile)):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", out), repr(out)
    assert "probe\\x9b31mred\u00e2\\x80\u00ae" in probe.stdout  # header bytes read as latin-1
    rows = table_rows(hostile.stdout)
    assert len(rows) == 1 and hostile_id in rows[0], hostile.stdout
    assert "evil\\x1b[31m\\nFAKE ROW [bold]x[/bold]" in rows[0]
    assert "agent\\x1b]0;pwned\\x07\\r" in rows[0]


def _entry_lines(lines: list[bytes]) -> list[int]:
    """Positions of the entry lines (not the header or checkpoints) of an export."""
    return [n for n, line in enumerate(lines) if line.startswith(b'{"_leaf"')]


def _index(line: bytes) -> int:
    return int(json.loads(line)["index"])


def _edit(lines: list[bytes]) -> tuple[list[bytes], str]:
    """Changes the key of the k2 entry; expects that entry's id named."""
    at = next(n for n in _entry_lines(lines) if b'"key":"k2"' in lines[n])
    changed = list(lines)
    changed[at] = lines[at].replace(b'"key":"k2"', b'"key":"k9"')
    return changed, str(json.loads(lines[at])["id"])


def _delete(lines: list[bytes]) -> tuple[list[bytes], str]:
    """Removes an entry line in the middle; expects its index named as missing."""
    entries = _entry_lines(lines)
    at = entries[len(entries) // 2]
    return lines[:at] + lines[at + 1 :], f"entry #{_index(lines[at])} is missing"


def _swap(lines: list[bytes]) -> tuple[list[bytes], str]:
    """Swaps two neighbouring entry lines; expects the first position named."""
    entries = _entry_lines(lines)
    a, b = next((x, y) for x, y in pairwise(entries) if y == x + 1)
    swapped = list(lines)
    swapped[a], swapped[b] = lines[b], lines[a]
    return swapped, f"#{_index(lines[a])}"


def _truncate(lines: list[bytes]) -> tuple[list[bytes], str]:
    """Cuts the last three entries off; expects the cut reported against the checkpoint."""
    cut = _entry_lines(lines)[-3]
    return lines[:cut], f"entries #{_index(lines[cut])} to"


def _replay(lines: list[bytes]) -> tuple[list[bytes], str]:
    """Appends a copy of the first checkpoint line; expects a replayed checkpoint."""
    first = next(line for line in lines[1:] if b'"type":"checkpoint"' in line)
    return [*lines, first], "an old checkpoint was replayed"


EXPORT_ATTACKS: dict[str, Callable[[list[bytes]], tuple[list[bytes], str]]] = {
    "edit": _edit,
    "delete": _delete,
    "swap": _swap,
    "truncate": _truncate,
    "replay": _replay,
}


def test_each_edit_of_an_export_fails_offline_verification(
    sqlite_vault: SqliteVault, public_key: Path, exported: Path
) -> None:
    """An edited, deleted, swapped, truncated or checkpoint-replayed export exits 9 with a
    FAILED line naming the entry or the problem."""
    lines = exported.read_bytes().splitlines(keepends=True)
    expected: dict[str, str] = {}
    for name, attack in EXPORT_ATTACKS.items():
        changed, expected[name] = attack(lines)
        (sqlite_vault.base / f"{name}.jsonl").write_bytes(b"".join(changed))
    results = sqlite_vault.cli.many(
        *(
            ("audit", "verify", "--export", str(sqlite_vault.base / f"{name}.jsonl"),
             "--public-key", str(public_key))
            for name in EXPORT_ATTACKS
        )
    )  # fmt: skip
    for name, result in zip(EXPORT_ATTACKS, results, strict=True):
        first = not_verified(result).splitlines()[0]
        assert expected[name] in first, f"{name}: {result.stdout}"


def test_not_an_export_or_not_a_key_is_invalid_input(
    sqlite_vault: SqliteVault, public_key: Path, exported: Path
) -> None:
    """A file that is no export, a key file that is no key, or --export alone exits 2."""
    junk = sqlite_vault.base / "junk.txt"
    junk.write_bytes(b"\x00\x01 not json\n")
    no_export, no_key, alone, missing = sqlite_vault.cli.many(
        ("audit", "verify", "--export", str(junk), "--public-key", str(public_key)),
        ("audit", "verify", "--export", str(exported), "--public-key", str(exported)),
        ("audit", "verify", "--export", str(exported)),
        ("audit", "verify", "--export", str(junk.with_name("nope")), "--public-key",
         str(public_key)),
    )  # fmt: skip
    assert "is not a coffer-audit-export/v1 header" in failed(no_export, INVALID_INPUT)
    assert failed(no_key, INVALID_INPUT).startswith("error [public_key]: --public-key ")
    assert "go together" in failed(alone, INVALID_INPUT)
    assert "cannot read" in failed(missing, INVALID_INPUT)


def test_witness_catches_an_older_export(
    sqlite_vault: SqliteVault, public_key: Path, exported: Path
) -> None:
    """After a newer export verified with --witness, an older export fails as rolled back."""
    ok(sqlite_vault.cli("secrets", "set", "k0", "again", "-p", sqlite_vault.project, "-e", PROD))
    newer = sqlite_vault.export("newer.jsonl")
    witness = sqlite_vault.base / "export-witness.json"
    check = ("audit", "verify", "--public-key", str(public_key), "--witness", str(witness))
    ok(sqlite_vault.cli(*check, "--export", str(newer)))
    saved = json.loads(witness.read_text())
    assert saved["seq"] == json.loads(newer.read_bytes().splitlines()[0])["checkpoint"]["seq"]
    out = not_verified(sqlite_vault.cli(*check, "--export", str(exported)))
    assert f"checkpoint #{saved['seq']}" in out and "was seen before" in out
    assert json.loads(witness.read_text()) == saved  # a failed run leaves the witness alone


def test_list_refuses_bad_times_naming_the_option(sqlite_vault: SqliteVault) -> None:
    """A time that is neither Unix seconds, ISO 8601 nor a span exits 2 naming the option."""
    since, until = sqlite_vault.cli.many(
        ("audit", "list", "--since", "yesterday"),
        ("audit", "list", "--until", "5 parsecs"),
    )
    assert failed(since, INVALID_INPUT).startswith("error [since]: --since must be Unix seconds")
    assert "'yesterday'" in since.stderr
    assert failed(until, INVALID_INPUT).startswith("error [until]: --until must be Unix seconds")


def test_list_refuses_an_unknown_action_with_the_invalid_input_code(
    sqlite_vault: SqliteVault,
) -> None:
    """An action that is no event exits 2 with the server's message naming the parameter."""
    result = sqlite_vault.cli("audit", "list", "--action", "secret.stolen")
    assert result.stderr.startswith("error [action]: action: "), result.stderr
    assert result.returncode == INVALID_INPUT


# --- attacks on the SQLite database file of a running server ----------------------------------


Undo = Callable[[sqlite3.Connection], None]


def _sealed(db: sqlite3.Connection) -> list[tuple[int, str, str | None]]:
    """(leaf index, id, key) of every sealed entry, in index order."""
    return list(
        db.execute(
            "SELECT leaf_index, id, key FROM audit_log WHERE leaf_index IS NOT NULL "
            "ORDER BY leaf_index"
        )
    )


def _take_rows(db: sqlite3.Connection, where: str, *args: object) -> Undo:
    """Deletes the audit rows matching ``where``; returns what puts them back as they were,
    but for their row numbers (``seq``), which the running server may have reused since."""
    cursor = db.execute(f"SELECT * FROM audit_log WHERE {where}", args)  # noqa: S608 - ours
    columns = [d[0] for d in cursor.description]
    keep = [n for n, name in enumerate(columns) if name != "seq"]
    rows = [tuple(row[n] for n in keep) for row in cursor.fetchall()]
    db.execute(f"DELETE FROM audit_log WHERE {where}", args)  # noqa: S608 - ours
    names = ", ".join(columns[n] for n in keep)
    insert = f"INSERT INTO audit_log ({names}) VALUES ({', '.join('?' * len(keep))})"  # noqa: S608

    def put_back(conn: sqlite3.Connection) -> None:
        conn.executemany(insert, rows)

    return put_back


def _update_key(db: sqlite3.Connection) -> tuple[str, Undo]:
    """Renames the key of a sealed secret entry; expects that entry's id named."""
    index, entry_id, key = next(row for row in _sealed(db) if row[2] == "k3")

    def rename(conn: sqlite3.Connection, name: str | None) -> None:
        conn.execute("UPDATE audit_log SET key = ? WHERE leaf_index = ?", (name, index))

    rename(db, "k3-renamed")
    return entry_id, lambda conn: rename(conn, key)


def _delete_middle(db: sqlite3.Connection) -> tuple[str, Undo]:
    """Deletes a sealed entry in the middle; expects its index named as missing."""
    rows = _sealed(db)
    index = rows[len(rows) // 2][0]
    return f"entry #{index} is missing", _take_rows(db, "leaf_index = ?", index)


def _truncate_tail(db: sqlite3.Connection) -> tuple[str, Undo]:
    """Deletes the three newest sealed entries; expects the first of them named."""
    first = _sealed(db)[-3][0]
    return f"#{first}", _take_rows(db, "leaf_index >= ?", first)


def _insert_forged(db: sqlite3.Connection) -> tuple[str, Undo]:
    """Inserts a plausible row that coffer did not write (no MAC); expects its id named."""
    forged = "01FORGEDENTRY0000000000000"
    db.execute(
        "INSERT INTO audit_log (id, timestamp, action, actor_id, actor_kind, org_id, project,"
        " environment, key, source_ip, user_agent, result, metadata) SELECT ?, timestamp + 0.5,"
        " 'secret.read', actor_id, actor_kind, org_id, project, environment, key, source_ip,"
        " user_agent, 'success', '{}' FROM audit_log WHERE key = 'k1' LIMIT 1",
        (forged,),
    )

    def remove(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM audit_log WHERE id = ?", (forged,))

    return forged, remove


def _swap_indexes(db: sqlite3.Connection) -> tuple[str, Undo]:
    """Swaps the leaf indexes of two sealed entries; expects the first position named."""
    rows = _sealed(db)
    (a, id_a, _), (b, id_b, _) = rows[2], rows[3]

    def swap(conn: sqlite3.Connection, first: str, second: str) -> None:
        conn.execute("UPDATE audit_log SET leaf_index = -1 WHERE id = ?", (first,))
        conn.execute("UPDATE audit_log SET leaf_index = ? WHERE id = ?", (a, second))
        conn.execute("UPDATE audit_log SET leaf_index = ? WHERE id = ?", (b, first))

    swap(db, id_a, id_b)
    return f"#{a}", lambda undo: swap(undo, id_b, id_a)


DATABASE_ATTACKS: dict[str, Callable[[sqlite3.Connection], tuple[str, Undo]]] = {
    "update": _update_key,
    "delete": _delete_middle,
    "truncate": _truncate_tail,
    "insert": _insert_forged,
    "swap": _swap_indexes,
}


@pytest.mark.parametrize("attack", list(DATABASE_ATTACKS))
def test_each_attack_on_the_database_fails_live_verification(
    attack: str, sqlite_vault: SqliteVault
) -> None:
    """Editing the SQLite file behind the running server makes `coffer audit verify` exit 9
    naming the bad entry's id or index (the edit is undone afterwards)."""
    expected, undo = sqlite_vault.tamper(DATABASE_ATTACKS[attack])
    try:
        out = not_verified(sqlite_vault.cli("audit", "verify"))
    finally:
        sqlite_vault.tamper(undo)
    assert expected in out.splitlines()[0], out


@dataclass
class RolledBack:
    """A copy of the vault taken earlier, and a witness saved after the vault moved on."""

    older: Path
    witness: Path
    token: str


@pytest.fixture(scope="module")
def rolled_back(sqlite_vault: SqliteVault) -> RolledBack:
    """Copies the vault (database by SQLite's backup API, and the key), then writes more and
    verifies with --witness, which saves the newer checkpoint."""
    older = sqlite_vault.base / "older"
    older.mkdir()
    with (
        closing(sqlite3.connect(sqlite_vault.database)) as live,
        closing(sqlite3.connect(older / "coffer.db")) as copy,
    ):
        live.backup(copy)
    shutil.copy2(sqlite_vault.server.directory / "root.key", older / "root.key")
    cli = sqlite_vault.cli
    newer = secrets_file(sqlite_vault.base, {f"k{n}": "new" for n in range(3)})
    ok(cli("import", str(newer), "-p", "web", "-e", PROD))
    witness = sqlite_vault.base / "witness.json"
    assert VERIFIED.match(ok(cli("audit", "verify", "--witness", str(witness))))
    assert sqlite_vault.server.token is not None
    return RolledBack(older, witness, sqlite_vault.server.token)


@pytest.fixture
def restored(rolled_back: RolledBack, tmp_path: Path) -> Iterator[Cli]:
    """A server started on a fresh copy of the older vault, as after restoring a backup."""
    vault = tmp_path / "restored"
    shutil.copytree(rolled_back.older, vault)
    server = start_server(vault, None, tmp_path / "server.log", tmp_path)
    try:
        yield Cli(
            base_env(tmp_path, {"COFFER_ADDR": server.addr, "COFFER_TOKEN": rolled_back.token}),
            tmp_path,
        )
    finally:
        server.stop()


def test_witness_catches_a_restored_older_database(rolled_back: RolledBack, restored: Cli) -> None:
    """An older copy of the database verifies on its own, but fails against the witness."""
    saved = json.loads(rolled_back.witness.read_text())
    assert VERIFIED.match(ok(restored("audit", "verify")))
    out = not_verified(restored("audit", "verify", "--witness", str(rolled_back.witness)))
    assert f"checkpoint #{saved['seq']} (size {saved['tree_size']}) was seen before" in out
    assert json.loads(rolled_back.witness.read_text()) == saved  # left as it was


def test_witness_catches_a_restored_database_that_grew_again(
    rolled_back: RolledBack, restored: Cli, tmp_path: Path
) -> None:
    """An older database that then grew past the witness's checkpoint still fails against it."""
    saved = json.loads(rolled_back.witness.read_text())
    dotenv = tmp_path / "more.env"
    dotenv.write_text("".join(f"GROWN_{n}=x\n" for n in range(saved["tree_size"])))
    ok(restored("import", str(dotenv), "-p", "web", "-e", PROD))
    ok(restored("audit", "verify"))
    latest = ok_json(restored("audit", "verify", "--json"))["latest_checkpoint"]
    assert latest["seq"] > saved["seq"] and latest["tree_size"] > saved["tree_size"]
    result = restored("audit", "verify", "--witness", str(rolled_back.witness))
    assert result.returncode == VERIFY_FAILED, result.stdout
    assert result.stdout.startswith("FAILED: "), result.stdout
