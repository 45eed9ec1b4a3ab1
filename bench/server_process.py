"""One `coffer server` process for a benchmark run: a temporary vault, a free port, CPU pinning.

The machine the benchmarks run on has two cores shared with other work. The plan (see
``cpu_plan``) gives the server one core of its own and everything else (the load generator, the
CLI runs and this script) the other, so the client never competes with the server for its core.
A single uvicorn process executes Python under one GIL, so it cannot use much more than one core
anyway; pinning costs it little and makes runs comparable.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

BIN = Path(sys.executable).parent
COFFER = BIN / "coffer"

# Rate limits of a benchmark server. Every rule is off by default: a benchmark sends thousands
# of requests a second from one address and one identity, far past any production limit
# (6000/minute per address, 3000/minute per identity by default), and the login flood must
# really hash every attempt instead of being refused by the per-address or per-account limit.
# The limiter's own cost is measured separately, on a server with LIMITS_HIGH.
LIMITS_OFF: dict[str, str] = {
    "COFFER_RATE_LIMIT_IP": "off",
    "COFFER_RATE_LIMIT_IDENTITY": "off",
    "COFFER_LOGIN_RATE_LIMIT": "off",
    "COFFER_LOGIN_FAILURE_LIMIT": "off",
}
# The API limits on, counting every request as in production, but set so high that the
# benchmark never reaches them: the difference to LIMITS_OFF is the limiter's bookkeeping.
LIMITS_HIGH: dict[str, str] = {
    **LIMITS_OFF,
    "COFFER_RATE_LIMIT_IP": "100000000/minute",
    "COFFER_RATE_LIMIT_IDENTITY": "100000000/minute",
}


@dataclass(frozen=True)
class CpuPlan:
    """Which CPUs the server and the client side (load generator, CLI, this script) may use."""

    server: frozenset[int] | None
    client: frozenset[int] | None

    def describe(self) -> str:
        if self.server is None or self.client is None:
            return "not pinned (server and client share all CPUs)"
        return (
            f"server on CPU {_cpus(self.server)}; "
            f"load generator, CLI and runner on CPU {_cpus(self.client)}"
        )


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(str(c) for c in sorted(cpus))


def cpu_plan(pin: bool = True) -> CpuPlan:
    """Returns the server's core (the first CPU this process may use) and the client's (the
    rest); no pinning when asked not to, when the platform cannot, or with a single CPU."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return CpuPlan(None, None)
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return CpuPlan(None, None)
    return CpuPlan(frozenset(available[:1]), frozenset(available[1:]))


