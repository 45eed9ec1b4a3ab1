"""Identity and access typed into the CLI against real servers, on each backend: a team set up
from nothing (``coffer init --email``, invitations, grants, a CI machine), then each member and
the machine doing exactly what its role and grants allow; API keys, logins, MFA, logout,
password changes, lockout and transport safety; team and organization administration.

Every person has a home directory of their own, so each CLI keeps its own saved token, as on
separate machines. Servers get a generous per-address login limit (all logins come from
127.0.0.1); the per-account failure limit stays at its default, and one test runs into it.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest

from tests.e2e.harness import (
    Cli,
    Database,
    ServerProcess,
    base_env,
    failed,
    ok,
    ok_json,
    run_coffer,
    start_server,
    unique_name,
)

OK, INVALID_INPUT, NOT_FOUND, DENIED, CONFLICT, CONFIG, RATE_LIMITED = 0, 2, 3, 4, 5, 7, 8
DEV, STAGING, PROD = "development", "staging", "production"
OWNER_EMAIL = "owner@acme.test"
OWNER_PASSWORD = "owner passphrase 01"
SERVER_ENV = {"COFFER_LOGIN_RATE_LIMIT": "1000/minute"}


# --- helpers ---------------------------------------------------------------------------------


def shown_once(stdout: str, label: str) -> str:
    """Returns the first non-empty line after the line containing ``label`` (a token banner)."""
    lines = stdout.splitlines()
    for index, line in enumerate(lines):
        if label in line:
            return next(text.strip() for text in lines[index + 1 :] if text.strip())
    raise AssertionError(f"no {label!r} in:\n{stdout}")


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Runs independent steps (of different people) at the same time; returns their results
    in order. Each CLI call costs a Python start, so this keeps the wall time down."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def new_address(role: str) -> str:
    """A member's e-mail address no other test uses."""
    return f"{role}-{uuid.uuid4().hex[:8]}@acme.test"


def totp_code(secret: str, *, ahead: int = 0) -> str:
    """The TOTP code ``ahead`` steps from now (the server refuses a step it has seen)."""
    return pyotp.TOTP(secret).at(time.time() + 30 * ahead)


@dataclass
class Org:
    """A server on a vault made by ``coffer init --email``, and its logged-in owner."""

    server: ServerProcess
    base: Path
    init_stdout: str
    owner: Cli

    @property
    def addr(self) -> str:
        """The server's address."""
        return self.server.addr

    def person(self, name: str) -> Cli:
        """A CLI in a new home directory of its own: no address, no token yet."""
        home = self.base / f"{name}-{uuid.uuid4().hex[:6]}"
        home.mkdir()
        return Cli(base_env(home), home)

    def login(
        self, cli: Cli, email: str, password: str, *extra: str
    ) -> subprocess.CompletedProcess[str]:
        """``coffer login --email`` with the password on stdin."""
        return cli(
            "login", "--addr", self.addr, "--email", email, "--password-stdin", *extra,
            input=password + "\n",
        )  # fmt: skip

    def join(self, role: str, *, inviter: Cli | None = None) -> tuple[str, str, Cli]:
        """Invites a new member, who accepts and logs in; returns (e-mail, password, CLI)."""
        email, password = new_address(role), f"{role} passphrase {uuid.uuid4().hex[:6]}"
        invited = ok_json(
            (inviter or self.owner)("members", "invite", email, "--role", role, "--json")
        )
        cli = self.person(role)
        accept = ("accept-invite", invited["token"], "--addr", self.addr, "--password-stdin")
        ok(cli(*accept, input=password + "\n"))
        ok(self.login(cli, email, password))
        return email, password, cli


def init_vault(base: Path, database: Database, email: str, password: str) -> tuple[Path, str]:
    """Runs ``coffer init --email EMAIL --password-stdin``; returns the vault and stdout."""
    vault = base / "vault"
    env = base_env(base, {"COFFER_DATABASE_URL": database.url_for(vault)})
    args = ("init", "--dir", str(vault), "--email", email, "--password-stdin")
    return vault, ok(run_coffer(args, env, input=password + "\n", cwd=base))


