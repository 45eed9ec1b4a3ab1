"""Production ASGI servers compared on coffer itself: uvicorn, granian, hypercorn.

Not part of ``make bench``; run it when choosing the server ``coffer server`` runs::

    .venv/bin/pip install granian hypercorn          # for the measurement only
    .venv/bin/python bench/asgi_servers.py [--quick] [--servers uvicorn,granian,hypercorn]
        [--processes 1,2] [--connections 64] [--rounds 3] [--duration 5] [--postgres URL]

Every candidate serves the same application, built by ``bench/asgi_app.py`` (``build_services``
then ``create_app``, background jobs in the lifespan) from a fresh vault of its own (``coffer
init``), with every rate limit off (``server_process.LIMITS_OFF``) and no access log:

* uvicorn with httptools and uvloop (what ``coffer server`` runs today);
* granian (Rust HTTP stack, ``--interface asgi``, uvloop, HTTP/1 only, no websockets);
* hypercorn (h11, ``--worker-class uvloop``).

Each runs as **1** worker process and as **2** (the server's own ``--workers``). Two streams per
candidate: ``GET /healthz`` (constant, no auth, no database) and the authenticated secret read
``GET /api/v1/projects/bench/environments/development/secrets/db/password`` with a machine token
whose machine has scopes and a grant (``server_process.seed_identities``), each with wrk at
``--connections`` keep-alive connections and 2 wrk threads. All candidates run at once (idle when
not measured) and the rounds are interleaved: for each round, each candidate's constant endpoint
then its read, so drift on a shared machine hits all of them alike. With ``--postgres`` they run
one after the other instead (each worker process holds a pool of up to 32 connections: all of
them at once would pass PostgreSQL's default ``max_connections`` of 100).

The machine has 2 cores, shared with wrk (and PostgreSQL with ``--postgres``). A 1-process
candidate is pinned to the first core and wrk to the second (as ``run_all.py`` does); a
2-process candidate and wrk are not pinned: they share both cores, so 2 processes can at best
use what wrk leaves. CPU per request counts the server's whole process tree.

Prints a table (req/s, p50, p99, read/constant) and writes ``bench/results/asgi-servers.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_load import LoadResult, Request, choose_tool, run_load
from server_process import (
    BIN,
    COFFER,
    LIMITS_OFF,
    ServerHandle,
    base_env,
    free_port,
    postgres_schema,
    process_tree_cpu_seconds,
    revision_source,
    seed,
    seed_identities,
    wait_healthy,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PROJECT, ENVIRONMENT, READ_KEY = "bench", "development", "db/password"
SECRETS = {
    READ_KEY: "correct-horse-battery-staple-0123456789",
    "db/user": "app",
    "api/stripe_key": "sk_test_" + "x" * 24,
}
SERVERS = ("uvicorn", "granian", "hypercorn")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def server_argv(server: str, processes: int, port: int) -> list[str]:
    """The command line that serves ``asgi_app:app`` with ``server`` on 127.0.0.1:``port``
    with ``processes`` worker processes (bench/ is on the PYTHONPATH)."""
    if server == "uvicorn":
        return [
            str(BIN / "python"),
            "-m",
            "uvicorn",
            "--factory",
            "asgi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(processes),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--no-server-header",
            "--no-proxy-headers",
            "--log-level",
            "warning",
        ]
    if server == "granian":
        return [
            str(BIN / "granian"),
            "--interface",
            "asgi",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(processes),
            "--loop",
            "uvloop",
            "--http",
            "1",
            "--no-ws",
            "--no-access-log",
            "--log-level",
            "warning",
            "asgi_app:app",
        ]
    if server == "hypercorn":
        return [
            str(BIN / "hypercorn"),
            "--worker-class",
            "uvloop",
            "--workers",
            str(processes),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "asgi_app:app()",
        ]
    raise ValueError(f"unknown server {server!r}")


def server_version(server: str) -> str:
    found = subprocess.run(
        [
            str(BIN / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version({server!r}))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or "not installed"


@dataclass
class Candidate:
    """One server configuration under test, once started."""

    server: str
    processes: int
    cpus: frozenset[int] | None
    handle: ServerHandle | None = None
    machine_token: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        return f"{self.server} x{self.processes}"


@contextlib.contextmanager
def started(
    candidate: Candidate,
    database_url: str | None,
    source: Path | None = None,
    timeout: float = 60.0,
    redis_url: str | None = None,
) -> Iterator[Candidate]:
    """Initialises a vault for ``candidate``, starts its server (pinned to its CPUs), seeds the
    data and the machine identity, yields it, and stops the server (its whole process group).
    With ``source`` (another revision's ``src``), coffer is imported from there."""
    workdir = Path(tempfile.mkdtemp(prefix="coffer-asgi-"))
    vault = workdir / "vault"
    paths = (str(BENCH_DIR), str(source or ""), os.environ.get("PYTHONPATH", ""))
    extra = {
        "COFFER_DIR": str(vault),
        "COFFER_ACCESS_LOG": "false",
        "COFFER_LOG_LEVEL": "warning",
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        **LIMITS_OFF,
    }
    if database_url:
        extra["COFFER_DATABASE_URL"] = database_url
    if redis_url:
        extra["COFFER_REDIS_URL"] = redis_url
    env = base_env(**extra)
    try:
        init = subprocess.run(
            [str(COFFER), "init", "--dir", str(vault), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if init.returncode != 0:
            raise RuntimeError(f"coffer init failed ({init.returncode}): {init.stderr.strip()}")
        token = json.loads(init.stdout)["token"]
        port = free_port()
        with _process(
            server_argv(candidate.server, candidate.processes, port),
            env,
            workdir / "server.log",
            candidate.cpus,
            f"http://127.0.0.1:{port}",
            timeout,
        ) as pid:
            handle = ServerHandle(
                label=candidate.name,
                base_url=f"http://127.0.0.1:{port}",
                token=token,
                pid=pid,
                directory=vault,
                database="postgresql" if database_url else "sqlite",
            )
            try:
                seed(handle, PROJECT, ENVIRONMENT, SECRETS)
                identities = seed_identities(handle, PROJECT, ENVIRONMENT, READ_KEY)
            except Exception:
                tail = (workdir / "server.log").read_text(errors="replace").splitlines()[-40:]
                log(f"{candidate.name}: setting up failed; the server's log ends:")
                log("\n".join(tail))
                raise
            candidate.handle = handle
            candidate.machine_token = identities.machine_token
            yield candidate
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _process(
    argv: list[str],
    env: Mapping[str, str],
    log_path: Path,
    cpus: frozenset[int] | None,
    url: str,
    timeout: float,
) -> Iterator[int]:
    """Runs ``argv`` in a new session (so its workers can be stopped with it), pinned to
    ``cpus``, until /healthz answers; yields its pid; then SIGTERM to the group, SIGKILL after
    15 s."""

    def _pin() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_pin,
            start_new_session=True,
            cwd=str(BENCH_DIR),
        )
    try:
        wait_healthy(url, proc, log_path, timeout)
        yield proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            proc.wait()


@contextlib.contextmanager
def client_affinity(cpus: frozenset[int] | None) -> Iterator[None]:
    """Runs the block with this process (and so the wrk it starts) on ``cpus`` (None: on every
    CPU this process started with)."""
    everything = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if everything is None:
        yield
        return
    os.sched_setaffinity(0, cpus or ALL_CPUS)
    try:
        yield
    finally:
        os.sched_setaffinity(0, everything)


ALL_CPUS: frozenset[int] = frozenset(
    os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()
)


def measure(
    handle: ServerHandle,
    request: Request,
    seconds: float,
    connections: int,
    tool: str,
    client_cpus: frozenset[int] | None,
) -> LoadResult:
    """Drives ``request`` against ``handle`` and adds the server tree's CPU share and CPU
    microseconds per request."""
    with client_affinity(client_cpus):
        before = process_tree_cpu_seconds(handle.pid)
        result = run_load(
            handle.base_url,
            request,
            duration=seconds,
            connections=connections,
            threads=2,
            tool=tool,
        )
        after = process_tree_cpu_seconds(handle.pid)
    if before is not None and after is not None and result.requests:
        result.detail["server_cpu_percent"] = 100 * (after - before) / result.duration_s
        result.detail["server_cpu_us_per_request"] = 1e6 * (after - before) / result.requests
    return result


def summary(results: list[LoadResult]) -> dict[str, Any]:
    """Rounds combined: rate over all requests, mean of the p50s, worst p99, CPU per request."""
    requests = sum(r.requests for r in results)
    seconds = sum(r.duration_s for r in results)
    cpu = [
        (float(r.detail["server_cpu_us_per_request"]), r.requests)
        for r in results
        if r.detail.get("server_cpu_us_per_request") is not None
    ]
    return {
        "rps": requests / seconds if seconds else 0.0,
        "p50_ms": sum(r.p50_ms for r in results) / len(results),
        "p99_ms": max(r.p99_ms for r in results),
        "requests": requests,
        "errors": sum(r.errors for r in results),
        "server_cpu_us_per_request": (
            sum(c * n for c, n in cpu) / requests if requests and len(cpu) == len(results) else None
        ),
        "server_cpu_percent": (
            sum(r.detail.get("server_cpu_percent") or 0.0 for r in results) / len(results)
        ),
        "rounds_rps": [round(r.rps, 1) for r in results],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--processes", default="1,2", help="worker processes, comma-separated")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per segment")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", metavar="URL", help="serve from PostgreSQL (fresh schemas)")
    parser.add_argument("--redis-url", metavar="URL", help="COFFER_REDIS_URL of every server")
    parser.add_argument(
        "--revision",
        metavar="REV",
        help="serve git revision REV's src/ (through PYTHONPATH) instead of the working tree",
    )
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--quick", action="store_true", help="2 s segments, 1 round")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "asgi-servers.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 2.0, 1.0, 1
    return args


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            " | ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "",
        f"ASGI servers on coffer  {meta['date']}  ({meta['cpus']} CPUs, shared with wrk; "
        f"database {meta['database']}{', Redis' if meta['redis'] else ''})",
        f"wrk: {meta['connections']} connections, 2 threads, {meta['duration_s']:g} s per "
        f"segment, {meta['rounds']} rounds "
        f"({'interleaved across servers' if meta['interleaved'] else 'one server at a time'})"
        "; load average before/after "
        f"{meta['loadavg_before']} / {meta['loadavg_after']}",
        "pinning: 1 process: server on CPU 0, wrk on CPU 1; 2 processes: nothing pinned "
        "(server workers and wrk share both cores)"
        if meta["pinned"]
        else "pinning: none",
        "versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
    ]
    rows = []
    for name, section in results["candidates"].items():
        for stream in ("constant", "read"):
            s = section[stream]
            ratio = section["read_over_constant"]
            cpu = s["server_cpu_us_per_request"]
            rows.append(
                [
                    name,
                    "GET /healthz" if stream == "constant" else "secret read (machine token)",
                    f"{s['rps']:.0f}",
                    f"{s['p50_ms']:.2f}",
                    f"{s['p99_ms']:.2f}",
                    f"{ratio:.2f}" if stream == "read" else "",
                    "?" if cpu is None else f"{cpu:.0f}",
                    f"{s['server_cpu_percent']:.0f}%",
                    str(s["errors"]),
                ]
            )
    lines.append(
        _table(
            [
                "server",
                "endpoint",
                "req/s",
                "p50 ms",
                "p99 ms",
                "read/const",
                "CPU us/req",
                "srv CPU",
                "errors",
            ],
            rows,
        )
    )
    return "\n".join(lines)


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tool = choose_tool(args.loadgen)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    counts = [int(p) for p in args.processes.split(",") if p.strip()]
    pin = not args.no_pin and len(ALL_CPUS) >= 2
    first = frozenset(sorted(ALL_CPUS)[:1])
    rest = frozenset(sorted(ALL_CPUS)[1:])
    candidates = [
        Candidate(server, n, first if pin and n == 1 else None)
        for n in counts
        for server in servers
    ]
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "database": "postgresql" if args.postgres else "sqlite",
            "revision": args.revision or "working tree",
            "redis": bool(args.redis_url),
            "tool": tool,
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "pinned": pin,
            "limits": LIMITS_OFF,
            "versions": {s: server_version(s) for s in servers},
            "argv": {c.name: server_argv(c.server, c.processes, 0) for c in candidates},
            "loadavg_before": _loadavg(),
        },
        "candidates": {},
    }
    started_at = time.monotonic()

    def streams(c: Candidate) -> list[tuple[str, Request]]:
        assert c.handle is not None
        path = c.handle.secret_path(PROJECT, ENVIRONMENT, READ_KEY)
        auth = {"Authorization": f"Bearer {c.machine_token}"}
        return [("constant", Request("GET", "/healthz")), ("read", Request("GET", path, auth))]

    def client_cpus(c: Candidate) -> frozenset[int] | None:
        return rest if c.cpus is not None else None

    buckets: dict[str, dict[str, list[LoadResult]]] = {
        c.name: {"constant": [], "read": []} for c in candidates
    }

    def run(group: list[Candidate]) -> None:
        """Warm-ups, then the interleaved rounds of ``group``'s streams."""
        for c in group:
            assert c.handle is not None
            for _stream, request in streams(c):
                measure(c.handle, request, args.warmup, args.connections, tool, client_cpus(c))
        for round_no in range(1, args.rounds + 1):
            for c in group:
                assert c.handle is not None
                for stream, request in streams(c):
                    r = measure(
                        c.handle, request, args.duration, args.connections, tool, client_cpus(c)
                    )
                    buckets[c.name][stream].append(r)
                    log(
                        f"round {round_no} {c.name:13s} {stream:8s} {r.rps:8.0f} req/s  p50 "
                        f"{r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  errors {r.errors}"
                    )

    # On PostgreSQL each worker process holds a pool of up to 32 connections: all candidates
    # at once would pass the server's max_connections (100 by default), so there they run
    # one after the other (each its own warm-up and rounds), not interleaved.
    groups = [[c] for c in candidates] if args.postgres else [candidates]
    results["meta"]["interleaved"] = not args.postgres
    with contextlib.ExitStack() as outer:
        source = outer.enter_context(revision_source(args.revision)) if args.revision else None
        for group in groups:
            with contextlib.ExitStack() as stack:
                for candidate in group:
                    url = (
                        stack.enter_context(postgres_schema(args.postgres))
                        if args.postgres
                        else None
                    )
                    log(f"starting {candidate.name}")
                    stack.enter_context(started(candidate, url, source, redis_url=args.redis_url))
                run(group)
    for c in candidates:
        constant = summary(buckets[c.name]["constant"])
        read = summary(buckets[c.name]["read"])
        results["candidates"][c.name] = {
            "server": c.server,
            "processes": c.processes,
            "pinned_cpus": sorted(c.cpus) if c.cpus is not None else None,
            "constant": constant,
            "read": read,
            "read_over_constant": read["rps"] / constant["rps"] if constant["rps"] else 0.0,
        }
    results["meta"]["loadavg_after"] = _loadavg()
    results["meta"]["elapsed_s"] = round(time.monotonic() - started_at, 1)
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.output}  (took {results['meta']['elapsed_s']:.0f} s)")
    errors = any(
        section[s]["errors"]
        for section in results["candidates"].values()
        for s in ("constant", "read")
    )
    if errors:
        print("WARNING: some requests failed; the figures above are not valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
