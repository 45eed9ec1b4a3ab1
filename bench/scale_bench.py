"""Scale out and speed up (issue 7): reads, writes, and two nodes against one.

    .venv/bin/python bench/scale_bench.py [--quick] [--workers N] [--revision REV]
    COFFER_BENCH_POSTGRES_URL=postgresql+psycopg://u@host/db .venv/bin/python bench/scale_bench.py
    .venv/bin/python bench/run_all.py --only scale [--quick] [--workers N]

One run on the embedded SQLite and, when ``COFFER_BENCH_POSTGRES_URL`` (or ``--postgres``) names a
PostgreSQL server, one on a fresh schema there (dropped at the end). Every server is a real
``coffer server`` started by this script on a free 127.0.0.1 port, with every rate limit off
(``server_process.LIMITS_OFF``), the access log off and ``COFFER_WORKERS=--workers`` (worker
processes per node). The load generator is wrk (required: the writes spread over several keys
with a Lua ``request`` hook).

(a) **Reads.** ``GET /api/v1/projects/bench/environments/development/secrets/db/password`` with a
    machine token whose machine has three scopes and an expiring ``none`` grant (the policy
    really runs; ``server_process.seed_identities``), each read writing its ``secret.read`` audit
    entry, next to ``GET /healthz`` (constant: no auth, no database) of the same server, at
    ``--connections`` (64) keep-alive connections, 2 wrk threads; after a warm-up, ``--rounds``
    interleaved rounds (healthz, read, healthz, read...). Targets: >= 8,000 reads/s and reads
    >= 60 % of the constant endpoint's rate.
(b) **Writes.** ``PUT .../secrets/bench/write-NN`` (a new version of one of ``--write-keys`` keys,
    round-robin per wrk thread, each thread on its own part of the keys, so concurrent writes
    are not all on one row) with the bootstrap token, at 64 and at 16 connections, interleaved
    rounds. Each PUT seals a new version and writes its audit entry. Target: >= 2,000 writes/s on
    SQLite.
(c) **Two nodes against one** (PostgreSQL only). A second ``coffer server`` on another port, the
    same database and vault directory (root key), both nodes with ``COFFER_REDIS_URL`` on a Redis
    database that was empty (``--redis-url``, default: the first empty one of 14..1 on
    127.0.0.1:6379; a marker key claims it, it is flushed at the end only if the marker is still
    there). One node: wrk with 64 connections, 2 threads against node A. Two nodes: two wrk
    processes at once, 32 connections and 1 thread each, one per node; rates summed, the worse
    p99. Same for ``/healthz``. Interleaved rounds. The paper estimate of nodes for 100,000
    reads/s divides by the one-node rate; the PostgreSQL CPU per read (all ``postgres``
    processes of the machine, so other sessions' queries count too) says what the database
    would need.

**Pinning.** The machine has 2 cores, shared with wrk and PostgreSQL. With ``--workers 1`` (one
process per node, one GIL) node A is pinned to the first core and node B to the second; wrk runs
on the second core in (a) and (b) (as ``run_all.py`` does) and on both in (c), where two nodes
and two wrk processes have to share two cores anyway. With more workers nothing is pinned.
Server CPU counts each node's whole process tree (its workers).

Prints a table and the targets with PASS/FAIL, writes ``bench/results/scale.json`` and exits 0
whether or not a target is met (it reports, it does not gate).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_load import LoadResult, Request, parse_wrk, wrk_path, wrk_script
from server_process import (
    COFFER,
    LIMITS_OFF,
    ServerHandle,
    base_env,
    postgres_schema,
    process_tree_cpu_seconds,
    revision_source,
    seed,
    seed_identities,
    spawned_server,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROJECT, ENVIRONMENT, READ_KEY = "bench", "development", "db/password"
SECRETS = {
    READ_KEY: "correct-horse-battery-staple-0123456789",
    "db/user": "app",
    "api/stripe_key": "sk_test_" + "x" * 24,
    "smtp/password": "p" * 32,
    "feature/flags": '{"beta": true, "limit": 10}',
}
WRITE_BODY = json.dumps({"value": "rotated-" + "v" * 32}).encode()

READS_TARGET = 8000.0
READ_RATIO_TARGET = 0.60
WRITES_TARGET = 2000.0
PAPER_READS = 100_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_key(i: int) -> str:
    return f"bench/write-{i:02d}"


# --- CPU --------------------------------------------------------------------------------------

ALL_CPUS: frozenset[int] = frozenset(
    os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()
)


@contextlib.contextmanager
def client_affinity(cpus: frozenset[int] | None) -> Iterator[None]:
    """Runs the block with this process (and so every wrk it starts) on ``cpus`` (None: every
    CPU this process started with)."""
    if not ALL_CPUS:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus or ALL_CPUS)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def named_cpu_seconds(command: str) -> dict[int, float]:
    """CPU seconds used so far by each living process whose command name is ``command`` (e.g.
    PostgreSQL's backends and workers), by pid; empty where /proc is not there. Compare two
    calls over the pids present in both (``cpu_delta``): a process that exited in between
    would otherwise count negative, one that started would count its whole life."""
    found, tick = {}, os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        if text[text.find("(") + 1 : text.rfind(")")] == command:
            fields = text.rsplit(")", 1)[1].split()
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return found


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two ``named_cpu_seconds`` calls by the processes in both."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


# --- wrk over several paths --------------------------------------------------------------------


def _lua_paths(paths: list[str], threads: int) -> str:
    """A Lua ``request`` hook that sends the request of the generated script to ``paths`` in
    turn; thread t starts at t/threads of the list, so threads write different keys."""
    quoted = ", ".join('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in paths)
    return f"""
local paths = {{{quoted}}}
local next_thread = 0
setup = function(thread)
  thread:set("thread_no", next_thread)
  next_thread = next_thread + 1
end
local counter = nil
request = function()
  if counter == nil then
    counter = (thread_no or 0) * math.floor(#paths / {threads})
  end
  counter = counter + 1
  return wrk.format(nil, paths[(counter % #paths) + 1])
end
"""


def run_wrk(
    base_url: str,
    request: Request,
    *,
    seconds: float,
    connections: int,
    threads: int,
    paths: list[str] | None = None,
) -> LoadResult:
    """Runs wrk with ``request`` (or, with ``paths``, the same request to each path in turn)
    against ``base_url`` and returns its figures (latencies in milliseconds)."""
    binary = wrk_path()
    if binary is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    script_text = wrk_script(request) + (_lua_paths(paths, threads) if paths else "")
    with tempfile.TemporaryDirectory(prefix="coffer-wrk-") as tmp:
        script = Path(tmp) / "request.lua"
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # holds a token
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(script_text)
        argv = [
            binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base_url + request.path,
        ]
        completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    f = parse_wrk(completed.stdout)
    duration = f["duration_us"] / 1e6
    errors = {k: int(v) for k, v in f.items() if k.startswith("err_")}
    return LoadResult(
        tool="wrk",
        requests=int(f["requests"]),
        duration_s=duration,
        rps=f["requests"] / duration,
        mean_ms=f["mean_us"] / 1000,
        p50_ms=f["p50_us"] / 1000,
        p90_ms=f["p90_us"] / 1000,
        p99_ms=f["p99_us"] / 1000,
        max_ms=f["max_us"] / 1000,
        errors=sum(errors.values()),
        connections=connections,
        threads=threads,
        detail=dict(errors),
    )


# --- nodes ------------------------------------------------------------------------------------


@dataclass
class Node:
    handle: ServerHandle
    cpus: frozenset[int] | None


@dataclass
class Measured:
    """One segment: one or more wrk runs at once (one per node), combined."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    errors: int
    server_cpu_percent: float | None
    server_cpu_us_per_request: float | None
    pg_cpu_us_per_request: float | None
    per_node_rps: list[float]

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def measure(
    targets: list[tuple[Node, Request, int, int]],
    seconds: float,
    client_cpus: frozenset[int] | None,
    *,
    paths: Callable[[Node], list[str]] | None = None,
) -> Measured:
    """Runs one wrk per (node, request, connections, threads) at the same time for
    ``seconds``; sums the rates, takes the worst p99 and p50, and the nodes' CPU (process
    trees) and PostgreSQL's per request."""
    results: list[LoadResult | BaseException] = [RuntimeError("not run")] * len(targets)

    def one(i: int, node: Node, request: Request, connections: int, threads: int) -> None:
        try:
            results[i] = run_wrk(
                node.handle.base_url,
                request,
                seconds=seconds,
                connections=connections,
                threads=threads,
                paths=paths(node) if paths else None,
            )
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            results[i] = exc

    with client_affinity(client_cpus):
        cpu0 = [process_tree_cpu_seconds(t[0].handle.pid) for t in targets]
        pg0 = named_cpu_seconds("postgres")
        workers = [
            threading.Thread(target=one, args=(i, *t), daemon=True) for i, t in enumerate(targets)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        pg1 = named_cpu_seconds("postgres")
        cpu1 = [process_tree_cpu_seconds(t[0].handle.pid) for t in targets]
    loads: list[LoadResult] = []
    for r in results:
        if isinstance(r, BaseException):
            raise r
        loads.append(r)
    requests = sum(r.requests for r in loads)
    span = max(r.duration_s for r in loads)
    known = [(a, b) for a, b in zip(cpu0, cpu1, strict=True) if a is not None and b is not None]
    cpu = sum(b - a for a, b in known) if len(known) == len(targets) else None
    return Measured(
        rps=sum(r.rps for r in loads),
        p50_ms=max(r.p50_ms for r in loads),
        p99_ms=max(r.p99_ms for r in loads),
        requests=requests,
        seconds=span,
        errors=sum(r.errors for r in loads),
        server_cpu_percent=None if cpu is None else 100 * cpu / span,
        server_cpu_us_per_request=None if cpu is None or not requests else 1e6 * cpu / requests,
        pg_cpu_us_per_request=1e6 * cpu_delta(pg0, pg1) / requests if requests else None,
        per_node_rps=[round(r.rps, 1) for r in loads],
    )


def combine(segments: list[Measured]) -> dict[str, Any]:
    """Rounds combined: rate over all requests, mean p50, worst p99, CPU per request."""
    requests = sum(s.requests for s in segments)
    seconds = sum(s.seconds for s in segments)

    def weighted(attr: str) -> float | None:
        values: list[float | None] = [getattr(s, attr) for s in segments]
        known = [(v, s.requests) for v, s in zip(values, segments, strict=True) if v is not None]
        if not requests or len(known) < len(values):
            return None
        return sum(v * n for v, n in known) / requests

    shares = [s.server_cpu_percent for s in segments if s.server_cpu_percent is not None]
    return {
        "rps": requests / seconds if seconds else 0.0,
        "p50_ms": sum(s.p50_ms for s in segments) / len(segments),
        "p99_ms": max(s.p99_ms for s in segments),
        "requests": requests,
        "errors": sum(s.errors for s in segments),
        "server_cpu_us_per_request": weighted("server_cpu_us_per_request"),
        "server_cpu_percent": (sum(shares) / len(shares) if len(shares) == len(segments) else None),
        "pg_cpu_us_per_request": weighted("pg_cpu_us_per_request"),
        "rounds_rps": [round(s.rps, 1) for s in segments],
        "rounds": [s.as_dict() for s in segments],
    }


@dataclass
class Vault:
    directory: Path
    env: dict[str, str]
    token: str
    database: str
    workdir: Path


@contextlib.contextmanager
def vault(
    label: str, database_url: str | None, workers: int, source: Path | None
) -> Iterator[Vault]:
    """``coffer init`` of a fresh vault (on ``database_url``, or the embedded SQLite file) in a
    temporary directory; yields it with the environment of its nodes; removes it afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"coffer-scale-{label}-"))
    directory = workdir / "vault"
    extra = {
        "COFFER_ACCESS_LOG": "false",
        "COFFER_LOG_LEVEL": "warning",
        "COFFER_WORKERS": str(workers),
        **LIMITS_OFF,
    }
    if database_url:
        extra["COFFER_DATABASE_URL"] = database_url
    if source is not None:
        extra["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(source), os.environ.get("PYTHONPATH", "")) if p
        )
    env = base_env(**extra)
    try:
        init = subprocess.run(
            [str(COFFER), "init", "--dir", str(directory), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if init.returncode != 0:
            raise RuntimeError(f"coffer init failed ({init.returncode}): {init.stderr.strip()}")
        yield Vault(
            directory=directory,
            env=env,
            token=json.loads(init.stdout)["token"],
            database="postgresql" if database_url else "sqlite",
            workdir=workdir,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def node(
    v: Vault, label: str, cpus: frozenset[int] | None, extra_env: dict[str, str] | None = None
) -> Iterator[Node]:
    """One ``coffer server`` on the vault ``v`` (a free port, pinned to ``cpus``)."""
    with spawned_server(
        [str(COFFER), "server", "--no-init"],
        directory=v.directory,
        env={**v.env, **(extra_env or {})},
        log_path=v.workdir / f"{label}.log",
        cpus=cpus,
        label=label,
        token=v.token,
        database=v.database,
        startup_timeout=90.0,
    ) as handle:
        yield Node(handle, cpus)


@contextlib.contextmanager
def redis_database(url: str | None) -> Iterator[str]:
    """Yields a Redis URL for the nodes: ``url`` as given, or the first empty database of 14..1
    on 127.0.0.1:6379, claimed with a marker key and flushed at the end only if the marker is
    still ours (so a database someone else took meanwhile is left alone)."""
    import redis

    if url:
        yield url
        return
    marker, mine = "coffer-bench:claimed-by", secrets.token_hex(8)
    for number in range(14, 0, -1):
        client = redis.Redis(host="127.0.0.1", port=6379, db=number)
        if client.dbsize() == 0 and client.set(marker, mine, nx=True):
            break
        client.close()
    else:
        raise RuntimeError("no empty Redis database among 1..14 on 127.0.0.1:6379")
    try:
        yield f"redis://127.0.0.1:6379/{number}"
    finally:
        if client.get(marker) == mine.encode():
            client.flushdb()
        client.close()


# --- the parts --------------------------------------------------------------------------------


def _log_segment(label: str, name: str, m: Measured) -> None:
    cpu = "?" if m.server_cpu_percent is None else f"{m.server_cpu_percent:.0f}%"
    log(
        f"[{label}] {name:18s} {m.rps:8.0f} req/s  p50 {m.p50_ms:6.2f} ms  p99 "
        f"{m.p99_ms:7.2f} ms  errors {m.errors}  server CPU {cpu}"
    )


def interleaved(
    label: str,
    streams: list[
        tuple[str, list[tuple[Node, Request, int, int]], Callable[[Node], list[str]] | None]
    ],
    args: argparse.Namespace,
    client_cpus: frozenset[int] | None,
) -> dict[str, dict[str, Any]]:
    """Warms up each stream, then runs ``args.rounds`` rounds of all of them in turn."""
    for _name, targets, paths in streams:
        measure(targets, args.warmup, client_cpus, paths=paths)
    rounds: dict[str, list[Measured]] = {name: [] for name, _t, _p in streams}
    for round_no in range(1, args.rounds + 1):
        for name, targets, paths in streams:
            m = measure(targets, args.duration, client_cpus, paths=paths)
            rounds[name].append(m)
            _log_segment(label, f"{name} #{round_no}", m)
    return {name: combine(ms) for name, ms in rounds.items()}


def bench_database(
    label: str,
    database_url: str | None,
    args: argparse.Namespace,
    source: Path | None,
    plan: tuple[frozenset[int] | None, frozenset[int] | None, frozenset[int] | None],
) -> dict[str, Any]:
    """(a) and (b) on one node of a fresh vault; on PostgreSQL also (c) with a second node."""
    server_a, server_b, client = plan
    section: dict[str, Any] = {"database": label}
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_database(args.redis_url)) if database_url else None
        extra = {"COFFER_REDIS_URL": redis_url} if redis_url else {}
        section["redis"] = "yes (both nodes)" if redis_url else "no"
        v = stack.enter_context(vault(label, database_url, args.workers, source))
        a = stack.enter_context(node(v, f"{label}-a", server_a, extra))
        keys = [write_key(i) for i in range(args.write_keys)]
        seed(a.handle, PROJECT, ENVIRONMENT, {**SECRETS, **{k: "initial" for k in keys}})
        machine = seed_identities(a.handle, PROJECT, ENVIRONMENT, READ_KEY)
        read = Request(
            "GET",
            a.handle.secret_path(PROJECT, ENVIRONMENT, READ_KEY),
            headers=machine.machine_auth(),
        )
        healthz = Request("GET", "/healthz")
        c, t = args.connections, 2
        log(f"[{label}] (a) reads next to /healthz, {c} connections")
        section["reads"] = interleaved(
            label,
            [("healthz", [(a, healthz, c, t)], None), ("read", [(a, read, c, t)], None)],
            args,
            client,
        )
        constant, reads = section["reads"]["healthz"], section["reads"]["read"]
        section["reads"]["read_over_constant"] = (
            reads["rps"] / constant["rps"] if constant["rps"] else 0.0
        )
        section["reads"]["read_over_constant_by_round"] = [
            round(r / h, 3)
            for r, h in zip(reads["rounds_rps"], constant["rounds_rps"], strict=True)
        ]
        write = Request(
            "PUT",
            a.handle.secret_path(PROJECT, ENVIRONMENT, keys[0]),
            headers={**a.handle.auth(), "Content-Type": "application/json"},
            body=WRITE_BODY,
        )

        def write_paths(n: Node) -> list[str]:
            return [n.handle.secret_path(PROJECT, ENVIRONMENT, k) for k in keys]

        log(f"[{label}] (b) writes over {len(keys)} keys at {args.write_connections}")
        section["writes"] = interleaved(
            label,
            [(f"write c{wc}", [(a, write, wc, t)], write_paths) for wc in args.write_connections],
            args,
            client,
        )
        if database_url:
            b = stack.enter_context(node(v, f"{label}-b", server_b, extra))
            read_b = Request("GET", read.path, headers=read.headers)
            half = max(1, c // 2)
            log(f"[{label}] (c) one node ({c} connections) against two ({half} + {half})")
            section["nodes"] = interleaved(
                label,
                [
                    ("healthz 1 node", [(a, healthz, c, t)], None),
                    ("healthz 2 nodes", [(a, healthz, half, 1), (b, healthz, half, 1)], None),
                    ("read 1 node", [(a, read, c, t)], None),
                    ("read 2 nodes", [(a, read, half, 1), (b, read_b, half, 1)], None),
                ],
                args,
                None,  # two nodes and two wrk processes share the two cores
            )
            section["nodes"]["estimate"] = estimate(section["nodes"])
    return section


def estimate(nodes: dict[str, Any]) -> dict[str, Any]:
    """Paper estimate of what 100,000 reads/s would take, from the one-node read rate and its
    CPU per read (app side) and PostgreSQL's CPU per read."""
    one, two = nodes["read 1 node"], nodes["read 2 nodes"]
    per_node = one["rps"]
    app_us = one["server_cpu_us_per_request"]
    pg_us = one["pg_cpu_us_per_request"]
    return {
        "target_reads_per_s": PAPER_READS,
        "per_node_reads_per_s": per_node,
        "nodes_at_measured_rate": math.ceil(PAPER_READS / per_node) if per_node else None,
        "app_cpu_us_per_read": app_us,
        "app_cores_needed": PAPER_READS * app_us / 1e6 if app_us else None,
        "postgres_cpu_us_per_read": pg_us,
        "postgres_cores_needed": PAPER_READS * pg_us / 1e6 if pg_us else None,
        "two_over_one": two["rps"] / per_node if per_node else None,
    }


# --- report -----------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def _row(label: str, name: str, s: dict[str, Any], ratio: str = "") -> list[str]:
    return [
        label,
        name,
        f"{s['rps']:.0f}",
        f"{s['p50_ms']:.2f}",
        f"{s['p99_ms']:.2f}",
        ratio,
        _fmt(s["server_cpu_us_per_request"], ".0f"),
        _fmt(s["server_cpu_percent"], ".0f"),
        _fmt(s["pg_cpu_us_per_request"], ".0f") if label == "postgresql" else "",
        str(s["errors"]),
    ]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for label in ("sqlite", "postgresql"):
        section = results.get(label)
        if not section or "reads" not in section:
            continue
        reads = section["reads"]
        rate, ratio = reads["read"]["rps"], reads["read_over_constant"]
        out.append(
            {
                "target": f"{label}: authenticated reads >= {READS_TARGET:,.0f}/s at "
                f"{results['meta']['connections']} connections, auditing on",
                "measured": f"{rate:,.0f}/s",
                "pass": rate >= READS_TARGET,
            }
        )
        out.append(
            {
                "target": f"{label}: reads >= {READ_RATIO_TARGET:.0%} of /healthz, same server",
                "measured": f"{ratio:.1%} ({rate:,.0f} vs {reads['healthz']['rps']:,.0f}/s)",
                "pass": ratio >= READ_RATIO_TARGET,
            }
        )
        if label == "sqlite":
            for name, s in section["writes"].items():
                out.append(
                    {
                        "target": f"{label}: versioned audited writes >= {WRITES_TARGET:,.0f}/s "
                        f"({name.replace('write c', '')} connections)",
                        "measured": f"{s['rps']:,.0f}/s",
                        "pass": s["rps"] >= WRITES_TARGET,
                    }
                )
    return out


def report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "",
        f"coffer scale benchmark  {meta['date']}  revision {meta['revision']}  "
        f"({meta['cpus']} CPUs: {meta['cpu_model']}; shared by the nodes, wrk and PostgreSQL)",
        f"COFFER_WORKERS={meta['workers']}; wrk {meta['connections']} connections (writes: "
        f"{meta['write_connections']}), {meta['duration_s']:g} s segments, {meta['rounds']} "
        f"interleaved rounds after {meta['warmup_s']:g} s warm-ups",
        f"pinning: {meta['pinning']}",
        f"load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}",
        "",
    ]
    rows: list[list[str]] = []
    for label in ("sqlite", "postgresql"):
        section = results.get(label)
        if not section or "reads" not in section:
            continue
        reads = section["reads"]
        rows.append(_row(label, "GET /healthz", reads["healthz"]))
        rows.append(
            _row(label, "GET secret (machine)", reads["read"], f"{reads['read_over_constant']:.2f}")
        )
        for name, s in section["writes"].items():
            rows.append(_row(label, f"PUT new version {name.replace('write ', '')}", s))
        for name in ("healthz 1 node", "healthz 2 nodes", "read 1 node", "read 2 nodes"):
            if "nodes" in section:
                rows.append(_row(label, name, section["nodes"][name]))
    header = [
        "db",
        "what",
        "req/s",
        "p50 ms",
        "p99 ms",
        "x const",
        "srv CPU us/req",
        "srv CPU %",
        "PG CPU us/req",
        "errors",
    ]
    lines.append(_table(header, rows))
    pg = results.get("postgresql", {})
    if "nodes" in pg:
        e = pg["nodes"]["estimate"]
        n = pg["nodes"]
        lines += [
            "",
            f"two nodes / one node: reads {n['read 2 nodes']['rps'] / n['read 1 node']['rps']:.2f}x"
            f" (per node {n['read 2 nodes']['rounds'][-1]['per_node_rps']} in the last round), "
            f"p99 {n['read 1 node']['p99_ms']:.1f} -> {n['read 2 nodes']['p99_ms']:.1f} ms; "
            f"/healthz {n['healthz 2 nodes']['rps'] / n['healthz 1 node']['rps']:.2f}x",
            f"paper estimate for {e['target_reads_per_s']:,} reads/s: "
            f"{_fmt(e['nodes_at_measured_rate'], 'd')} nodes at the one-node rate of "
            f"{e['per_node_reads_per_s']:,.0f}/s; app CPU {_fmt(e['app_cpu_us_per_read'], '.0f')}"
            f" us/read = {_fmt(e['app_cores_needed'], '.1f')} cores; PostgreSQL CPU "
            f"{_fmt(e['postgres_cpu_us_per_read'], '.0f')} us/read (all postgres processes on "
            f"the machine) = {_fmt(e['postgres_cores_needed'], '.1f')} cores",
        ]
    if "skipped" in pg:
        lines.append(f"postgresql: skipped ({pg['skipped']})")
    lines += ["", "targets:"]
    for t in results["targets"]:
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['measured']}")
    if results.get("errors_seen"):
        lines.append("  WARNING: some requests failed; the figures above are not valid")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="COFFER_WORKERS of every node")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--write-connections", default="64,16", help="comma-separated connection counts"
    )
    parser.add_argument("--write-keys", type=int, default=64, help="keys the writes spread over")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per segment")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("COFFER_BENCH_POSTGRES_URL"),
        help="PostgreSQL server (default $COFFER_BENCH_POSTGRES_URL); fresh schema, dropped after",
    )
    parser.add_argument("--redis-url", help="Redis of the PostgreSQL nodes (default: a free db)")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument(
        "--revision", metavar="REV", help="run git revision REV's src/ instead of the working tree"
    )
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--quick", action="store_true", help="2 s segments, 1 round")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "scale.json")
    args = parser.parse_args(argv)
    args.write_connections = [int(c) for c in str(args.write_connections).split(",") if c]
    if args.quick:
        args.duration, args.warmup, args.rounds = 2.0, 1.0, 1
    return args


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def _revision(requested: str | None) -> str:
    if requested:
        return requested
    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    return (head or "unknown") + ("+dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if wrk_path() is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    cpus = sorted(ALL_CPUS)
    pin = not args.no_pin and args.workers == 1 and len(cpus) >= 2
    plan: tuple[frozenset[int] | None, frozenset[int] | None, frozenset[int] | None]
    if pin:
        first, second = frozenset(cpus[:1]), frozenset(cpus[1:])
        plan = (first, second, second)
        pinning = (
            f"node A on CPU {cpus[0]}, node B on CPU {','.join(map(str, cpus[1:]))}; wrk on CPU "
            f"{','.join(map(str, cpus[1:]))} in (a) and (b), on all CPUs in (c)"
        )
    else:
        plan = (None, None, None)
        pinning = "none (nodes, workers and wrk share every CPU)"
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "revision": _revision(args.revision),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "workers": args.workers,
            "connections": args.connections,
            "write_connections": args.write_connections,
            "write_keys": args.write_keys,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "pinning": pinning,
            "limits": LIMITS_OFF,
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        }
    }
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(revision_source(args.revision)) if args.revision else None
        if not args.skip_sqlite:
            results["sqlite"] = bench_database("sqlite", None, args, source, plan)
        if args.postgres:
            try:
                with postgres_schema(args.postgres) as url:
                    results["postgresql"] = bench_database("postgresql", url, args, source, plan)
            except Exception as exc:  # noqa: BLE001 - the optional part says why it failed
                log(f"[postgresql] failed: {exc}")
                results["postgresql"] = {"skipped": f"failed: {exc}"}
        else:
            results["postgresql"] = {
                "skipped": "set COFFER_BENCH_POSTGRES_URL=postgresql+psycopg://user@host:port/db"
            }
    results["errors_seen"] = any(
        s["errors"]
        for label in ("sqlite", "postgresql")
        for part in ("reads", "writes", "nodes")
        for s in results.get(label, {}).get(part, {}).values()
        if isinstance(s, dict) and "errors" in s
    )
    results["meta"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
    results["targets"] = targets(results)
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.output}  (took {results['meta']['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
