"""Ephemeral secrets typed into the CLI against a real server, on each backend: read limits that
burn or seal, TTLs, ``info`` that counts nothing, ``reset``, standalone ``coffer ephemeral``
secrets, client-encrypted share links, ``coffer prune``, and the errors a user sees.

The module's server runs with ``COFFER_PRUNE_INTERVAL=0``: only ``coffer prune`` and reads
remove expired secrets, so what each step shows is exact."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest

from tests.e2e.harness import (
    Cli,
    Database,
    ServerProcess,
    failed,
    ok,
    ok_json,
    start_server,
    unique_name,
)

OK, INVALID_INPUT, NOT_FOUND, UNAUTHENTICATED, CONFLICT = 0, 2, 3, 4, 5
DEV = "development"
ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
KEY_TEXT = r"[A-Za-z0-9_-]{43}"
SHARE_GONE = (
    "error [token]: share not found: the link is wrong, has expired or was already opened\n"
)
NO_LIMITS = "limits:          none (reads are not counted)\n"


@pytest.fixture(scope="module")
def server(
    module_database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The module's ``coffer server`` (as in conftest), with the background pruner off."""
    base = tmp_path_factory.mktemp(f"ephemeral-{module_database.backend}")
    vault_dir = base / "vault"
    home = base / "home"
    home.mkdir()
    process = start_server(
        vault_dir,
        module_database.url_for(vault_dir),
        base / "server.log",
        home,
        extra_env={"COFFER_PRUNE_INTERVAL": "0"},
    )
    assert process.token, f"no bootstrap token on first start:\n{process.log_text()}"
    try:
        yield process
    finally:
        process.stop()


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The rows of a Rich table keyed by their first cell, each as its stripped cells."""
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            rows[cells[0]] = cells
    return rows


def table_header(stdout: str) -> list[str]:
    """The column names of a Rich table."""
    line = next(line for line in stdout.splitlines() if line.startswith("┃"))
    return [cell.strip() for cell in line.strip("┃").split("┃")]


def info_text(**facts: object) -> str:
    """What ``info`` prints: one aligned ``label: value`` line per fact, in the given order."""
    return "".join(
        f"{label.replace('_', ' ') + ':':<17}{value}\n" for label, value in facts.items()
    )


def wait_past(expires_at: str) -> None:
    """Sleeps until the (shared) clock is past an RFC 3339 expiry the server reported."""
    moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00")).timestamp()
    time.sleep(max(0.0, moment - time.time()) + 0.1)


def seconds_between(start: str, end: str) -> int:
    """Whole seconds from one RFC 3339 time to another."""
    parse = datetime.fromisoformat
    delta = parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))
    return round(delta.total_seconds())


@pytest.fixture
def project(cli: Cli) -> tuple[str, ...]:
    """A new project; returns the ``-p P -e development`` options for its development env."""
    name = unique_name("eph")
    ok(cli("projects", "create", name))
    return ("-p", name, "-e", DEV)


# --- read limits and TTLs on vault secrets ---------------------------------------------------


def test_read_limit_burns_the_secret_after_the_last_read(
    cli: Cli, project: tuple[str, ...]
) -> None:
    """--reads 2: two reads print the value, the third exits 3 as if it never existed."""
    out = ok(cli("secrets", "set", "API_KEY", "k-123", *project, "--reads", "2"))
    assert out == "Created API_KEY (version 1): 2 of 2 reads left, then burned\n"
    ok(cli("secrets", "set", "PLAIN", "p-1", *project))
    table = ok(cli("secrets", "list", *project))
    assert table_header(table) == ["key", "version", "updated", "reads left", "expires", "status"]
    rows = table_rows(table)
    assert rows["API_KEY"][3:] == ["2 of 2", "", "active"]
    assert rows["PLAIN"][3:] == ["", "", ""]

    assert ok(cli("secrets", "get", "API_KEY", *project)) == "k-123\n"
    got = ok_json(cli("secrets", "get", "API_KEY", *project, "--json"))
    assert got == {
        **got,
        "key": "API_KEY",
        "version": 1,
        "value": "k-123",
        "limits": {
            "status": "active",
            "expires_at": None,
            "max_reads": 2,
            "read_count": 2,
            "reads_remaining": 0,
            "delete": True,
        },
    }
    stderr = failed(cli("secrets", "get", "API_KEY", *project), NOT_FOUND)
    assert stderr == "error [key]: secret 'API_KEY' not found in environment 'development'\n"
    listed = ok_json(cli("secrets", "list", *project, "--json"))
    assert [secret["key"] for secret in listed["secrets"]] == ["PLAIN"]
    # Without limits nothing changes: the table has no limit columns, JSON no limits.
    assert table_header(ok(cli("secrets", "list", *project))) == ["key", "version", "updated"]
    assert "limits" not in listed["secrets"][0]
    assert "limits" not in ok_json(cli("secrets", "get", "PLAIN", *project, "--json"))


def test_no_delete_seals_and_reset_reopens(cli: Cli, project: tuple[str, ...]) -> None:
    """--no-delete: the last read seals the secret (exit 3 saying so); `secrets reset` makes it
    readable again, with new limits when given."""
    out = ok(cli("secrets", "set", "ROOT_PW", "hunter2", *project, "--reads", "1", "--no-delete"))
    assert out == "Created ROOT_PW (version 1): 1 of 1 read left, then sealed\n"
    assert ok(cli("secrets", "get", "ROOT_PW", *project)) == "hunter2\n"
    stderr = failed(cli("secrets", "get", "ROOT_PW", *project), NOT_FOUND)
    assert stderr == (
        "error [key]: secret 'ROOT_PW' is sealed: its read limit was reached; someone who may "
        "write it must reset it\n"
    )
    # info still describes a sealed secret (exit 0); the list shows it sealed.
    assert ok(cli("secrets", "info", "ROOT_PW", *project)) == info_text(
        status="sealed", version=1, read_count=1, max_reads=1, reads_remaining=0
    )
    assert table_rows(ok(cli("secrets", "list", *project)))["ROOT_PW"][3:] == [
        "0 of 1",
        "",
        "sealed",
    ]

    assert ok(cli("secrets", "reset", "ROOT_PW", *project)) == (
        "Reset ROOT_PW: 1 of 1 read left, then sealed\n"
    )
    assert ok(cli("secrets", "get", "ROOT_PW", *project)) == "hunter2\n"
    reset = ok_json(
        cli("secrets", "reset", "ROOT_PW", *project, "--reads", "3", "--burn", "--json")
    )
    assert reset["limits"] == {
        "status": "active",
        "expires_at": None,
        "max_reads": 3,
        "read_count": 0,
        "reads_remaining": 3,
        "delete": True,
    }
    out = ok(cli("secrets", "reset", "ROOT_PW", *project, "--ttl", "2h", "--seal"))
    expires = ok_json(cli("secrets", "info", "ROOT_PW", *project, "--json"))["expires_at"]
    assert out == f"Reset ROOT_PW: 3 of 3 reads left, then sealed; expires {expires}\n"
    assert ok(cli("secrets", "reset", "ROOT_PW", *project, "--no-reads", "--no-ttl")) == (
        "Reset ROOT_PW: no limits\n"
    )
    assert ok(cli("secrets", "info", "ROOT_PW", *project)) == (
        info_text(status="active", version=1) + NO_LIMITS
    )
    stderr = failed(
        cli("secrets", "reset", "ROOT_PW", *project, "--reads", "2", "--no-reads"), INVALID_INPUT
    )
    assert stderr == "error [max_reads]: give --reads or --no-reads, not both\n"
    stderr = failed(cli("secrets", "reset", "NOPE", *project), NOT_FOUND)
    assert stderr == "error [key]: secret 'NOPE' not found in environment 'development'\n"


def test_a_new_version_keeps_the_limits_and_export_counts_reads(
    cli: Cli, project: tuple[str, ...]
) -> None:
    """A new version without --reads keeps the limit and counts afresh; export reads it like
    `get` does, so the export and one get use up two reads."""
    ok(cli("secrets", "set", "TOKEN", "t-1", *project, "--reads", "2"))
    assert ok(cli("secrets", "get", "TOKEN", *project)) == "t-1\n"
    out = ok(cli("secrets", "set", "TOKEN", "t-2", *project))
    assert out == "Updated TOKEN (version 2): 2 of 2 reads left, then burned\n"
    assert json.loads(ok(cli("export", *project, "--format", "json"))) == {"TOKEN": "t-2"}
    assert ok(cli("secrets", "get", "TOKEN", *project)) == "t-2\n"
    assert failed(cli("secrets", "get", "TOKEN", *project), NOT_FOUND) == (
        "error [key]: secret 'TOKEN' not found in environment 'development'\n"
    )


def test_info_counts_nothing(cli: Cli, project: tuple[str, ...]) -> None:
    """info (HEAD) three times, even at once, leaves the one allowed read to `get`."""
    written = ok_json(
        cli("secrets", "set", "ONCE", "o-1", *project, "--reads", "1", "--ttl", "1h", "--json")
    )
    expires = written["limits"]["expires_at"]
    (listed,) = ok_json(cli("secrets", "list", *project, "--json"))["secrets"]
    assert seconds_between(listed["updated_at"], expires) == 3600
    infos = cli.many(*[("secrets", "info", "ONCE", *project)] * 3)
    expected = info_text(
        status="active",
        version=1,
        read_count=0,
        max_reads=1,
        reads_remaining=1,
        expires_at=expires,
    )
    assert [ok(result) for result in infos] == [expected] * 3
    assert ok_json(cli("secrets", "info", "ONCE", *project, "--json")) == {
        "key": "ONCE",
        "status": "active",
        "version": 1,
        "read_count": 0,
        "max_reads": 1,
        "reads_remaining": 1,
        "expires_at": expires,
    }
    stranger = cli.with_env(COFFER_TOKEN="coffer_boot_not-a-real-token")
    assert failed(stranger("secrets", "info", "ONCE", *project), UNAUTHENTICATED) == (
        "error: the server refused the token (HTTP 401): it may have expired or been revoked; "
        "run `coffer login`\n"
    )
    assert ok(cli("secrets", "get", "ONCE", *project)) == "o-1\n"
    stderr = failed(cli("secrets", "info", "ONCE", *project), NOT_FOUND)
    assert stderr == f"error: secret 'ONCE' in {project[1]}/{DEV} not found\n"


def test_ttl_expiry_hides_the_secret(cli: Cli, project: tuple[str, ...]) -> None:
    """--ttl 1s: once past, list hides the secret and get and info exit 3."""
    written = ok_json(cli("secrets", "set", "SHORT", "s-1", *project, "--ttl", "1s", "--json"))
    assert written["limits"]["max_reads"] is None
    listed = ok_json(cli("secrets", "list", *project, "--json"))
    (short,) = listed["secrets"]
    assert seconds_between(short["created_at"], short["limits"]["expires_at"]) == 1
    wait_past(short["limits"]["expires_at"])
    assert ok_json(cli("secrets", "list", *project, "--json")) == {"secrets": []}
    assert failed(cli("secrets", "info", "SHORT", *project), NOT_FOUND) == (
        f"error: secret 'SHORT' in {project[1]}/{DEV} not found\n"
    )
    assert failed(cli("secrets", "get", "SHORT", *project), NOT_FOUND) == (
        "error [key]: secret 'SHORT' not found in environment 'development'\n"
    )


# --- standalone ephemeral secrets ------------------------------------------------------------


def test_ephemeral_secret_lifecycle(cli: Cli) -> None:
    """set, list, info, get, update, delete, with the TTL of one day by default."""
    name = f"deploy/otp-{uuid.uuid4().hex[:8]}"
    created = ok(cli("ephemeral", "set", name, "493021", "--reads", "2"))
    described = ok_json(cli("ephemeral", "info", name, "--json"))
    expires = described["expires_at"]
    assert created == (
        f"Created ephemeral secret {name}: 2 of 2 reads left, then burned; expires {expires}\n"
    )
    assert described == {
        "key": name,
        "status": "active",
        "read_count": 0,
        "max_reads": 2,
        "reads_remaining": 2,
        "expires_at": expires,
    }
    entry = next(
        s for s in ok_json(cli("ephemeral", "list", "--json"))["secrets"] if s["key"] == name
    )
    assert seconds_between(entry["created_at"], expires) == 86_400
    row = table_rows(ok(cli("ephemeral", "list")))[name]
    assert row[1:4] == ["2 of 2", f"{expires[:10]} {expires[11:16]}Z", "active"]
    assert ok(cli("ephemeral", "info", name)) == info_text(
        status="active", read_count=0, max_reads=2, reads_remaining=2, expires_at=expires
    )

    assert ok(cli("ephemeral", "get", name)) == "493021\n"
    out = ok(cli("ephemeral", "update", name, "--value", "-", "--reads", "3", input="772210\n"))
    assert out == (
        f"Updated ephemeral secret {name}: 3 of 3 reads left, then burned; expires {expires}\n"
    )
    assert ok_json(cli("ephemeral", "get", name, "--json")) == {
        "key": name,
        "value": "772210",
        "status": "active",
        "expires_at": expires,
        "max_reads": 3,
        "read_count": 1,
        "reads_remaining": 2,
        "delete": True,
    }
    reset = ok_json(cli("ephemeral", "update", name, "--reset", "--ttl", "1h", "--json"))
    assert reset["limits"]["read_count"] == 0
    new_expiry = reset["limits"]["expires_at"]
    assert new_expiry != expires
    assert ok_json(cli("ephemeral", "info", name, "--json"))["expires_at"] == new_expiry
    out = ok(cli("ephemeral", "update", name, "--no-reads"))
    assert out == (f"Updated ephemeral secret {name}: expires {reset['limits']['expires_at']}\n")
    stderr = failed(cli("ephemeral", "update", name), INVALID_INPUT)
    assert stderr == (
        "error: nothing to change: give --value, --ttl, --reads, --no-reads, --reset, --burn "
        "or --seal\n"
    )
    stderr = failed(cli("ephemeral", "set", name, "again"), CONFLICT)
    assert stderr == (
        f"error [key]: ephemeral secret '{name}' already exists; change it with PATCH or "
        "delete it first\n"
    )

    assert ok(cli("ephemeral", "delete", name)) == f"Deleted ephemeral secret {name}\n"
    gone_get, gone_info, gone_delete, listed = cli.many(
        ("ephemeral", "get", name),
        ("ephemeral", "info", name),
        ("ephemeral", "delete", name),
        ("ephemeral", "list", "--json"),
    )
    assert failed(gone_get, NOT_FOUND) == f"error [key]: ephemeral secret '{name}' not found\n"
    assert failed(gone_info, NOT_FOUND) == f"error: ephemeral secret '{name}' not found\n"
    assert failed(gone_delete, NOT_FOUND) == f"error [key]: ephemeral secret '{name}' not found\n"
    assert name not in [s["key"] for s in ok_json(listed)["secrets"]]


def test_ephemeral_values_from_stdin_seal_and_burn(cli: Cli) -> None:
    """A multi-line value from stdin comes back exactly; --no-delete seals at the last read
    and `update --reset` reopens; without --no-delete the last read burns it."""
    sealed, burned = (f"e2e/{kind}-{uuid.uuid4().hex[:8]}" for kind in ("sealed", "burned"))
    value = "line one\n  line two\twith a tab\n\nünïcødé ✓"
    ok(cli("ephemeral", "set", sealed, "-", "--reads", "1", "--no-delete", input=value + "\n"))
    assert ok(cli("ephemeral", "get", sealed)) == value + "\n"
    assert failed(cli("ephemeral", "get", sealed), NOT_FOUND) == (
        f"error [key]: ephemeral secret '{sealed}' is sealed: its read limit was reached; its "
        "creator or an admin must reset it\n"
    )
    described = ok_json(cli("ephemeral", "info", sealed, "--json"))
    assert (described["status"], described["reads_remaining"]) == ("sealed", 0)
    ok(cli("ephemeral", "update", sealed, "--reset"))
    assert ok(cli("ephemeral", "get", sealed)) == value + "\n"

    ok(cli("ephemeral", "set", burned, "b-1", "--reads", "1"))
    assert ok(cli("ephemeral", "get", burned)) == "b-1\n"
    assert failed(cli("ephemeral", "get", burned), NOT_FOUND) == (
        f"error [key]: ephemeral secret '{burned}' not found\n"
    )
    # No value and no terminal: refused, nothing created.
    stderr = failed(cli("ephemeral", "set", burned), INVALID_INPUT)
    assert stderr == "error [value]: no value: pass it as an argument, or - to read it from stdin\n"
    assert failed(cli("ephemeral", "info", burned), NOT_FOUND) == (
        f"error: ephemeral secret '{burned}' not found\n"
    )


# --- share links -----------------------------------------------------------------------------


def share_link(cli: Cli, server: ServerProcess, *args: str, input: str | None = None) -> str:
    """Runs `coffer share ARGS`; checks that stdout is just the link and stderr what it
    allows; returns the link."""
    result = cli("share", *args, input=input)
    link = ok(result).removesuffix("\n")
    assert re.fullmatch(rf"{re.escape(server.addr)}/s/[A-Za-z0-9_-]+#{KEY_TEXT}", link), link
    assert re.fullmatch(
        rf"Share link: \d+ of \d+ reads? left, then (burned|sealed); expires {ISO}\. Send the "
        r"whole link: the key is the part after '#', which the server never sees\.\n",
        result.stderr,
    ), result.stderr
    return link


def test_share_link_opens_once_with_the_exact_value(cli: Cli, server: ServerProcess) -> None:
    """`coffer share VALUE` prints a link; `coffer share get LINK`, with no login at all,
    prints the value once; the server never sees the key, nor the value."""
    value = f"pässwörd ✓ 秘密 {uuid.uuid4().hex[:8]}"
    link = share_link(cli, server, value)
    stranger = cli.with_env(COFFER_ADDR=None, COFFER_TOKEN=None)
    assert ok(stranger("share", "get", link)) == value + "\n"
    assert failed(stranger("share", "get", link), NOT_FOUND) == SHARE_GONE
    token, _, key_text = link.removeprefix(f"{server.addr}/s/").partition("#")
    log = server.log_bytes()
    assert f"POST /api/v1/shares/{token}/reveal".encode() in log  # the real access log
    assert key_text.encode() not in log
    assert value.encode() not in log


def test_share_from_stdin_with_several_reads(cli: Cli, server: ServerProcess) -> None:
    """A multi-line value from stdin, --reads 2 --json: two reveals, then the link is spent."""
    value = "first line\nsecond line\n\n  indented ✓"
    created = ok_json(cli("share", "-", "--reads", "2", "--json", input=value + "\n"))
    link = created["link"]
    assert link == f"{server.addr}{created['path']}#{link.partition('#')[2]}"
    assert created["path"] == f"/s/{created['token']}"
    assert {k: v for k, v in created["limits"].items() if k != "expires_at"} == {
        "status": "active",
        "max_reads": 2,
        "read_count": 0,
        "reads_remaining": 2,
        "delete": True,
    }
    assert ok(cli("share", "get", link)) == value + "\n"
    opened = ok_json(cli("share", "get", link, "--json"))
    assert opened == {
        "value": value,
        "limits": {**created["limits"], "read_count": 2, "reads_remaining": 0},
    }
    assert failed(cli("share", "get", link), NOT_FOUND) == SHARE_GONE


def test_a_broken_link_fails_without_burning_the_share(cli: Cli, server: ServerProcess) -> None:
    """Without its fragment, with a malformed one or with a wrong key, the link fails (2 or
    3) and counts nothing: the whole link still opens afterwards."""
    link = share_link(cli, server, "still-here")
    bare, _, key_text = link.partition("#")
    position = len(key_text) // 2
    swapped = "A" if key_text[position] != "A" else "B"
    wrong_key = f"{bare}#{key_text[:position]}{swapped}{key_text[position + 1 :]}"
    missing, malformed, wrong, not_a_link = cli.many(
        ("share", "get", bare),
        ("share", "get", f"{bare}#{key_text[:20]}"),
        ("share", "get", wrong_key),
        ("share", "get", f"{server.addr}/api/v1/shares#{key_text}"),
    )
    assert failed(missing, INVALID_INPUT) == (
        "error [link]: the link has no key: the part after '#' is missing; copy the whole link\n"
    )
    assert failed(malformed, INVALID_INPUT) == (
        "error [link]: the link's key (the part after '#') is malformed; copy the whole link\n"
    )
    assert failed(wrong, NOT_FOUND) == SHARE_GONE
    assert failed(not_a_link, INVALID_INPUT) == (
        "error [link]: not a share link: a share link looks like https://HOST/s/TOKEN#KEY\n"
    )
    assert ok(cli("share", "get", link)) == "still-here\n"


def test_a_sealed_share_says_so(cli: Cli, server: ServerProcess) -> None:
    """share --no-delete: after its one read the link answers that it is sealed."""
    link = share_link(cli, server, "seal-me", "--no-delete")
    assert ok(cli("share", "get", link)) == "seal-me\n"
    assert failed(cli("share", "get", link), NOT_FOUND) == (
        "error [token]: share is sealed: its read limit was reached\n"
    )


def test_share_subcommand_names_and_values(cli: Cli, server: ServerProcess) -> None:
    """`share create VALUE` is `share VALUE`, so even the word "get" can be shared; `share get`
    without a link is a usage error; no value without a terminal is refused."""
    link = share_link(cli, server, "create", "get")
    assert ok(cli("share", "get", link)) == "get\n"
    result = cli("share", "get")
    assert result.returncode == INVALID_INPUT
    assert "Missing argument 'link'" in result.stderr
    stderr = failed(cli("share"), INVALID_INPUT)
    assert stderr == "error [value]: no value: pass it as an argument, or - to read it from stdin\n"


def run_in_terminal(args: tuple[str, ...], env: dict[str, str], answer: str) -> tuple[int, str]:
    """Runs ``python -m coffer ARGS`` in a new session on a pseudo-terminal (its stdin, stdout
    and stderr), types ``answer`` and Enter at its first prompt, and returns its exit status
    and everything the terminal showed."""
    main_fd, terminal_fd = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "coffer", *args],
        stdin=terminal_fd,
        stdout=terminal_fd,
        stderr=terminal_fd,
        env=env,
        start_new_session=True,  # never the developer's terminal: no controlling terminal
    )
    os.close(terminal_fd)
    shown = b""
    answered = False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main_fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(main_fd, 4096)
                except OSError:  # EIO: the CLI exited and closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            if not answered and b"Value: " in shown:
                os.write(main_fd, answer.encode() + b"\r")
                answered = True
    finally:
        os.close(main_fd)
    return process.wait(timeout=30), shown.decode("utf-8", errors="replace")


def test_share_asks_for_the_value_without_echo_on_a_terminal(
    cli: Cli, server: ServerProcess
) -> None:
    """`coffer share` on a terminal asks for the value and never shows it."""
    value = f"typed-{uuid.uuid4().hex[:10]}"
    code, shown = run_in_terminal(("share", "--json"), cli.env, value)
    assert code == OK, shown
    assert value not in shown
    link = json.loads(shown[shown.index("{") :].replace("\r\n", "\n"))["link"]
    assert ok(cli("share", "get", link)) == value + "\n"


def test_racing_readers_get_exactly_the_allowed_reads(cli: Cli, server: ServerProcess) -> None:
    """Four terminals read at once: a --reads 2 secret answers exactly two of them, a
    one-read share link exactly one; the rest exit 3."""
    project = unique_name("race")
    ok(cli("projects", "create", project))
    ok(cli("secrets", "set", "RACE", "r-1", "-p", project, "-e", DEV, "--reads", "2"))
    link = share_link(cli, server, "race-share")
    secret_reads = cli.many(*[("secrets", "get", "RACE", "-p", project, "-e", DEV)] * 4)
    share_reads = cli.many(*[("share", "get", link)] * 4)
    assert sorted((r.returncode, r.stdout) for r in secret_reads) == [
        (OK, "r-1\n"),
        (OK, "r-1\n"),
        (NOT_FOUND, ""),
        (NOT_FOUND, ""),
    ]
    assert sorted((r.returncode, r.stdout) for r in share_reads) == [
        (OK, "race-share\n"),
        (NOT_FOUND, ""),
        (NOT_FOUND, ""),
        (NOT_FOUND, ""),
    ]


# --- prune and bad input ---------------------------------------------------------------------


def test_prune_destroys_what_is_past_its_ttl(cli: Cli, project: tuple[str, ...]) -> None:
    """`coffer prune` reports each kind it destroyed; a second run finds nothing."""
    ok(cli("prune"))  # whatever earlier tests left past its TTL
    name = f"e2e/prune-{uuid.uuid4().hex[:8]}"
    written, created, shared = cli.many(
        ("secrets", "set", "BRIEF", "b", *project, "--ttl", "1", "--json"),
        ("ephemeral", "set", name, "e", "--ttl", "1s", "--json"),
        ("share", "gone soon", "--ttl", "1s", "--json"),
    )
    expiries = [
        ok_json(written)["limits"]["expires_at"],
        ok_json(created)["limits"]["expires_at"],
        ok_json(shared)["limits"]["expires_at"],
    ]
    wait_past(max(expiries))
    assert ok(cli("prune")) == "Pruned 1 secret, 1 ephemeral secret and 1 share\n"
    assert ok_json(cli("prune", "--json")) == {
        "pruned": {"secrets": 0, "ephemeral": 0, "shares": 0}
    }
    assert ok(cli("prune")) == "Pruned 0 secrets, 0 ephemeral secrets and 0 shares\n"
    assert failed(cli("share", "get", ok_json(shared)["link"]), NOT_FOUND) == SHARE_GONE


BAD_LIMITS = [
    (("--ttl", "0"), "error [ttl_seconds]: ttl_seconds must be at least 1 second\n"),
    (
        ("--ttl", "10y"),
        "error [ttl_seconds]: ttl_seconds must be a duration such as 30s, 5m, 2h or 7d\n",
    ),
    (
        ("--ttl", "366d"),
        "error [ttl_seconds]: ttl_seconds must be at most 365 days (31536000 seconds)\n",
    ),
    (("--reads", "0"), "error [max_reads]: max_reads must be at least 1\n"),
    (("--reads", "1000001"), "error [max_reads]: max_reads must be at most 1,000,000\n"),
]


@pytest.mark.parametrize(("options", "message"), BAD_LIMITS, ids=lambda v: " ".join(v))
def test_bad_limits_exit_2_naming_the_field(
    cli: Cli, project: tuple[str, ...], options: tuple[str, ...], message: str
) -> None:
    """A TTL or read limit out of range exits 2 naming the field; nothing is created."""
    name = f"e2e/bad-{uuid.uuid4().hex[:8]}"
    vault, ephemeral, share = cli.many(
        ("secrets", "set", "BAD", "v", *project, *options),
        ("ephemeral", "set", name, "v", *options),
        ("share", "v", *options),
    )
    assert [failed(result, INVALID_INPUT) for result in (vault, ephemeral, share)] == [message] * 3
    assert ok_json(cli("secrets", "list", *project, "--json")) == {"secrets": []}
    assert failed(cli("ephemeral", "info", name), NOT_FOUND) == (
        f"error: ephemeral secret '{name}' not found\n"
    )
