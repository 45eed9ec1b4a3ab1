"""Ephemeral secrets' benchmarks (issue 5), over HTTP against real ``coffer server`` processes,
on SQLite and, when a PostgreSQL server is named, on PostgreSQL (each database in one run, so
its ratios come from the same run).

1. **Rates.** One server (a fresh vault, pinned to the server's core, rate limits off:
   ``server_process.running_server``), ``--rate-clients`` concurrent clients (one
   ``httpx.AsyncClient`` each, keep-alive, each sending its next request when its answer is
   in). Per round, ``--rate-count / --rounds`` requests of each kind, in this order:

   * ``ephemeral create``: ``POST /api/v1/ephemeral`` with ``max_reads=1`` (TTL: the default day);
   * ``vault create``: ``PUT .../secrets/{key}`` with ``max_reads=1`` (a new vault secret);
   * ``ephemeral read``: ``GET /api/v1/ephemeral/{key}`` of each secret just created, once:
     the read that counts, burns it and records ``secret.read`` and ``secret.burned``;
   * ``vault read``: ``GET .../secrets/{key}`` of each limited vault secret, once (same);
   * ``plain read``: ``GET .../secrets/{key}`` of one unlimited secret, the everyday read (the
     fast path: no counting), which the others are compared with.

   After an uncounted warm-up round. Figures: requests/s, p50/p99, the server's CPU per
   request, and each kind's ratio to the plain read (by rate and by server CPU).
2. **Exactly once under load** (the issue's test). Two server processes on one database (the
   second started as a second node is: its own directory, the first one's root key through
   ``COFFER_ROOT_KEY``; on SQLite both open the same file), both pinned to the server's core.
   ``--secrets`` (10,000) ephemeral secrets with ``max_reads=1`` are created through both,
   then ``--clients`` (64) concurrent clients send ``--readers`` (3) reads of every secret:
   a secret's reads are consecutive in the shared work list, so different clients send them
   within a few milliseconds of each other, alternating between the two servers. Reported:
   successful reads (must be exactly ``--secrets``, one per secret, each with its value), 404s
   (every other attempt), wall time, attempts/s, p50/p99, how many secrets had all their
   attempts in flight at one moment, and the audit log's ``secret.read`` and
   ``secret.burned`` entries for these secrets (exactly one each).

Writes ``bench/results/ephemeral-latest.json``; exits 1 when a count is not exact or any
request got an answer it should not have (a 5xx, a wrong value, a transport error), else 0.
Usage::

    .venv/bin/python bench/ephemeral_bench.py [--secrets N] [--clients N] [--quick]
    COFFER_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
      .venv/bin/python bench/run_all.py --only ephemeral

PostgreSQL runs when ``--postgres`` or ``COFFER_BENCH_POSTGRES_URL`` names a server: each part
gets a fresh schema there (``server_process.postgres_schema``), dropped afterwards. All traffic
goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_bench import _loadavg, _percentile, _revision, _src_changes, init_vault, log
from server_process import (
    COFFER,
    CpuPlan,
    ServerHandle,
    cpu_plan,
    pin_self,
    postgres_schema,
    process_cpu_seconds,
    revision_source,
    running_server,
    spawned_server,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROJECT = "bench"
ENVIRONMENT = "development"
PLAIN_KEY = "plain/db-password"
LOAD_PREFIX = "load/"
REQUEST_TIMEOUT_S = 120.0
RATE_KINDS = ("ephemeral create", "vault create", "ephemeral read", "vault read", "plain read")

T = TypeVar("T")


# --- the client -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One request: the item it concerns, the server (an index), what to send, and what a
    success is (``expect``; with ``value``, the JSON ``value`` it must carry)."""

    item: int
    server: int
    method: str
    path: str
    expect: int
    body: dict[str, Any] | None = None
    value: str | None = None


