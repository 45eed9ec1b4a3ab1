"""The end-to-end harness: real ``coffer server`` processes and the CLI run as a user types it.

The CLI runs as a subprocess, ``python -m coffer ...``, with an environment built for the test:
no ``COFFER_*`` variable of the developer's shell leaks in, and ``HOME``/``COFFER_CONFIG`` point
into the test's temporary directory, never at the real home.

PostgreSQL follows the rule of ``tests/conftest.py``: it runs when ``COFFER_TEST_POSTGRES_URL``
names a server (each database is a fresh schema), is skipped with the reason when it does not,
and fails instead of skipping under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("COFFER_TEST_POSTGRES_URL", "")
BACKENDS = ("sqlite", "postgresql")
STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 60.0
PARALLEL_CLI = 4
VENV_BIN = str(Path(sys.executable).parent)
BANNER = "Bootstrap owner token"


# --- databases ------------------------------------------------------------------------------


def require_postgres() -> None:
    """Skips (or, under CI=true, fails) when no PostgreSQL server is configured."""
    if PG_URL:
        return
    if os.environ.get("CI"):
        pytest.fail("CI must run the PostgreSQL tests: set COFFER_TEST_POSTGRES_URL")
    pytest.skip("PostgreSQL backend not tested: COFFER_TEST_POSTGRES_URL is not set")


def redis_database(number: int) -> str:
    """Returns the Redis URL of COFFER_TEST_REDIS_URL's server with database ``number`` (a
    test module's own, so its counters stay apart from other tests'), marked as in use so that
    tools looking for an empty database pass it by. Skips, or under CI=true fails, when
    COFFER_TEST_REDIS_URL is not set."""
    url = os.environ.get("COFFER_TEST_REDIS_URL", "")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CI must run the Redis tests: set COFFER_TEST_REDIS_URL")
        pytest.skip("Redis not tested: COFFER_TEST_REDIS_URL is not set")
    parts = urlsplit(url)
    mine = urlunsplit((parts.scheme, parts.netloc, f"/{number}", "", ""))
    import redis

    client = redis.Redis.from_url(mine, socket_connect_timeout=2.0)
    try:
        client.set("coffer-tests:in-use", "1")
    finally:
        client.close()
    return mine


def _schema_url(schema: str) -> str:
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"


@dataclass
class Database:
    """A fresh, empty database on one backend.

    For SQLite the file lives in the vault directory, which coffer itself creates (so its mode is
    coffer's doing, not the fixture's); for PostgreSQL it is a new schema on the test server.
    """

    backend: str
    schema: str | None = None

    @property
    def is_sqlite(self) -> bool:
        """True for the embedded SQLite backend."""
        return self.backend == "sqlite"

    def url_for(self, vault_dir: Path) -> str:
        """Returns COFFER_DATABASE_URL for a vault in ``vault_dir``."""
        if self.schema is None:
            return f"sqlite:///{vault_dir / 'coffer.db'}"
        return _schema_url(self.schema)

    def dump_text(self) -> str:
        """Returns every row of every table of the PostgreSQL schema as text (bytea as hex)."""
        assert self.schema is not None
        engine = sa.create_engine(_schema_url(self.schema))
        try:
            with engine.connect() as conn:
                tables = sa.inspect(conn).get_table_names(schema=self.schema)
                rows = [
                    str(row[0])
                    for table in tables
                    for row in conn.exec_driver_sql(
                        f'SELECT t::text FROM "{self.schema}"."{table}" t'  # noqa: S608 - our own names
                    )
                ]
        finally:
            engine.dispose()
        return "\n".join(rows)


def open_database(backend: str) -> Database:
    """Returns a fresh database on ``backend``: nothing yet for SQLite, a new PostgreSQL schema
    otherwise (skipped, or failed under CI=true, when no PostgreSQL server is configured)."""
    if backend == "sqlite":
        return Database("sqlite")
    require_postgres()
    schema = f"e2e_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    finally:
        admin.dispose()
    return Database("postgresql", schema)


def close_database(database: Database) -> None:
    """Drops a PostgreSQL schema made by ``open_database`` (SQLite files go with tmp_path)."""
    if database.schema is None:
        return
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{database.schema}" CASCADE')
    finally:
        admin.dispose()


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(home: Path, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """Returns a clean environment for a coffer process: the caller's, minus every COFFER_*
    variable, with HOME and the CLI config inside ``home``, the venv first on PATH (so that
    ``python`` in ``coffer run -- python ...`` is this interpreter) and wide, plain Rich output.
    ``extra`` adds variables; a None value removes one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        COFFER_CONFIG=str(home / ".config" / "coffer" / "config.json"),
        PATH=VENV_BIN + os.pathsep + env.get("PATH", ""),
        COLUMNS="200",
        NO_COLOR="1",
        TERM="dumb",
    )
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_coffer(
    args: tuple[str, ...] | list[str],
    env: Mapping[str, str],
    *,
    input: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m coffer ARGS`` and returns its exit code, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "coffer", *args],
        input=input,
        capture_output=True,
        text=True,
        env=dict(env),
        cwd=cwd,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