def start_org(base: Path, database: Database) -> Org:
    """A new vault with an owner account, its server, and the owner logged in."""
    vault, stdout = init_vault(base, database, OWNER_EMAIL.upper(), OWNER_PASSWORD)
    server = start_server(
        vault, database.url_for(vault), base / "server.log", base, extra_env=SERVER_ENV
    )
    org = Org(server=server, base=base, init_stdout=stdout, owner=Cli({}, base))
    org.owner = org.person("owner")
    ok(org.login(org.owner, OWNER_EMAIL, OWNER_PASSWORD))
    return org


@pytest.fixture(scope="module")
def org(module_database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    """One organization per backend, shared by the module's tests (each adds its own people)."""
    started = start_org(tmp_path_factory.mktemp(f"org-{module_database.backend}"), module_database)
    try:
        yield started
    finally:
        started.server.stop()


# --- the team --------------------------------------------------------------------------------


def test_init_with_email_creates_the_owner_account(org: Org) -> None:
    """`coffer init --email` prints the vault, the owner account and how to log in, and the
    break-glass bootstrap token; the owner logs in with e-mail and password."""
    out = org.init_stdout
    assert out.startswith("Initialised a coffer vault in ")
    assert "(organization default)" in out
    assert f"Owner account: {OWNER_EMAIL}." in out  # the address normalised
    assert f"coffer login --addr http://127.0.0.1:8390 --email {OWNER_EMAIL}" in out
    assert shown_once(out, "Bootstrap owner token").startswith("coffer_boot_")
    assert "break-glass" in out
    assert OWNER_PASSWORD not in out

    who, members = org.owner.many(("whoami",), ("members", "list", "--json"))
    assert ok(who).startswith(f"{OWNER_EMAIL} (user, owner) at {org.addr}\ntoken: cli ")
    owner_row = next(m for m in ok_json(members)["members"] if m["email"] == OWNER_EMAIL)
    assert owner_row["role"] == "owner"
    saved = json.loads(org.owner.config_file.read_text())
    assert saved["addr"] == org.addr
    assert saved["token"].startswith("coffer_cli_")
    assert org.owner.config_file.stat().st_mode & 0o777 == 0o600


def test_team_of_three_and_a_ci_machine_each_do_what_they_may(org: Org) -> None:
    """Owner, an admin and a viewer (invited and accepted from the CLI) and a CI machine:
    the viewer reads but cannot write; the admin writes and invites; a development grant
    lets the viewer write there while production:none stops its reads; the machine token
    reads app/production only, and revoking it shuts it out at once.

    Steps that do not depend on each other run together, as from several terminals."""
    owner, p = org.owner, unique_name("app")
    admin, viewer = org.person("admin"), org.person("viewer")
    admin_email, admin_password = new_address("admin"), "admin passphrase 01"
    viewer_email, viewer_password = new_address("viewer"), "viewer passphrase 01"
    get, put = ("secrets", "get", "db/password", "-p", p), ("secrets", "set", "-p", p)

    # The owner makes a project and invites an admin, who joins from their own machine.
    ok(owner("projects", "create", p))
    *seeded, invited = owner.many(
        *((*put, "-e", env, "db/password", f"{env}-pw") for env in (DEV, STAGING, PROD)),
        ("members", "invite", admin_email, "--role", "admin", "--json"),
    )
    assert all(ok(result).startswith("Created db/password") for result in seeded)
    invitation = ok_json(invited)["token"]
    accept = ("accept-invite", invitation, "--addr", org.addr, "--password-stdin")
    joined = ok(admin(*accept, input=admin_password + "\n"))
    assert joined.startswith(f"Welcome, {admin_email}: you joined as admin.")
    assert f"coffer login --addr {org.addr} --email {admin_email}" in joined
    logged_in, reused = together(
        lambda: org.login(admin, admin_email, admin_password, "--expires", "1d"),
        lambda: admin(*accept, input=admin_password + "\n"),
    )
    assert ok(logged_in).startswith(f"Logged in to {org.addr} as {admin_email} (admin); token ")
    assert failed(reused, DENIED) == (
        "error: the invitation is not valid (unknown, expired or already used)\n"
    )

    # The admin writes, invites the viewer and sets up two machines: one for CI that reads
    # production from an allowed address, one whose allow-list does not admit 127.0.0.1.
    ci_name, far_name = unique_name("ci"), unique_name("far")
    wrote, invite_out, created, _far = admin.many(
        (*put, "-e", PROD, "db/password", "prod-pw-2"),
        ("members", "invite", viewer_email, "--role", "viewer", "--expires", "1h"),
        ("machines", "create", ci_name, "--scope", f"{p}:{PROD}:read",
         "--allow-ip", "127.0.0.0/8", "--description", "CI", "--valid-before", "2100-01-01"),
        ("machines", "create", far_name, "--scope", f"{p}:{PROD}:read",
         "--allow-ip", "10.0.0.0/8"),
    )  # fmt: skip
    assert ok(wrote) == "Updated db/password (version 2)\n"
    assert ok(invite_out).startswith(f"Invited {viewer_email} as viewer")
    assert f"coffer accept-invite TOKEN --addr {org.addr}" in invite_out.stdout
    viewer_invitation = shown_once(invite_out.stdout, "Invitation token")
    assert viewer_invitation.startswith("coffer_inv_")
    assert ok(created).startswith(f"Created machine {ci_name} with {p}:{PROD}:read")
    ok(_far)

    accepted, issued, far_issued = together(
        lambda: viewer(
            "accept-invite", viewer_invitation, "--addr", org.addr, "--password-stdin",
            input=viewer_password + "\n",
        ),
        lambda: admin("machines", "token", ci_name, "--expires", "1d", "--name", "pipeline"),
        lambda: admin("machines", "token", far_name, "--json"),
    )  # fmt: skip
    assert ok(accepted).startswith(f"Welcome, {viewer_email}: you joined as viewer.")
    machine_token = shown_once(ok(issued), "shown once")
    assert machine_token.startswith("coffer_mach_")
    assert f"COFFER_TOKEN (with COFFER_ADDR={org.addr})" in issued.stdout
    found = re.search(r"\(id ([0-9A-Z]+),", issued.stdout)
    assert found is not None, issued.stdout
    token_id = found.group(1)

    # The machine reads production (also through `coffer run`) and nothing else; the other
    # machine is refused from this address. Meanwhile the viewer logs in.
    ci = org.person("ci").with_env(COFFER_ADDR=org.addr, COFFER_TOKEN=machine_token)
    far = ci.with_env(COFFER_TOKEN=ok_json(far_issued)["token"])
    child = "import os; print(os.environ['DB_PASSWORD'])"
    viewer_login, ci_results, far_read = together(
        lambda: org.login(viewer, viewer_email, viewer_password),
        lambda: ci.many(
            (*get, "-e", PROD),
            ("run", "-p", p, "-e", PROD, "--", "python", "-c", child),
            (*get, "-e", STAGING),
            (*put, "-e", PROD, "db/password", "x"),
            ("projects", "create", unique_name("nope")),
        ),
        lambda: far(*get, "-e", PROD),
    )
    ok(viewer_login)
    read, run, staging, write, create = ci_results
    assert ok(read) == "prod-pw-2\n"
    assert ok(run) == "prod-pw-2\n"
    assert f"read access to {p}/{STAGING}" in failed(staging, DENIED)
    assert "write access" in failed(write, DENIED)
    failed(create, DENIED)
    failed(far_read, DENIED)

    # The viewer's role: reads everywhere, writes nowhere, invites nobody.
    read_prod, write_dev, viewer_invites = viewer.many(
        (*get, "-e", PROD),
        (*put, "-e", DEV, "k", "v"),
        ("members", "invite", new_address("x"), "--role", "viewer"),
    )
    assert ok(read_prod) == "prod-pw-2\n"
    assert f"write access to {p}/{DEV}" in failed(write_dev, DENIED)
    failed(viewer_invites, DENIED)

    # Grants: development:write lets the viewer write there; production:none stops reads.
    granted, none_grant = admin.many(
        ("grants", "add", "--member", viewer_email, "--scope", f"{p}:{DEV}:write"),
        ("grants", "add", "--member", viewer_email, "--scope", f"{p}:{PROD}:none", "--json"),
    )
    assert ok(granted).startswith(f"Granted {viewer_email} {p}:{DEV}:write (grant ")
    assert ok_json(none_grant)["access"] == "none"
    write_dev, read_prod, read_staging, write_staging, whoami = viewer.many(
        (*put, "-e", DEV, "k", "v"),
        (*get, "-e", PROD),
        (*get, "-e", STAGING),
        (*put, "-e", STAGING, "k", "v"),
        ("whoami",),
    )
    assert ok(write_dev) == "Created k (version 1)\n"
    assert f"read access to {p}/{PROD}" in failed(read_prod, DENIED)
    assert ok(read_staging) == f"{STAGING}-pw\n"
    assert "write access" in failed(write_staging, DENIED)
    assert f"{viewer_email} (user, viewer)" in ok(whoami)
    grant_rows = [line for line in whoami.stdout.splitlines() if p in line]  # grants table
    assert any(PROD in line and "none" in line for line in grant_rows), whoami.stdout
    assert any(DEV in line and "write" in line for line in grant_rows), whoami.stdout

    # Revoking the machine token shuts the machine out at once; the owner sees the team.
    listed = ok_json(owner("tokens", "list", "--all", "--json"))["tokens"]
    assert token_id in {t["id"] for t in listed}
    revoked = ok(owner("tokens", "revoke", token_id))
    assert revoked == f"Revoked machine token {token_id} (pipeline)\n"
    after, members = together(
        lambda: ci(*get, "-e", PROD), lambda: owner("members", "list", "--json")
    )
    failed(after, DENIED)
    roles = {m["email"]: m["role"] for m in ok_json(members)["members"]}
    assert roles[OWNER_EMAIL] == "owner"
    assert roles[admin_email] == "admin"
    assert roles[viewer_email] == "viewer"


# --- credentials -----------------------------------------------------------------------------


def test_api_keys_act_as_their_owner_and_the_sixth_is_refused(org: Org) -> None:
    """Five API keys work as their owner; the sixth exits 5 with the rule and what to do;
    a revoked key stops working and frees a place."""
    email, _password, member = org.join("viewer")
    created = member.many(*(("keys", "create", f"key-{n}", "--json") for n in range(5)))
    keys = [ok_json(result) for result in created]
    assert all(k["token"].startswith("coffer_key_") for k in keys)
    as_key = member.with_env(COFFER_ADDR=org.addr, COFFER_TOKEN=keys[0]["token"])
    sixth, who, table = together(
        lambda: member("keys", "create", "key-6"),
        lambda: as_key("whoami"),
        lambda: member("keys", "list"),
    )
    assert failed(sixth, CONFLICT) == (
        "error [name]: you already have 5 active API keys, the most allowed; "
        "revoke one with `coffer keys revoke ID` first\n"
    )
    assert ok(who).startswith(f"{email} (user, viewer) at {org.addr}\ntoken: key ")
    assert all(k["id"] in ok(table) for k in keys)  # ids are never cut short

    revoked = ok(member("keys", "revoke", keys[0]["id"]))
    assert revoked == f"Revoked API key {keys[0]['id']} (key-0)\n"
    refused, replaced = together(
        lambda: as_key("whoami"), lambda: member("keys", "create", "key-6", "--expires", "30d")
    )
    failed(refused, DENIED)
    assert ok(replaced).startswith("Created API key 'key-6' (id ")
    assert shown_once(replaced.stdout, "shown once").startswith("coffer_key_")


def test_failed_logins_look_alike_and_then_lock_the_address(org: Org) -> None:
    """A wrong password and an unknown address both exit 4 with one message and save
    nothing; after five failures an address is locked for a while: exit 8, saying when."""
    cli, address = org.person("guesser"), new_address("nobody")
    wrong, *unknown = together(
        lambda: org.login(cli, OWNER_EMAIL, "not the passphrase"),
        *(lambda: org.login(cli, address, OWNER_PASSWORD) for _ in range(5)),
    )
    assert failed(wrong, DENIED) == "error: invalid e-mail or password\n"
    assert all(
        failed(result, DENIED) == "error: invalid e-mail or password\n" for result in unknown
    )
    assert not cli.config_file.exists()

    locked, as_json = together(
        lambda: org.login(cli, address, OWNER_PASSWORD),
        lambda: org.login(cli, address, OWNER_PASSWORD, "--json"),
    )
    stderr = failed(locked, RATE_LIMITED)
    assert stderr.startswith("error: too many failed logins for this account")
    assert re.search(r"\(retry in \d+ s\)\n$", stderr), stderr
    assert json.loads(failed(as_json, RATE_LIMITED))["error"]["code"] == "rate_limited"


def login_on_a_terminal(cli: Cli, addr: str, answers: list[str]) -> tuple[int, str]:
    """Runs `coffer login --addr ADDR` on a pseudo-terminal, answering each prompt in turn;
    returns the exit code and everything the terminal showed."""
    import pty
    import sys

    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the CLI
        os.chdir(cli.cwd)
        argv = [sys.executable, "-m", "coffer", "login", "--addr", addr]
        os.execve(sys.executable, argv, cli.env)  # noqa: S606 - this interpreter, fixed args
    shown = b""

    def read_until(marker: bytes, timeout: float = 20.0) -> None:
        nonlocal shown
        deadline = time.monotonic() + timeout
        while marker not in shown and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:  # the child closed the terminal
                    return
                if not chunk:
                    return
                shown += chunk

    # Wait for each prompt's last character: a hidden prompt turns echo off (and flushes what
    # was typed ahead) just before it writes its final space.
    prompts = (b"E-mail: ", b"Password: ", b"MFA code (or a recovery code): ")
    for prompt, answer in zip(prompts, answers, strict=False):
        read_until(prompt)
        assert prompt in shown, shown.decode(errors="replace")
        os.write(fd, answer.encode() + b"\n")
    read_until(b"\n" * 1000, timeout=15.0)  # until the child closes the terminal
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_mfa_enrolment_then_logins_need_a_code(org: Org) -> None:
    """`mfa setup` shows the secret and URI, `mfa enable` the recovery codes; from then on a
    login needs --totp (a current code or a recovery code, each once); on a terminal the CLI
    asks for the code; `mfa disable` turns it off."""
    email, password, member = org.join("viewer")
    setup = ok(member("mfa", "setup"))
    secret = shown_once(setup, "authenticator app").removeprefix("secret:").strip()
    assert f"otpauth://totp/coffer:{email.replace('@', '%40')}?secret={secret}" in setup
    enabled = ok_json(member("mfa", "enable", totp_code(secret), "--json"))
    recovery = enabled["recovery_codes"]
    assert enabled["enabled"] is True and len(recovery) >= 5

    terminal = org.person("terminal")
    no_code, bad_code, with_totp, with_recovery, (status, shown) = together(
        lambda: org.login(member, email, password),
        lambda: org.login(member, email, password, "--totp", "000000"),
        lambda: org.login(member, email, password, "--totp", totp_code(secret, ahead=1)),
        lambda: org.login(member, email, password, "--totp", recovery[0]),
        lambda: login_on_a_terminal(terminal, org.addr, [email, password, recovery[1]]),
    )
    assert failed(no_code, DENIED) == (
        "error [totp]: this account has MFA: send a TOTP code (--totp) or a recovery code\n"
    )
    assert failed(bad_code, DENIED) == "error: invalid MFA code\n"
    ok(with_totp)
    ok(with_recovery)
    # On a terminal the CLI asks for the e-mail, the password (not echoed), then the code.
    assert status == OK, shown
    assert "MFA code (or a recovery code): " in shown
    assert password not in shown
    assert f"Logged in to {org.addr} as {email} (viewer)" in shown

    # One after the other: once MFA is off, a login needs no code and would pass.
    reused = org.login(member, email, password, "--totp", recovery[0])
    failed(reused, DENIED)  # a recovery code works once
    disabled = member("mfa", "disable", recovery[2])
    assert ok(disabled) == "MFA is off\n"
    ok(org.login(member, email, password))


def test_passwd_and_logout_end_sessions(org: Org) -> None:
    """`coffer passwd` changes the password and revokes the person's other CLI tokens;
    `coffer logout` revokes the token in use and removes it from the config file (keeping
    the address); a revoked token is refused from then on."""
    email, password, laptop = org.join("admin")
    desktop, new_password = org.person("desktop"), "a brand new passphrase"
    desktop_login, weak, wrong = together(
        lambda: org.login(desktop, email, password),
        lambda: laptop("passwd", "--password-stdin", input=f"{password}\nshort\n"),
        lambda: laptop("passwd", "--password-stdin", input=f"not it at all\n{new_password}\n"),
    )
    ok(desktop_login)
    assert failed(weak, INVALID_INPUT) == (
        "error [new_password]: new_password must be at least 12 characters\n"
    )
    assert failed(wrong, DENIED) == "error: the current password is not correct\n"
    changed = ok(laptop("passwd", "--password-stdin", input=f"{password}\n{new_password}\n"))
    assert changed.startswith("Password changed; 1 other session(s) and CLI token(s) revoked.")
    desktop_after, laptop_after, old_password = together(
        lambda: desktop("whoami"),
        lambda: laptop("whoami"),
        lambda: org.login(desktop, email, password),
    )
    failed(desktop_after, DENIED)
    ok(laptop_after)
    failed(old_password, DENIED)

    token = json.loads(laptop.config_file.read_text())["token"]
    logged_out, new_login = together(
        lambda: laptop("logout"), lambda: org.login(desktop, email, new_password)
    )
    assert ok(logged_out) == (
        f"Logged out: token revoked on the server; removed from {laptop.config_file}\n"
    )
    ok(new_login)
    assert json.loads(laptop.config_file.read_text()) == {"addr": org.addr}
    old_token, no_token, again = together(
        lambda: laptop.with_env(COFFER_TOKEN=token)("whoami"),
        lambda: laptop("whoami"),
        lambda: laptop("logout"),
    )
    failed(old_token, DENIED)
    assert failed(no_token, DENIED).startswith("error: no token: run `coffer login")
    assert failed(again, DENIED) == "error: not logged in: there is no token to log out of\n"


def test_passwords_are_never_read_from_a_non_terminal_without_the_flag(org: Org) -> None:
    """Without a terminal and without --password-stdin the CLI refuses instead of reading a
    password from a pipe; a weak new password is refused before anything is sent."""
    cli = org.person("scripted")
    refused, no_identity, weak = cli.many(
        ("login", "--addr", org.addr, "--email", OWNER_EMAIL),
        ("login", "--addr", org.addr),
        ("accept-invite", "coffer_inv_x", "--addr", org.addr, "--password-stdin"),
    )
    assert failed(refused, INVALID_INPUT) == (
        "error [password]: stdin is not a terminal: pass the password on stdin with "
        "--password-stdin\n"
    )
    assert "--email EMAIL" in failed(no_identity, INVALID_INPUT)
    assert (
        failed(weak, INVALID_INPUT)
        == "error [password]: --password-stdin expects one line on stdin\n"
    )
    short = cli("accept-invite", "coffer_inv_x", "--addr", org.addr, "--password-stdin",
                input="short\n")  # fmt: skip
    assert failed(short, INVALID_INPUT) == (
        "error [password]: password must be at least 12 characters\n"
    )


def test_plain_http_to_a_remote_host_is_refused(local_cli: Cli, tmp_path: Path) -> None:
    """Credentials never travel over plain http:// to another host: exit 7 naming https://,
    before any password is asked for or any connection made; a CA bundle that cannot be read
    is a configuration error too."""
    remote = local_cli.with_env(COFFER_ADDR="http://example.invalid", COFFER_TOKEN="coffer_x")
    message = (
        "error: refusing to send credentials over plain http:// to example.invalid: use "
        "https:// (plain http is allowed only to localhost, 127.0.0.0/8 and ::1)\n"
    )
    whoami, login, invite, keys = remote.many(
        ("whoami",),
        ("login", "--email", OWNER_EMAIL, "--password-stdin"),
        ("accept-invite", "coffer_inv_x", "--addr", "http://10.0.0.7:8390"),
        ("keys", "list", "--json"),
    )
    assert failed(whoami, CONFIG) == message
    assert failed(login, CONFIG) == message
    assert failed(invite, CONFIG) == message.replace("example.invalid", "10.0.0.7")
    assert json.loads(failed(keys, CONFIG))["error"]["code"] == "config_error"
    missing = tmp_path / "missing-ca.pem"
    bad_ca = remote.with_env(COFFER_ADDR="https://example.invalid", COFFER_CA_CERT=str(missing))
    assert failed(bad_ca("whoami"), CONFIG).startswith(
        f"error: COFFER_CA_CERT: cannot load the CA bundle {missing}"
    )


def test_every_listing_speaks_json_and_tables_keep_ids_whole(org: Org) -> None:
    """The new commands' --json output parses and has the documented shape; the grants
    table shows ids and scopes whole, ready to copy."""
    owner, p = org.owner, unique_name("listed")
    ok(owner("projects", "create", p))
    lister = unique_name("lister")
    ok(owner("machines", "create", lister, "--scope", f"{p}:read"))
    results = owner.many(
        ("whoami", "--json"),
        ("tokens", "list", "--json"),
        ("tokens", "list", "--all", "--json"),
        ("keys", "list", "--json"),
        ("machines", "list", "--json"),
        ("grants", "list", "--json"),
        ("grants", "list"),
        ("org", "show", "--json"),
    )
    who, mine, everyone, keys, machines, grants, table, shown = (
        *map(ok_json, results[:6]),
        ok(results[6]),
        ok_json(results[7]),
    )
    assert who["name"] == OWNER_EMAIL and who["role"] == "owner" and who["addr"] == org.addr
    assert any(t["current"] for t in mine["tokens"])
    kinds = {t["kind"] for t in everyone["tokens"]}
    assert {"boot", "cli"} <= kinds  # the bootstrap token of `coffer init` is listed too
    assert isinstance(keys["keys"], list)
    machine = next(m for m in machines["machines"] if m["grants"][0]["project"] == p)
    assert machine["grants"][0]["access"] == "read"
    grant = next(g for g in grants["grants"] if g["project"] == p)
    row = next(line for line in table.splitlines() if grant["id"] in line)
    assert f"{p}:read" in row
    assert shown["name"] == "default" and shown["require_mfa"] is False

    other_grant = ok_json(
        owner("grants", "add", "--machine", lister, "--scope", f"{p}:{DEV}:write", "--json")
    )
    # In turn: deleting the machine takes its grants with it.
    revoked = owner("grants", "revoke", other_grant["id"])
    deleted = owner("machines", "delete", lister, "--yes", "--json")
    assert ok(revoked) == f"Revoked grant {other_grant['id']}\n"
    assert ok_json(deleted) == {"deleted": True, "name": lister, "tokens_revoked": 0}
    remaining = ok_json(owner("grants", "list", "--json"))["grants"]
    assert all(g["identity"] != lister for g in remaining)


# --- administration --------------------------------------------------------------------------


def test_members_and_the_organization_are_administered_from_the_cli(
    fresh_database: Database, tmp_path: Path
) -> None:
    """Role changes, removal, MFA required for all, transfer of ownership and deleting the
    organization, each taking effect at once (a server of its own: this test ends the org)."""
    org = start_org(tmp_path, fresh_database)
    try:
        owner = org.owner
        (email, _pw, member), (leaving_email, _pw2, leaving), setup = together(
            lambda: org.join("viewer"),
            lambda: org.join("viewer"),
            lambda: owner("mfa", "setup", "--json"),
        )
        secret = ok_json(setup)["secret"]
        promoted, removed, enabled = together(
            lambda: owner("members", "role", email, "admin"),
            lambda: owner("members", "remove", leaving_email, "--yes"),
            lambda: owner("mfa", "enable", totp_code(secret), "--json"),
        )
        assert ok(promoted) == f"{email} is now admin\n"
        assert ok(removed) == f"Removed {leaving_email}\n"
        recovery = ok_json(enabled)["recovery_codes"]
        invites, to_owner, gone, removed_again = together(
            lambda: member("members", "invite", new_address("new"), "--role", "viewer"),
            lambda: owner("members", "role", email, "owner"),
            lambda: leaving("whoami"),
            lambda: owner("members", "remove", leaving_email, "--yes"),
        )
        ok(invites)  # admins invite
        assert "members transfer" in failed(to_owner, INVALID_INPUT)
        failed(gone, DENIED)
        failed(removed_again, NOT_FOUND)

        # MFA for everyone: whoever has not enrolled (the owner has) is held to enrolment.
        assert ok(owner("org", "require-mfa", "on")).startswith("MFA is now required")
        restricted, hint, shown, kept_on = together(
            lambda: member("members", "list"),
            lambda: member("whoami"),
            lambda: owner("org", "show", "--json"),
            lambda: owner("mfa", "disable", recovery[0]),
        )
        assert "coffer mfa setup" in failed(restricted, DENIED)
        assert "coffer mfa setup" in ok(hint)
        assert ok_json(shown)["require_mfa"] is True
        assert failed(kept_on, CONFLICT) == (
            "error: your organization requires MFA; it cannot be turned off\n"
        )
        assert ok(owner("org", "require-mfa", "off")) == "MFA is no longer required\n"
        ok(member("members", "list"))

        # Ownership moves; the old owner becomes an admin and can no longer delete the org.
        moved = ok(owner("members", "transfer", email, "--yes"))
        assert moved == f"{email} is now the owner (the previous owner is an admin)\n"
        demoted, not_owner, wrong_name = together(
            lambda: owner("whoami"),
            lambda: owner("org", "delete", "--confirm", "default"),
            lambda: member("org", "delete", "--confirm", "not-it"),
        )
        assert f"{OWNER_EMAIL} (user, admin)" in ok(demoted)
        failed(not_owner, DENIED)
        assert failed(wrong_name, INVALID_INPUT).startswith("error [confirm]: ")
        deleted = ok(member("org", "delete", "--confirm", "default"))
        assert deleted == "Deleted organization default and everything in it\n"
        for after in together(lambda: member("whoami"), lambda: owner("whoami")):
            failed(after, DENIED)
    finally:
        org.server.stop()