@dataclass(frozen=True)
class Sample:
    """One answer: its status (0: no answer), whether it was the expected success with the
    right value, its send and receive times (``perf_counter``) and, when unexpected, what
    came back."""

    item: int
    server: int
    status: int
    success: bool
    started: float
    ended: float
    detail: str = ""

    @property
    def latency_ms(self) -> float:
        return 1000 * (self.ended - self.started)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs ``coroutine`` on uvloop when it is installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def _judge(job: Job, response: httpx.Response) -> tuple[bool, str]:
    """Whether the answer is the expected success (with the right value), and what to
    report about it otherwise (404 is reported by its status alone)."""
    if response.status_code == job.expect:
        if job.value is None:
            return True, ""
        try:
            value = response.json().get("value")
        except ValueError:
            value = None
        if value == job.value:
            return True, ""
        return False, f"wrong value: {response.text[:200]}"
    if response.status_code == 404:
        return False, ""
    return False, f"{response.status_code}: {response.text[:300]}"


async def _drive(
    base_urls: Sequence[str], token: str, jobs: Sequence[Job], clients: int
) -> tuple[list[Sample], float, float]:
    """Sends ``jobs`` from ``clients`` concurrent clients, one keep-alive
    ``httpx.AsyncClient`` each (at most one connection per server), every client taking the
    next job of the shared list as soon as its previous answer is in. Returns the samples in
    job order, the wall time and this process's CPU seconds meanwhile."""
    samples: list[Sample | None] = [None] * len(jobs)
    cursor = 0
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "coffer-bench"}

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal cursor
        while cursor < len(jobs):
            index = cursor
            cursor += 1
            job = jobs[index]
            started = time.perf_counter()
            try:
                response = await client.request(
                    job.method, base_urls[job.server] + job.path, json=job.body
                )
            except httpx.HTTPError as exc:
                ended = time.perf_counter()
                detail = f"{type(exc).__name__}: {exc}"
                samples[index] = Sample(job.item, job.server, 0, False, started, ended, detail)
                continue
            ended = time.perf_counter()
            success, detail = _judge(job, response)
            samples[index] = Sample(
                job.item, job.server, response.status_code, success, started, ended, detail
            )

    limits = httpx.Limits(max_connections=len(base_urls), max_keepalive_connections=len(base_urls))
    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                httpx.AsyncClient(headers=headers, timeout=REQUEST_TIMEOUT_S, limits=limits)
            )
            for _ in range(clients)
        ]
        cpu_before = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for client in pool))
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
    done = [sample for sample in samples if sample is not None]
    assert len(done) == len(jobs)
    return done, wall, cpu


def _latencies(samples: Sequence[Sample]) -> dict[str, float]:
    values = sorted(s.latency_ms for s in samples)
    return {
        "p50_ms": _percentile(values, 50),
        "p99_ms": _percentile(values, 99),
        "max_ms": values[-1] if values else float("nan"),
    }


def run_segment(
    name: str, servers: Sequence[ServerHandle], jobs: Sequence[Job], clients: int
) -> tuple[dict[str, Any], list[Sample]]:
    """Runs ``jobs`` against ``servers`` and returns the segment's figures and samples:
    rate, latency, statuses, unexpected answers, the servers' CPU (all of them together)
    and the client's."""
    pids = [server.pid for server in servers]
    before = [process_cpu_seconds(pid) for pid in pids]
    samples, wall, client_cpu = _run(
        _drive([s.base_url for s in servers], servers[0].token, jobs, clients)
    )
    after = [process_cpu_seconds(pid) for pid in pids]
    pairs = [(a, b) for a, b in zip(after, before, strict=True) if a is not None and b is not None]
    server_cpu = sum(a - b for a, b in pairs) if len(pairs) == len(pids) else None
    unexpected = [s for s in samples if s.detail]
    figures: dict[str, Any] = {
        "name": name,
        "requests": len(samples),
        "seconds": wall,
        "rps": len(samples) / wall if wall else 0.0,
        **_latencies(samples),
        "statuses": dict(sorted(Counter(s.status for s in samples).items())),
        "successes": sum(s.success for s in samples),
        "unexpected": len(unexpected),
        "unexpected_examples": [s.detail for s in unexpected[:5]],
        "server_cpu_us_per_request": (
            1e6 * server_cpu / len(samples) if server_cpu is not None and samples else None
        ),
        "server_cpu_percent": 100 * server_cpu / wall if server_cpu is not None else None,
        "client_cpu_percent": 100 * client_cpu / wall if wall else None,
    }
    return figures, samples