@dataclass
class Cli:
    """``cli(*args, input=None)`` runs the coffer CLI with this environment."""

    env: dict[str, str]
    cwd: Path

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_coffer(args, self.env, input=input, cwd=self.cwd)

    def with_env(self, **changes: str | None) -> Cli:
        """Returns a CLI whose environment has ``changes`` (None removes a variable)."""
        env = dict(self.env)
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return Cli(env, self.cwd)

    def many(self, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
        """Runs independent commands at the same time (as several terminals would) and returns
        their results in the order given; it saves wall time, each call costs a Python start."""
        with ThreadPoolExecutor(max_workers=PARALLEL_CLI) as pool:
            return list(pool.map(lambda args: self(*args), commands))

    @property
    def config_file(self) -> Path:
        """The file `coffer login` writes."""
        return Path(self.env["COFFER_CONFIG"])


@dataclass
class ServerProcess:
    """A running ``coffer server`` subprocess with its log file."""

    directory: Path
    database_url: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    token: str | None = None
    values_written: set[str] = field(default_factory=set)

    @property
    def addr(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def log_bytes(self) -> bytes:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_bytes()

    def log_text(self) -> str:
        """The log as text."""
        return self.log_bytes().decode("utf-8", errors="replace")

    def stop(self) -> int:
        """Sends SIGTERM, then SIGKILL after a grace period; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        return int(self.process.returncode)


def bootstrap_token(log: str) -> str | None:
    """Returns the token printed under the "Bootstrap owner token" banner, if any."""
    lines = log.splitlines()
    for index, line in enumerate(lines):
        if BANNER in line:
            following = [text.strip() for text in lines[index + 1 :] if text.strip()]
            return following[0] if following else None
    return None


def _answers(addr: str) -> bool:
    try:
        return httpx.get(f"{addr}/healthz", timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False


class ServerExited(Exception):
    """The server process ended before it answered /healthz."""

    def __init__(self, returncode: int, log: str) -> None:
        super().__init__(f"coffer server exited with {returncode}:\n{log}")
        self.returncode = returncode
        self.log = log


def spawn_server(
    directory: Path,
    database_url: str | None,
    log_path: Path,
    home: Path,
    *,
    extra_env: Mapping[str, str | None] | None = None,
    port: int | None = None,
    server_args: tuple[str, ...] = (),
) -> ServerProcess:
    """Starts ``coffer server --dir DIRECTORY --port P [SERVER_ARGS]`` with stdout/stderr to
    ``log_path`` (debug log level, access log on) and returns at once, without waiting for it."""
    port = free_port() if port is None else port
    env = base_env(
        home,
        {
            "COFFER_DATABASE_URL": database_url,
            "COFFER_ACCESS_LOG": "true",
            "COFFER_LOG_LEVEL": "debug",
            **(extra_env or {}),
        },
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coffer",
                "server",
                "--dir",
                str(directory),
                "--port",
                str(port),
                *server_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=home,
        )
    return ServerProcess(directory, database_url or "", port, log_path, process, env)


def wait_until_ready(server: ServerProcess, timeout: float = STARTUP_TIMEOUT_S) -> ServerProcess:
    """Waits until /healthz answers; parses the bootstrap token. Raises ServerExited when the
    process ends first, and fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        returncode = server.process.poll()
        if returncode is not None:
            raise ServerExited(returncode, server.log_text())
        if _answers(server.addr):
            server.token = bootstrap_token(server.log_text())
            return server
        time.sleep(0.05)
    server.stop()
    pytest.fail(f"coffer server did not answer /healthz in {timeout} s:\n{server.log_text()}")


def start_server(
    directory: Path,
    database_url: str | None,
    log_path: Path,
    home: Path,
    *,
    extra_env: Mapping[str, str | None] | None = None,
) -> ServerProcess:
    """Starts a server and waits until it answers; retries on a port taken in the meantime."""
    for _attempt in range(3):
        server = spawn_server(directory, database_url, log_path, home, extra_env=extra_env)
        try:
            return wait_until_ready(server)
        except ServerExited as exc:
            if "address already in use" not in exc.log.lower():
                pytest.fail(str(exc))
    pytest.fail(f"could not find a free port for coffer server:\n{log_path.read_text()}")


def start_node(
    first: ServerProcess,
    directory: Path,
    log_path: Path,
    home: Path,
    *,
    extra_env: Mapping[str, str | None] | None = None,
) -> ServerProcess:
    """Starts another node of ``first``'s vault, as an operator adds one: ``coffer server
    --no-init`` in its own ``directory``, on the same database, with ``first``'s root key file
    (``COFFER_ROOT_KEY_FILE``) unless ``extra_env`` names the key otherwise. Waits until it
    answers (retrying on a port taken meanwhile); its ``token`` is ``first``'s."""
    env: dict[str, str | None] = {
        "COFFER_ROOT_KEY_FILE": str(first.directory / "root.key"),
        **(extra_env or {}),
    }
    for _attempt in range(3):
        node = spawn_server(
            directory, first.database_url, log_path, home, extra_env=env, server_args=("--no-init",)
        )
        try:
            ready = wait_until_ready(node)
        except ServerExited as exc:
            if "address already in use" not in exc.log.lower():
                pytest.fail(str(exc))
            continue
        assert ready.token is None, f"the new node initialised a vault:\n{ready.log_text()}"
        ready.token = first.token
        return ready
    pytest.fail(f"could not find a free port for coffer server:\n{log_path.read_text()}")


def wait_for_exit(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Returns the exit status, or None (after killing it) when it runs past ``timeout``."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def unique_name(prefix: str) -> str:
    """Returns a project name unlikely to clash with another test's on a shared server."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """Returns stdout of a command that must succeed (showing everything when it did not)."""
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return result.stdout


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    """Returns the parsed stdout of a --json command that must succeed."""
    return json.loads(ok(result))


def failed(result: subprocess.CompletedProcess[str], code: int) -> str:
    """Returns stderr of a command that must fail with ``code`` and print nothing on stdout."""
    assert result.returncode == code, (
        f"expected exit {code}, got {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert result.stdout == ""
    return result.stderr
