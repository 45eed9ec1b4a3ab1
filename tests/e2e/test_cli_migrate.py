"""`coffer migrate` and a node's schema check as an operator meets them: a vault left at an
older revision is refused by `coffer server` until it is migrated, one stamped by a newer
coffer is refused by everything, `--check` answers by its exit code, and two `coffer migrate`
runs on PostgreSQL at once take turns."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from coffer.storage import schema
from coffer.storage.database import create_engine
from tests.e2e.harness import (
    Cli,
    Database,
    ServerProcess,
    base_env,
    close_database,
    failed,
    free_port,
    ok,
    ok_json,
    open_database,
    spawn_server,
    wait_for_exit,
    wait_until_ready,
)

CONFIG_ERROR = 7
QUICKLY_S = 10.0
LOCK_WAIT_S = 30.0
FUTURE_REVISION = "9999_from_a_newer_coffer"


def _revisions() -> tuple[str, str]:
    """The revision just before this coffer's head, and the head."""
    head = schema.head_revision()
    older = schema.previous_revision(head)
    assert older is not None
    return older, head


def _older_message(older: str, head: str) -> str:
    return (
        f"the database schema is at revision {older} but this coffer needs {head}: "
        "run `coffer migrate`"
    )


def _newer_message(head: str) -> str:
    return (
        f"the database schema is at revision {FUTURE_REVISION}, newer than this coffer "
        f"(which knows up to {head}): upgrade coffer"
    )


def _init(local_cli: Cli, vault: Path, url: str) -> tuple[Cli, str]:
    """`coffer init --dir VAULT` on ``url``; returns the CLI with COFFER_DATABASE_URL set and
    the bootstrap token."""
    operator = local_cli.with_env(COFFER_DATABASE_URL=url)
    token = ok_json(operator("init", "--dir", str(vault), "--json"))["token"]
    assert isinstance(token, str)
    return operator, token


def _downgrade(url: str, revision: str) -> None:
    """Takes the vault's schema back to ``revision``, as an older coffer left it."""
    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS_DIR))
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
    finally:
        engine.dispose()


def _stamp_future(url: str) -> None:
    """Records a revision this coffer does not know, as a newer coffer would."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE alembic_version SET version_num = :rev"), {"rev": FUTURE_REVISION}
            )
    finally:
        engine.dispose()


def _revision_of(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return schema.current_revision(engine)
    finally:
        engine.dispose()


def _refused_start(vault: Path, url: str, tmp_path: Path) -> tuple[int, str]:
    """Starts `coffer server` expecting it to give up; returns its exit status and output."""
    home = tmp_path / "server-home"
    home.mkdir(exist_ok=True)
    server = spawn_server(vault, url, tmp_path / "refused.log", home)
    status = wait_for_exit(server.process, QUICKLY_S)
    assert status is not None, f"server still running after {QUICKLY_S} s:\n{server.log_text()}"
    return status, server.log_text()


def _start_server(vault: Path, url: str, tmp_path: Path, *args: str) -> ServerProcess:
    """Starts `coffer server --dir VAULT --port P ARGS...` and waits until it answers."""
    home = tmp_path / "server-home"
    home.mkdir(exist_ok=True)
    port = free_port()
    env = base_env(home, {"COFFER_DATABASE_URL": url})
    log_path = tmp_path / "server.log"
    argv = [sys.executable, "-m", "coffer", "server", "--dir", str(vault), "--port", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*argv, *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
        )
    return wait_until_ready(ServerProcess(vault, url, port, log_path, process, env))


def _serves_the_vault(server: ServerProcess, local_cli: Cli, token: str) -> None:
    """The vault's own bootstrap token works against the server."""
    who = ok_json(
        local_cli.with_env(COFFER_ADDR=server.addr, COFFER_TOKEN=token)("whoami", "--json")
    )
    assert (who["kind"], who["token_kind"]) == ("bootstrap", "boot")


def test_an_older_vault_is_refused_until_migrated(
    fresh_database: Database, local_cli: Cli, tmp_path: Path
) -> None:
    """A vault one revision behind: `--check` and `coffer server` refuse it naming both
    revisions and `coffer migrate`; `coffer migrate` says what it did, `--check` then
    passes, and the server serves the vault."""
    vault = tmp_path / "vault"
    url = fresh_database.url_for(vault)
    operator, token = _init(local_cli, vault, url)
    older, head = _revisions()
    _downgrade(url, older)

    assert failed(operator("migrate", "--dir", str(vault), "--check"), CONFIG_ERROR) == (
        f"error: {_older_message(older, head)}\n"
    )
    status, output = _refused_start(vault, url, tmp_path)
    assert status == CONFIG_ERROR, output
    assert f"error: {_older_message(older, head)}\n" in output
    assert "listening" not in output
    assert _revision_of(url) == older  # neither the check nor the server migrated

    assert ok(operator("migrate", "--dir", str(vault))) == (
        f"migrated the schema from {older} to {head}\n"
    )
    assert ok(operator("migrate", "--dir", str(vault), "--check")) == (
        f"the schema is at {head}, this coffer's revision\n"
    )
    assert ok_json(operator("migrate", "--dir", str(vault), "--json")) == {
        "before": head,
        "after": head,
        "migrated": False,
    }
    server = _start_server(vault, url, tmp_path)
    try:
        _serves_the_vault(server, local_cli, token)
    finally:
        server.stop()