# --- servers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def node(
    label: str,
    directory: Path,
    env: dict[str, str],
    token: str,
    plan: CpuPlan,
    database: str,
) -> Iterator[ServerHandle]:
    """Starts ``coffer server --dir DIRECTORY`` with ``env`` on a free 127.0.0.1 port,
    pinned to the server's core; stops it afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory.parent / f"{label}.log"
    try:
        with spawned_server(
            [str(COFFER), "server"],
            directory=directory,
            env=env,
            log_path=log_path,
            cpus=plan.server,
            label=label,
            token=token,
            database=database,
        ) as handle:
            yield handle
    finally:
        tail = log_path.read_text(errors="replace").splitlines()[-20:]
        if any("Traceback" in line or "ERROR" in line for line in tail):
            log(f"[{label}] server log (last 20 lines):\n" + "\n".join(tail))


@contextlib.contextmanager
def database_url(label: str, admin_url: str | None, workdir: Path) -> Iterator[str]:
    """A SQLite file in ``workdir`` or, for PostgreSQL, a fresh schema (dropped afterwards)."""
    if label == "sqlite":
        yield f"sqlite:///{workdir / 'node1' / 'coffer.db'}"
        return
    assert admin_url is not None
    with postgres_schema(admin_url) as url:
        yield url


def _secret_path(key: str) -> str:
    return f"/api/v1/projects/{PROJECT}/environments/{ENVIRONMENT}/secrets/{key}"


def _value(tag: str) -> str:
    return f"{tag}-{secrets.token_urlsafe(24)}"


def _setup(server: ServerHandle, plain_value: str) -> None:
    """Creates the project and the unlimited secret of the plain read."""
    with httpx.Client(base_url=server.base_url, headers=server.auth(), timeout=30.0) as client:
        client.post("/api/v1/projects", json={"name": PROJECT}).raise_for_status()
        client.put(_secret_path(PLAIN_KEY), json={"value": plain_value}).raise_for_status()


# --- 1. rates -----------------------------------------------------------------------------


def _rate_jobs(tag: str, count: int, plain_value: str) -> dict[str, list[Job]]:
    """One round's requests of each kind (the reads read what the creates made)."""
    ephemeral = [(f"rate/{tag}/e{i:05d}", _value("e")) for i in range(count)]
    vault = [(f"rate/{tag}/v{i:05d}", _value("v")) for i in range(count)]
    return {
        "ephemeral create": [
            Job(i, 0, "POST", "/api/v1/ephemeral", 201, {"key": k, "value": v, "max_reads": 1})
            for i, (k, v) in enumerate(ephemeral)
        ],
        "vault create": [
            Job(i, 0, "PUT", _secret_path(k), 200, {"value": v, "max_reads": 1})
            for i, (k, v) in enumerate(vault)
        ],
        "ephemeral read": [
            Job(i, 0, "GET", f"/api/v1/ephemeral/{k}", 200, value=v)
            for i, (k, v) in enumerate(ephemeral)
        ],
        "vault read": [
            Job(i, 0, "GET", _secret_path(k), 200, value=v) for i, (k, v) in enumerate(vault)
        ],
        "plain read": [
            Job(i, 0, "GET", _secret_path(PLAIN_KEY), 200, value=plain_value) for i in range(count)
        ],
    }