def pin_self(cpus: frozenset[int] | None) -> None:
    """Pins this process (and so every child started later) to ``cpus``."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)


def process_cpu_seconds(pid: int) -> float | None:
    """Returns the user+system CPU time used so far by process ``pid`` and all its threads
    (not its children), or None where /proc is not available."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the ")" that closes the command name: state is field 3, utime 14, stime 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu_seconds(pid: int) -> float | None:
    """Returns the user+system CPU time used so far by process ``pid`` and every living
    descendant (a server's worker processes), or None where /proc is not available. Workers
    that exited are not counted (their time goes to their parent's children counters)."""
    if process_cpu_seconds(pid) is None:
        return None
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat[1])  # after ")": state, then ppid
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in family:
                family.add(child)
                frontier.append(child)
    times = (process_cpu_seconds(p) for p in family)
    return sum(t for t in times if t is not None)


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def base_env(**extra: str) -> dict[str, str]:
    """The environment for coffer processes: this one without any COFFER_* variables (a
    developer's COFFER_TOKEN or COFFER_DATABASE_URL must not leak in), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COFFER_")}
    env.update(extra)
    return env


@dataclass
class ServerHandle:
    """A running server and what a benchmark needs to talk to it."""

    label: str
    base_url: str
    token: str
    pid: int
    directory: Path
    database: str
    extra: dict[str, Any] = field(default_factory=dict)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def secret_path(self, project: str, environment: str, key: str) -> str:
        return (
            f"/api/v1/projects/{quote(project)}/environments/{quote(environment)}"
            f"/secrets/{quote(key, safe='/')}"
        )


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Waits until ``url``/healthz answers 200; raises when ``proc`` exits first (with its
    ``log``) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"coffer server exited with {proc.returncode}:\n{log.read_text(errors='replace')}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"coffer server did not answer /healthz in {timeout:.0f} s")


@contextlib.contextmanager
def spawned_server(
    argv: list[str],
    *,
    directory: Path,
    env: Mapping[str, str],
    log_path: Path,
    cpus: frozenset[int] | None,
    label: str,
    token: str,
    database: str,
    extra: dict[str, Any] | None = None,
    startup_timeout: float = 60.0,
    stop_timeout: float = 15.0,
) -> Iterator[ServerHandle]:
    """Starts ``argv + --dir DIRECTORY --host 127.0.0.1 --port P`` (``argv`` being a ``coffer
    server`` command line, P a free port) with ``env``, pinned to ``cpus``, its output in
    ``log_path``; waits for /healthz, yields its handle and stops it afterwards (terminate, then
    kill after ``stop_timeout`` seconds)."""
    port = free_port()

    def _pin() -> None:  # runs in the child before exec: uvicorn's threads inherit it
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    command = [*argv, "--dir", str(directory), "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command,
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_pin,  # safe: no other thread of the runner runs meanwhile
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, proc, log_path, startup_timeout)
        yield ServerHandle(
            label=label,
            base_url=base_url,
            token=token,
            pid=proc.pid,
            directory=directory,
            database=database,
            extra=dict(extra or {}),
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def running_server(
    label: str,
    plan: CpuPlan,
    *,
    database_url: str | None = None,
    limits: Mapping[str, str] = LIMITS_OFF,
    source: Path | None = None,
    startup_timeout: float = 30.0,
) -> Iterator[ServerHandle]:
    """Initialises a vault in a temporary directory (on ``database_url`` when given, else the
    embedded SQLite file), starts one ``coffer server`` pinned to the server's core with the
    access log off and the rate limits ``limits`` (all off by default), yields its handle and
    stops it afterwards. With ``source`` (a directory holding a ``coffer`` package, such as
    another revision's ``src``), ``coffer init`` and the server import coffer from there."""
    workdir = Path(tempfile.mkdtemp(prefix="coffer-bench-"))
    vault = workdir / "vault"
    extra = {"COFFER_ACCESS_LOG": "false", "COFFER_LOG_LEVEL": "warning", **limits}
    if database_url:
        extra["COFFER_DATABASE_URL"] = database_url
    if source is not None:
        extra["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(source), os.environ.get("PYTHONPATH", "")) if p
        )
    env = base_env(**extra)
    init = subprocess.run(
        [str(COFFER), "init", "--dir", str(vault), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(f"coffer init failed ({init.returncode}): {init.stderr.strip()}")
    token = json.loads(init.stdout)["token"]
    try:
        with spawned_server(
            [str(COFFER), "server"],
            directory=vault,
            env=env,
            log_path=workdir / "server.log",
            cpus=plan.server,
            label=label,
            token=token,
            database="postgresql" if database_url else "sqlite",
            extra={"limits": dict(limits)},
            startup_timeout=startup_timeout,
            stop_timeout=10.0,
        ) as handle:
            yield handle
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def seed(server: ServerHandle, project: str, environment: str, values: dict[str, str]) -> None:
    """Creates ``project`` (which brings development/staging/production) and writes ``values``
    into ``environment`` through the API."""
    with httpx.Client(base_url=server.base_url, headers=server.auth(), timeout=10.0) as client:
        response = client.post("/api/v1/projects", json={"name": project})
        response.raise_for_status()
        for key, value in values.items():
            response = client.put(
                server.secret_path(project, environment, key), json={"value": value}
            )
            response.raise_for_status()
        # one authenticated read to check the path the benchmark drives actually works
        first = next(iter(values))
        response = client.get(server.secret_path(project, environment, first))
        response.raise_for_status()
        if response.json().get("value") != values[first]:
            raise RuntimeError("the seeded secret did not read back")


@dataclass(frozen=True)
class Identities:
    """The non-bootstrap callers a benchmark uses: a machine token whose machine reaches the
    read path only through its grants, and a person who can log in with a password."""

    machine: str
    machine_token: str
    machine_scopes: tuple[str, ...]
    email: str
    password: str = field(repr=False)

    def machine_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.machine_token}"}


def seed_identities(
    server: ServerHandle,
    project: str,
    environment: str,
    key: str,
    *,
    machine: str = "bench-deployer",
    email: str = "bench.user@example.test",
    password: str | None = None,
) -> Identities:
    """Creates, with the bootstrap token, what a realistic caller looks like: a second project,
    a machine identity with scopes (read on ``project:environment``, read on another of the
    project's environments, read on the second project) plus an expiring ``none`` grant on a
    third environment, and a token for it; and an admin account (invitation, then acceptance
    with a password). Checks that the machine token reads ``key`` in ``environment`` and is
    refused elsewhere, and that the account logs in (with ``password``, by default a random
    one)."""
    password = password or secrets.token_urlsafe(18)
    others = [e for e in ("staging", "production") if e != environment]
    scopes = (
        f"{project}:{environment}:read",
        f"{project}:{others[0]}:read",
        "bench-shared:read",
    )
    with httpx.Client(base_url=server.base_url, headers=server.auth(), timeout=30.0) as client:
        client.post("/api/v1/projects", json={"name": "bench-shared"}).raise_for_status()
        client.post(
            "/api/v1/machines", json={"name": machine, "scopes": list(scopes)}
        ).raise_for_status()
        client.post(
            "/api/v1/grants",
            json={"machine": machine, "scope": f"{project}:{others[1]}:none", "expires_in": "30d"},
        ).raise_for_status()
        issued = client.post(f"/api/v1/machines/{quote(machine)}/tokens", json={"name": "bench"})
        issued.raise_for_status()
        invitation = client.post("/api/v1/members/invite", json={"email": email, "role": "admin"})
        invitation.raise_for_status()
    with httpx.Client(base_url=server.base_url, timeout=30.0) as anonymous:
        anonymous.post(
            "/api/v1/invitations/accept",
            json={"token": invitation.json()["token"], "password": password},
        ).raise_for_status()
    identities = Identities(
        machine=machine,
        machine_token=issued.json()["token"],
        machine_scopes=(*scopes, f"{project}:{others[1]}:none (grant, expires in 30d)"),
        email=email,
        password=password,
    )
    with httpx.Client(base_url=server.base_url, timeout=30.0) as anonymous:
        # the machine reads where its scope says, and nowhere else
        allowed = anonymous.get(
            server.secret_path(project, environment, key),
            headers=identities.machine_auth(),
        )
        denied = anonymous.get(
            server.secret_path(project, others[1], key),
            headers=identities.machine_auth(),
        )
        login = anonymous.post("/api/v1/auth/login", json={"email": email, "password": password})
    if allowed.status_code != 200 or denied.status_code != 403 or login.status_code != 200:
        raise RuntimeError(
            f"identity set-up check failed: machine read {allowed.status_code} (want 200), "
            f"outside its grants {denied.status_code} (want 403), login {login.status_code}"
        )
    return identities


@contextlib.contextmanager
def revision_source(revision: str) -> Iterator[Path]:
    """Yields a temporary directory holding ``src`` of git revision ``revision`` of this
    checkout (``git archive``), for ``running_server(source=...)``; removes it afterwards."""
    root = Path(__file__).resolve().parent.parent
    workdir = Path(tempfile.mkdtemp(prefix="coffer-bench-rev-"))
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", revision, "src"],
            cwd=root,
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(workdir)], input=archive.stdout, check=True)
        yield workdir / "src"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def postgres_schema(admin_url: str) -> Iterator[str]:
    """Creates a fresh schema in the database named by ``admin_url`` (a SQLAlchemy or libpq
    URL), yields a SQLAlchemy URL whose connections use it as their search_path, and drops it
    (with everything coffer created there) afterwards."""
    import psycopg

    libpq_url = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    schema = f"coffer_bench_{secrets.token_hex(4)}"
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in libpq_url else "?"
    sa_url = (
        libpq_url.replace("postgresql://", "postgresql+psycopg://", 1)
        + f"{separator}options=-csearch_path%3D{schema}"
    )
    try:
        yield sa_url
    finally:
        with psycopg.connect(libpq_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