def test_server_migrate_flag_migrates_then_serves(
    fresh_database: Database, local_cli: Cli, tmp_path: Path
) -> None:
    """`coffer server --migrate` on a vault one revision behind migrates it, says so, and
    serves it."""
    vault = tmp_path / "vault"
    url = fresh_database.url_for(vault)
    _, token = _init(local_cli, vault, url)
    older, head = _revisions()
    _downgrade(url, older)
    server = _start_server(vault, url, tmp_path, "--migrate")
    try:
        assert f"migrated the schema from {older} to {head}\n" in server.log_text()
        assert _revision_of(url) == head
        _serves_the_vault(server, local_cli, token)
    finally:
        server.stop()


def test_a_newer_schema_is_refused_by_everything(
    fresh_database: Database, local_cli: Cli, tmp_path: Path
) -> None:
    """A vault stamped by a newer coffer is refused by `coffer server`, `coffer migrate` and
    `--check` alike, naming both revisions and telling to upgrade coffer; nothing changes."""
    vault = tmp_path / "vault"
    url = fresh_database.url_for(vault)
    operator, _ = _init(local_cli, vault, url)
    _stamp_future(url)
    head = schema.head_revision()

    status, output = _refused_start(vault, url, tmp_path)
    assert status == CONFIG_ERROR, output
    assert f"error: {_newer_message(head)}\n" in output
    assert "listening" not in output
    for args in (("migrate",), ("migrate", "--check")):
        assert failed(operator(*args, "--dir", str(vault)), CONFIG_ERROR) == (
            f"error: {_newer_message(head)}\n"
        )
    error = failed(operator("migrate", "--dir", str(vault), "--json"), CONFIG_ERROR)
    assert json.loads(error) == {
        "error": {
            "code": "schema_mismatch",
            "message": _newer_message(head),
            "database_revision": FUTURE_REVISION,
            "code_revision": head,
        }
    }
    assert _revision_of(url) == FUTURE_REVISION


def test_migrate_without_a_vault_says_so(local_cli: Cli, tmp_path: Path) -> None:
    """`coffer migrate` where there is no vault names the directory and `coffer init`, and
    creates nothing; an unreachable database names COFFER_DATABASE_URL."""
    missing = tmp_path / "no-vault"
    assert failed(local_cli("migrate", "--dir", str(missing)), CONFIG_ERROR) == (
        f"error: no coffer vault in {missing}; run `coffer init` first\n"
    )
    assert not missing.exists()
    unreachable = local_cli.with_env(
        COFFER_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/x"
    )
    stderr = failed(unreachable("migrate", "--check"), CONFIG_ERROR)
    assert stderr.startswith("error: cannot open the database named by COFFER_DATABASE_URL")
    assert "127.0.0.1:1" in stderr


def _waiting_on_locks(admin: sa.Engine, application: str) -> int:
    with admin.connect() as conn:
        count = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = :app AND wait_event_type = 'Lock'"
            ),
            {"app": application},
        ).scalar_one()
    return int(count)


def test_two_concurrent_migrations_on_postgres_take_turns(local_cli: Cli, tmp_path: Path) -> None:
    """Two `coffer migrate` runs on one PostgreSQL vault at once, made to overlap (a writer
    lock on alembic_version holds both mid-migration), both succeed: one migrates, the other
    finds the schema at head."""
    database = open_database("postgresql")
    try:
        vault = tmp_path / "vault"
        application = f"migrate_{uuid.uuid4().hex[:8]}"
        url = f"{database.url_for(vault)}&application_name={application}"
        operator, _ = _init(local_cli, vault, url)
        older, head = _revisions()
        _downgrade(url, older)
        admin = create_engine(url)
        try:
            with admin.connect() as blocker, ThreadPoolExecutor(2) as pool:
                blocker.exec_driver_sql("LOCK TABLE alembic_version IN EXCLUSIVE MODE")
                runs = [pool.submit(operator, "migrate", "--dir", str(vault)) for _ in range(2)]
                deadline = time.monotonic() + LOCK_WAIT_S
                while _waiting_on_locks(admin, application) < 2:
                    assert time.monotonic() < deadline, "the two migrations never both waited"
                    assert not any(run.done() for run in runs), [r.result() for r in runs]
                    time.sleep(0.05)
                blocker.rollback()
                printed = sorted(ok(run.result()) for run in runs)
        finally:
            admin.dispose()
        assert printed == [
            f"migrated the schema from {older} to {head}\n",
            f"the schema is already at {head}\n",
        ]
        assert ok(operator("migrate", "--dir", str(vault), "--check")) == (
            f"the schema is at {head}, this coffer's revision\n"
        )
    finally:
        close_database(database)