def _combine(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds together: rate over all requests, mean of the p50s, worst p99, CPU per
    request weighted by requests."""
    requests = sum(s["requests"] for s in segments)
    seconds = sum(s["seconds"] for s in segments)
    cpu = [s["server_cpu_us_per_request"] for s in segments]
    return {
        "requests": requests,
        "rps": requests / seconds if seconds else 0.0,
        "p50_ms": sum(s["p50_ms"] for s in segments) / len(segments),
        "p99_ms": max(s["p99_ms"] for s in segments),
        "rounds_rps": [round(s["rps"], 1) for s in segments],
        "server_cpu_us_per_request": (
            sum(c * s["requests"] for c, s in zip(cpu, segments, strict=True)) / requests
            if None not in cpu and requests
            else None
        ),
        "server_cpu_percent": [
            None if s["server_cpu_percent"] is None else round(s["server_cpu_percent"])
            for s in segments
        ],
        "client_cpu_percent": [round(s["client_cpu_percent"]) for s in segments],
        "unexpected": sum(s["unexpected"] for s in segments),
        "unexpected_examples": [e for s in segments for e in s["unexpected_examples"]][:5],
    }


def bench_rates(label: str, plan: CpuPlan, url: str | None, args: Any) -> dict[str, Any]:
    """Creates/s and reads/s of limited secrets next to the plain read, one server."""
    plain_value = _value("plain")
    per_round = max(1, args.rate_count // args.rounds)
    buckets: dict[str, list[dict[str, Any]]] = {kind: [] for kind in RATE_KINDS}
    with running_server(f"{label}-rates", plan, database_url=url) as server:
        _setup(server, plain_value)
        log(f"[{label}] rates: warm-up, {args.rate_warmup} requests of each kind")
        for kind, jobs in _rate_jobs("warmup", args.rate_warmup, plain_value).items():
            run_segment(kind, [server], jobs, args.rate_clients)
        for round_no in range(1, args.rounds + 1):
            for kind, jobs in _rate_jobs(f"r{round_no}", per_round, plain_value).items():
                figures, _samples = run_segment(kind, [server], jobs, args.rate_clients)
                buckets[kind].append(figures)
                log(
                    f"[{label}] round {round_no} {kind:16s} {figures['rps']:8.1f} req/s  "
                    f"p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f} ms  "
                    f"server CPU {_fmt(figures['server_cpu_percent'], '.0f')}%  "
                    f"client CPU {figures['client_cpu_percent']:.0f}%  "
                    f"unexpected {figures['unexpected']}"
                )
    kinds = {kind: _combine(segments) for kind, segments in buckets.items()}
    plain = kinds["plain read"]
    for figures in kinds.values():
        figures["x_plain_rps"] = figures["rps"] / plain["rps"]
        cost, base = figures["server_cpu_us_per_request"], plain["server_cpu_us_per_request"]
        figures["x_plain_cpu"] = base / cost if cost and base else None
    return {
        "clients": args.rate_clients,
        "per_round": per_round,
        "rounds": args.rounds,
        "kinds": kinds,
        "unexpected": sum(k["unexpected"] for k in kinds.values()),
    }


# --- 2. exactly once under load -------------------------------------------------------------


def _audit_counts(server: ServerHandle, action: str) -> Counter[str]:
    """How many ``action`` entries each ``load/`` key has, over every page of the log."""
    counts: Counter[str] = Counter()
    params = {"action": action, "key": LOAD_PREFIX + "*", "limit": "1000"}
    with httpx.Client(base_url=server.base_url, headers=server.auth(), timeout=120.0) as client:
        while True:
            page = client.get("/api/v1/audit", params=params)
            page.raise_for_status()
            counts.update(entry["key"] for entry in page.json()["entries"])
            cursor = page.json()["next"]
            if cursor is None:
                return counts
            params["cursor"] = cursor


def _all_in_flight(samples: Sequence[Sample]) -> bool:
    """True when one moment had every one of these requests sent and not yet answered."""
    return max(s.started for s in samples) < min(s.ended for s in samples)


def analyse_load(
    samples: Sequence[Sample], secrets_count: int, readers: int, wall: float
) -> dict[str, Any]:
    """The load test's verdict and figures from its samples."""
    by_item: dict[int, list[Sample]] = {}
    for sample in samples:
        by_item.setdefault(sample.item, []).append(sample)
    wins = Counter(s.item for s in samples if s.success)
    statuses = Counter(s.status for s in samples)
    successes = sum(wins.values())
    refused = statuses.get(404, 0)
    unexpected = [s for s in samples if s.detail]
    exactly_once = (
        successes == secrets_count
        and len(wins) == secrets_count
        and set(wins.values()) == {1}
        and refused == len(samples) - secrets_count
        and not unexpected
    )
    return {
        "attempts": len(samples),
        "readers_per_secret": readers,
        "successful_reads": successes,
        "secrets_read_more_than_once": sum(1 for n in wins.values() if n > 1),
        "secrets_never_read": secrets_count - len(wins),
        "not_found": refused,
        "statuses": dict(sorted(statuses.items())),
        "unexpected": len(unexpected),
        "unexpected_examples": [s.detail for s in unexpected[:10]],
        "exactly_once": exactly_once,
        "seconds": wall,
        "attempts_per_second": len(samples) / wall,
        "successful_reads_per_second": successes / wall,
        **_latencies(samples),
        "success_latency": _latencies([s for s in samples if s.success]),
        "not_found_latency": _latencies([s for s in samples if s.status == 404]),
        "wins_by_server": dict(sorted(Counter(s.server for s in samples if s.success).items())),
        "secrets_all_attempts_in_flight_together": sum(
            1 for group in by_item.values() if _all_in_flight(group)
        ),
        "secrets_on_both_servers": sum(
            1 for group in by_item.values() if len({s.server for s in group}) == 2
        ),
    }


def bench_load(label: str, plan: CpuPlan, admin_url: str | None, args: Any) -> dict[str, Any]:
    """Two servers on one database, ``--secrets`` secrets with max_reads=1, ``--readers``
    concurrent reads of each from ``--clients`` clients."""
    workdir = Path(tempfile.mkdtemp(prefix="coffer-bench-ephemeral-"))
    try:
        with database_url(label, admin_url, workdir) as url:
            vault = init_vault(workdir / "node1", url)
            root_key = (workdir / "node1" / "root.key").read_text(encoding="ascii").strip()
            second_env = {**vault.env, "COFFER_ROOT_KEY": root_key}
            with (
                node(f"{label}-node1", workdir / "node1", vault.env, vault.token, plan, label) as a,
                node(
                    f"{label}-node2", workdir / "node2", second_env, vault.token, plan, label
                ) as b,
            ):
                return _load_on(label, [a, b], args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _load_on(label: str, servers: list[ServerHandle], args: Any) -> dict[str, Any]:
    count, readers = args.secrets, args.readers
    names = [f"{LOAD_PREFIX}s{i:05d}" for i in range(count)]
    values = [_value("load") for _ in range(count)]
    creates = [
        Job(i, i % 2, "POST", "/api/v1/ephemeral", 201, {"key": k, "value": v, "max_reads": 1})
        for i, (k, v) in enumerate(zip(names, values, strict=True))
    ]
    log(f"[{label}] load: creating {count} secrets through both servers, {args.clients} clients")
    created, _samples = run_segment("create", servers, creates, args.clients)
    log(
        f"[{label}] created {created['successes']} in {created['seconds']:.1f} s "
        f"({created['rps']:.0f}/s), unexpected {created['unexpected']}"
    )
    reads = [
        Job(i, (i + r) % 2, "GET", f"/api/v1/ephemeral/{names[i]}", 200, value=values[i])
        for i in range(count)
        for r in range(readers)
    ]
    log(f"[{label}] load: {len(reads)} reads ({readers} of each secret), {args.clients} clients")
    figures, samples = run_segment("reads", servers, reads, args.clients)
    result = analyse_load(samples, count, readers, figures["seconds"])
    result["server_cpu_percent"] = figures["server_cpu_percent"]
    result["server_cpu_us_per_attempt"] = figures["server_cpu_us_per_request"]
    result["client_cpu_percent"] = figures["client_cpu_percent"]
    audit_reads = _audit_counts(servers[0], "secret.read")
    audit_burned = _audit_counts(servers[1], "secret.burned")
    result["audit"] = {
        "secret_read_entries": sum(audit_reads.values()),
        "secret_read_keys": len(audit_reads),
        "secret_burned_entries": sum(audit_burned.values()),
        "secret_burned_keys": len(audit_burned),
    }
    result["audit_exact"] = (
        set(audit_reads) == set(names)
        and set(audit_reads.values()) == {1}
        and set(audit_burned) == set(names)
        and set(audit_burned.values()) == {1}
    )
    result["create"] = created
    result["clients"] = args.clients
    result["secrets"] = count
    log(
        f"[{label}] load: {result['successful_reads']} successful reads of {count} secrets "
        f"({'exact' if result['exactly_once'] else 'NOT EXACT'}), {result['not_found']} x 404, "
        f"unexpected {result['unexpected']}, {result['seconds']:.1f} s; audit "
        f"{'exact' if result['audit_exact'] else 'NOT EXACT'}"
    )
    return result


# --- report -----------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    body = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return "\n".join([line, "-" * len(line), *body])


def report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "",
        f"coffer ephemeral benchmarks  {meta['date']}  revision {meta['revision']}  "
        f"({meta['cpus']} CPUs)",
        f"servers run: {meta['servers_run']}",
        f"pinning: {meta['pinning']}",
        f"load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}",
        "",
    ]
    rows: list[list[str]] = []
    for label in ("sqlite", "postgresql"):
        rates = results.get(label, {}).get("rates")
        if not rates:
            continue
        for kind in RATE_KINDS:
            k = rates["kinds"][kind]
            rows.append(
                [
                    f"{label} {kind}",
                    f"{k['rps']:.0f}",
                    f"{k['p50_ms']:.1f}",
                    f"{k['p99_ms']:.1f}",
                    _fmt(k["server_cpu_us_per_request"], ".0f"),
                    f"{k['x_plain_rps']:.2f}",
                    _fmt(k["x_plain_cpu"], ".2f"),
                    str(k["unexpected"]),
                ]
            )
    if rows:
        clients = next(
            results[label]["rates"]["clients"]
            for label in ("sqlite", "postgresql")
            if results.get(label, {}).get("rates")
        )
        lines.append(f"rates: one server, {clients} clients")
        header = ["kind", "req/s", "p50 ms", "p99 ms", "CPU us/req", "x plain", "x plain CPU"]
        lines.append(_table([*header, "unexpected"], rows))
        lines.append("")
    for label in ("sqlite", "postgresql"):
        load = results.get(label, {}).get("load")
        if not load:
            continue
        audit = load["audit"]
        lines += [
            f"{label} load: 2 servers, {load['clients']} clients, {load['secrets']} secrets "
            f"(max_reads=1), {load['attempts']} attempts ({load['readers_per_secret']} per "
            f"secret)",
            f"  successful reads {load['successful_reads']} "
            f"({'EXACT' if load['exactly_once'] else 'NOT EXACT'}: read more than once "
            f"{load['secrets_read_more_than_once']}, never {load['secrets_never_read']}), "
            f"404 {load['not_found']}, unexpected {load['unexpected']}",
            f"  wall {load['seconds']:.1f} s, {load['attempts_per_second']:.0f} attempts/s, "
            f"{load['successful_reads_per_second']:.0f} successful reads/s; latency p50 "
            f"{load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms (successes p50 "
            f"{load['success_latency']['p50_ms']:.1f}, p99 "
            f"{load['success_latency']['p99_ms']:.1f}; 404s p50 "
            f"{load['not_found_latency']['p50_ms']:.1f}, p99 "
            f"{load['not_found_latency']['p99_ms']:.1f})",
            f"  all of a secret's attempts in flight at one moment: "
            f"{load['secrets_all_attempts_in_flight_together']} of {load['secrets']}; "
            f"wins by server {load['wins_by_server']}; server CPU "
            f"{_fmt(load['server_cpu_percent'], '.0f')}% of one core (both together, "
            f"{_fmt(load['server_cpu_us_per_attempt'], '.0f')} us per attempt), client CPU "
            f"{load['client_cpu_percent']:.0f}%",
            f"  creates: {load['create']['rps']:.0f}/s through both servers (p50 "
            f"{load['create']['p50_ms']:.1f} ms, p99 {load['create']['p99_ms']:.1f} ms)",
            f"  audit: {audit['secret_read_entries']} secret.read for "
            f"{audit['secret_read_keys']} keys, {audit['secret_burned_entries']} secret.burned "
            f"for {audit['secret_burned_keys']} keys "
            f"({'EXACT' if load['audit_exact'] else 'NOT EXACT'})",
        ]
        if load["unexpected_examples"]:
            lines.append("  unexpected: " + "; ".join(load["unexpected_examples"]))
    pg = results.get("postgresql", {})
    if "skipped" in pg:
        lines.append(f"postgresql: skipped ({pg['skipped']})")
    lines.append("")
    lines.append("PASS" if results["ok"] else "FAIL: a count was not exact or a request failed")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secrets", type=int, default=10_000, help="load test: secrets")
    parser.add_argument("--clients", type=int, default=64, help="load test: concurrent clients")
    parser.add_argument("--readers", type=int, default=3, help="load test: reads per secret")
    parser.add_argument("--rate-count", type=int, default=3000, help="rates: requests per kind")
    parser.add_argument("--rate-clients", type=int, default=16, help="rates: concurrent clients")
    parser.add_argument("--rate-warmup", type=int, default=300, help="rates: warm-up per kind")
    parser.add_argument("--rounds", type=int, default=3, help="rates: rounds of all kinds")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("COFFER_BENCH_POSTGRES_URL"),
        help="PostgreSQL server to use (default: $COFFER_BENCH_POSTGRES_URL; none: SQLite only)",
    )
    parser.add_argument("--skip-rates", action="store_true", help="only the load test")
    parser.add_argument("--skip-load", action="store_true", help="only the rates")
    parser.add_argument(
        "--revision",
        metavar="REV",
        help="run `coffer init` and the servers from `git archive REV src` (through "
        "PYTHONPATH) instead of the working tree, e.g. HEAD while src/ has edits in progress",
    )
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1,000 secrets, short rates")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "ephemeral-latest.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.secrets, args.rate_count, args.rate_warmup, args.rounds = 1000, 300, 50, 1
    if args.readers < 2:
        parser.error("--readers must be at least 2: the point is concurrent reads of a secret")
    return args


def _resolve(revision: str) -> str:
    """The short commit hash ``revision`` names."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(
        ["git", "rev-parse", "--short", revision],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def bench_database(label: str, plan: CpuPlan, admin_url: str | None, args: Any) -> dict[str, Any]:
    """Both parts on one database (each in a fresh vault)."""
    section: dict[str, Any] = {}
    if not args.skip_rates:
        if admin_url is None:
            section["rates"] = bench_rates(label, plan, None, args)
        else:
            with postgres_schema(admin_url) as url:
                section["rates"] = bench_rates(label, plan, url, args)
    if not args.skip_load:
        section["load"] = bench_load(label, plan, admin_url, args)
    return section


def _ok(section: dict[str, Any]) -> bool:
    rates, load = section.get("rates"), section.get("load")
    if rates is not None and rates["unexpected"]:
        return False
    if load is not None:
        clean_create = not load["create"]["unexpected"]
        return bool(load["exactly_once"] and load["audit_exact"] and clean_create)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = cpu_plan(pin=not args.no_pin)
    pin_self(plan.client)
    with contextlib.ExitStack() as stack:
        if args.revision:
            source = stack.enter_context(revision_source(args.revision))
            # every coffer process is started with this process's environment (base_env)
            os.environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(source), os.environ.get("PYTHONPATH", "")) if p
            )
        return _main(args, plan)


def _main(args: argparse.Namespace, plan: CpuPlan) -> int:
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "revision": _revision(),
            "src_changes": _src_changes(),
            "servers_run": (
                f"src of {args.revision} ({_resolve(args.revision)}), git archive"
                if args.revision
                else "the working tree's src"
            ),
            "secrets": args.secrets,
            "clients": args.clients,
            "readers": args.readers,
            "rate_count": args.rate_count,
            "rate_clients": args.rate_clients,
            "rounds": args.rounds,
            "pinning": plan.describe() + " (the load test's two servers share the server's CPU)",
            "loadavg_before": _loadavg(),
        }
    }
    results["sqlite"] = bench_database("sqlite", plan, None, args)
    if args.postgres:
        results["postgresql"] = bench_database("postgresql", plan, args.postgres, args)
    else:
        results["postgresql"] = {"skipped": "no --postgres / COFFER_BENCH_POSTGRES_URL"}
    results["ok"] = all(
        _ok(results[label]) for label in ("sqlite", "postgresql") if "skipped" not in results[label]
    )
    results["meta"]["loadavg_after"] = _loadavg()
    results["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.output}  (took {results['meta']['elapsed_s']:.0f} s)")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
