"""The audit log's benchmarks (issue 4), on SQLite and, when a PostgreSQL server is named, on
PostgreSQL, each database in one run so its ratios come from the same run.

1. **Reads with auditing on and off.** Two ``coffer server`` processes on fresh vaults, both
   started through ``audit_toggle_server.py``: ``on`` is coffer as shipped (every secret read
   inserts its ``secret.read`` entry, the background sealer started by the app's lifespan
   seals them every ``COFFER_AUDIT_SEAL_INTERVAL_MS``); ``off`` has
   ``AuditBatcher.append``, the hot read path's audit group commit, replaced by a no-op. The
   machine-token read of ``run_all.py`` (scopes, grants, the policy function) is driven on
   both, interleaved (on, off, off, on, ...), with the same client and concurrency. Figures:
   reads/s, p50/p99, server CPU per read, the ratio on/off; after each ``on`` segment, how
   many of its newest 1000 ``secret.read`` entries are still unsealed (the sealer keeping
   up); at the end, ``POST /api/v1/audit/verify`` of what the rounds wrote.
2. **Verify 1M entries.** A third vault gets ``--entries`` entries (default 1,000,000) made
   by ``AuditWriter(keys).entry(...)`` with the vault's real audit keys, realistic field
   values and times spread over 30 days (each entry's MAC is recomputed after its time is
   set), inserted with executemany, 20,000 rows a transaction. Timed in this process:
   generation, the sealer sealing them all (``AuditSealer.seal``, the server's checkpoint
   policy), ``verify_database(engine, keys, sealer)``, a JSONL export to a file
   (``jsonl_export``) and ``verify_export`` of that file, read line by line.
3. **Filtered queries on that log.** A server on the same vault answers
   ``GET /api/v1/audit`` with each filter kind in turn (50 rounds after 3 of warm-up; one
   keep-alive connection; values cycle through several actors, keys, projects and windows),
   client-side latency p50/p95. Each kind's SQL is then captured in-process and explained
   (EXPLAIN QUERY PLAN on SQLite, EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL), with the
   database-only time of the query.

Targets (issue 4): reads with auditing on at least 85 % of off; ``audit verify`` of 1M entries
under 10 s; filtered queries on 1M entries with p95 under 50 ms. With fewer entries the verify
time is projected linearly to 1M for its verdict. Prints a table and PASS/FAIL, writes
``bench/results/audit-latest.json``; exits 0 either way. Usage::

    .venv/bin/python bench/audit_bench.py [--entries N] [--quick] [--postgres URL] [--profile]
    .venv/bin/python bench/run_all.py --only audit [--entries N]

PostgreSQL runs when ``--postgres`` or ``COFFER_BENCH_POSTGRES_URL`` names a server: a fresh
database ``coffer_bench_audit_<random>`` is created there (one schema per vault) and dropped
afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import io
import json
import os
import pstats
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_load import LoadResult, Request, choose_tool, run_load
from server_process import (
    BIN,
    COFFER,
    LIMITS_OFF,
    CpuPlan,
    ServerHandle,
    base_env,
    cpu_plan,
    pin_self,
    postgres_schema,
    process_cpu_seconds,
    seed,
    seed_identities,
    spawned_server,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LAUNCHER = Path(__file__).resolve().parent / "audit_toggle_server.py"

READ_RATIO_TARGET = 0.85
VERIFY_TARGET_S = 10.0
QUERY_P95_TARGET_MS = 50.0
FULL_SIZE = 1_000_000

PROJECT = "bench"
ENVIRONMENT = "development"
READ_KEY = "db/password"
SECRETS = {
    READ_KEY: "correct-horse-battery-staple-0123456789",
    "db/user": "app",
    "api/stripe_key": "sk_test_" + "x" * 24,
}
INSERT_BATCH = 20_000
SPAN_DAYS = 30


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


# --- vaults and servers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Vault:
    """An initialised vault: its directory, database URL (None: the SQLite file in it), the
    bootstrap token and the environment its processes run with."""

    directory: Path
    database_url: str | None
    token: str
    env: dict[str, str]

    @property
    def database(self) -> str:
        return "postgresql" if self.database_url else "sqlite"


def init_vault(directory: Path, database_url: str | None) -> Vault:
    """Runs ``coffer init --dir directory --json`` (on ``database_url`` when given)."""
    extra = {"COFFER_ACCESS_LOG": "false", "COFFER_LOG_LEVEL": "warning", **LIMITS_OFF}
    if database_url:
        extra["COFFER_DATABASE_URL"] = database_url
    env = base_env(**extra)
    init = subprocess.run(
        [str(COFFER), "init", "--dir", str(directory), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if init.returncode != 0:
        raise RuntimeError(f"coffer init failed ({init.returncode}): {init.stderr.strip()}")
    return Vault(directory, database_url, json.loads(init.stdout)["token"], env)


@contextlib.contextmanager
def serve(vault: Vault, label: str, plan: CpuPlan, *, audit: bool) -> Iterator[ServerHandle]:
    """Starts ``coffer server`` on ``vault`` through the launcher, with the read path's audit
    insert on or off, pinned to the server's core; stops it afterwards."""
    log_path = vault.directory.parent / f"{label}.log"
    try:
        with spawned_server(
            [str(BIN / "python"), str(LAUNCHER), "on" if audit else "off", "server"],
            directory=vault.directory,
            env=vault.env,
            log_path=log_path,
            cpus=plan.server,
            label=label,
            token=vault.token,
            database=vault.database,
            extra={"audit": "on" if audit else "off"},
        ) as handle:
            yield handle
    except Exception:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        log(f"[{label}] server log (last 40 lines):\n" + "\n".join(tail))
        raise


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """Creates the database ``coffer_bench_audit_<random>`` on the server of ``admin_url``,
    yields its SQLAlchemy URL and drops it afterwards (``WITH (FORCE)``)."""
    import psycopg
    import sqlalchemy as sa

    name = f"coffer_bench_audit_{secrets.token_hex(3)}"
    libpq_url = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = sa.make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _measure(server: ServerHandle, request: Request, seconds: float, args: Any) -> LoadResult:
    """Drives ``request`` for ``seconds`` and adds the server's CPU share and CPU per request."""
    cpu_before = process_cpu_seconds(server.pid)
    result = run_load(
        server.base_url,
        request,
        duration=seconds,
        connections=args.connections,
        threads=max(1, min(args.threads, args.connections)),
        tool=args.tool,
    )
    cpu_after = process_cpu_seconds(server.pid)
    if cpu_before is not None and cpu_after is not None and result.requests:
        cpu = cpu_after - cpu_before
        result.detail["server_cpu_percent"] = 100 * cpu / result.duration_s
        result.detail["server_cpu_us_per_request"] = 1e6 * cpu / result.requests
    return result


def _summary(segments: list[LoadResult]) -> dict[str, Any]:
    """Combines rounds: rate over all requests, mean of p50s, worst p99, CPU per request."""
    requests = sum(s.requests for s in segments)
    duration = sum(s.duration_s for s in segments)
    cpu: list[float] = [
        float(s.detail["server_cpu_us_per_request"])
        for s in segments
        if s.detail.get("server_cpu_us_per_request") is not None
    ]
    return {
        "rps": requests / duration if duration else 0.0,
        "p50_ms": sum(s.p50_ms for s in segments) / len(segments),
        "p99_ms": max(s.p99_ms for s in segments),
        "requests": requests,
        "errors": sum(s.errors for s in segments),
        "rounds_rps": [round(s.rps, 1) for s in segments],
        "server_cpu_us_per_request": (
            sum(c * s.requests for c, s in zip(cpu, segments, strict=True)) / requests
            if requests and len(cpu) == len(segments)
            else None
        ),
        "server_cpu_percent": [
            round(float(s.detail.get("server_cpu_percent", 0.0))) for s in segments
        ],
    }


# --- 1. reads with auditing on and off --------------------------------------------------------


def _newest_reads(server: ServerHandle, limit: int) -> list[dict[str, Any]]:
    response = httpx.get(
        server.base_url + "/api/v1/audit",
        params={"action": "secret.read", "limit": str(limit)},
        headers=server.auth(),
        timeout=30.0,
    )
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def _unsealed(server: ServerHandle) -> int:
    """How many of the newest 1000 secret.read entries have no leaf index yet."""
    return sum(1 for e in _newest_reads(server, 1000) if e["index"] is None)


def _catch_up_seconds(server: ServerHandle, timeout: float = 30.0) -> float | None:
    """Seconds until the newest secret.read entry is sealed (None: not within ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        newest = _newest_reads(server, 1)
        if newest and newest[0]["index"] is not None:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def bench_reads(
    label: str, plan: CpuPlan, workdir: Path, urls: tuple[str | None, str | None], args: Any
) -> dict[str, Any]:
    """Reads with auditing on and off, interleaved rounds on two servers."""
    vaults = {
        "on": init_vault(workdir / "reads-on", urls[0]),
        "off": init_vault(workdir / "reads-off", urls[1]),
    }
    with (
        serve(vaults["on"], f"{label}-audit-on", plan, audit=True) as on,
        serve(vaults["off"], f"{label}-audit-off", plan, audit=False) as off,
    ):
        servers = {"on": on, "off": off}
        requests: dict[str, Request] = {}
        for mode, server in servers.items():
            seed(server, PROJECT, ENVIRONMENT, SECRETS)
            machine = seed_identities(server, PROJECT, ENVIRONMENT, READ_KEY)
            path = server.secret_path(PROJECT, ENVIRONMENT, READ_KEY)
            requests[mode] = Request("GET", path, headers=machine.machine_auth())
        log(f"[{label}] reads: warm-up {args.warmup:g} s each, audit on and off")
        for mode, server in servers.items():
            _measure(server, requests[mode], args.warmup, args)
        off_newest = _newest_reads(off, 1)
        buckets: dict[str, list[LoadResult]] = {"on": [], "off": []}
        backlog: list[int] = []
        for round_no in range(1, args.rounds + 1):
            order = ("on", "off") if round_no % 2 else ("off", "on")
            for mode in order:
                result = _measure(servers[mode], requests[mode], args.duration, args)
                buckets[mode].append(result)
                note = ""
                if mode == "on":
                    backlog.append(_unsealed(on))
                    note = f"  unsealed at the end: {backlog[-1]} of the newest 1000"
                log(
                    f"[{label}] audit {mode:3s} round {round_no}: {result.rps:8.1f} reads/s  "
                    f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                    f"errors {result.errors}{note}"
                )
        catch_up = _catch_up_seconds(on)
        started = time.perf_counter()
        verified = httpx.post(
            on.base_url + "/api/v1/audit/verify", headers=on.auth(), timeout=600.0
        )
        verify_s = time.perf_counter() - started
        verified.raise_for_status()
        report = verified.json()
        off_written = _newest_reads(off, 1) != off_newest
    summary = {mode: _summary(results) for mode, results in buckets.items()}
    by_round = [round(a.rps / b.rps, 3) for a, b in zip(buckets["on"], buckets["off"], strict=True)]
    cost_on = summary["on"]["server_cpu_us_per_request"]
    cost_off = summary["off"]["server_cpu_us_per_request"]
    return {
        **summary,
        "ratio": summary["on"]["rps"] / summary["off"]["rps"],
        "ratio_by_round": by_round,
        "ratio_cpu": cost_off / cost_on if cost_on and cost_off else None,
        "unsealed_after_on_segments": backlog,
        "sealer_catch_up_s": catch_up,
        "verify_after_rounds": {
            "ok": report["ok"],
            "entries_checked": report["entries_checked"],
            "seconds": verify_s,
        },
        "off_server_wrote_read_entries": off_written,
    }


# --- 2. a large log: generate, seal, verify, export -------------------------------------------


@dataclass(frozen=True)
class Catalogue:
    """The names and values the generated entries draw from (and the queries filter by)."""

    org_id: str
    user_ids: list[str]
    machine_ids: list[str]
    projects: list[str]
    environments: list[str]
    keys: list[str]
    key_weights: list[float]
    start: float
    end: float


# (action, weight, touches a secret, result)
_ACTIONS: list[tuple[str, int, bool, str]] = [
    ("secret.read", 8000, True, "success"),
    ("secret.updated", 450, True, "success"),
    ("secret.created", 200, True, "success"),
    ("access.denied", 200, True, "failure"),
    ("anomaly.detected", 30, True, "success"),
    ("secret.deleted", 50, True, "success"),
    ("auth.login", 500, False, "success"),
    ("auth.login_failed", 150, False, "failure"),
    ("token.created", 60, False, "success"),
    ("grant.created", 40, False, "success"),
    ("key.rotated", 10, False, "success"),
    ("member.invited", 10, False, "success"),
]
_PROJECTS = [
    "billing", "checkout-api", "payments", "search", "web-frontend", "mobile-backend",
    "notifications", "reporting", "identity", "data-pipeline", "ml-features", "inventory",
    "shipping", "support-portal", "analytics", "cms", "gateway", "ledger", "fraud", "crm",
]  # fmt: skip
_ENVIRONMENTS = ["development", "staging", "production"]
_KEYS = [
    "db/password", "db/user", "db/host", "db/replica/password", "db/migrations/url",
    "api/stripe_key", "api/sendgrid_key", "api/github_token", "api/slack_webhook",
    "smtp/password", "smtp/user", "redis/url", "redis/password", "jwt/signing_key",
    "oauth/client_secret", "oauth/client_id", "s3/access_key", "s3/secret_key",
    "feature/flags", "sentry/dsn", "datadog/api_key", "tls/private_key", "cache/url",
    "queue/password", "search/api_key", "maps/api_key", "pagerduty/token", "vault/unseal",
    "internal/hmac_secret", "legacy/ftp_password",
]  # fmt: skip
_AGENTS = [
    "coffer-cli/0.4.0 (linux; python 3.11.2)",
    "coffer-cli/0.4.0 (darwin; python 3.12.1)",
    "coffer-sdk-python/0.4.0",
    "curl/8.4.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "kube-secrets-sync/1.9.2",
]


def make_catalogue(org_id: str, rng: random.Random, now: float) -> Catalogue:
    from coffer.storage.ids import new_id

    # Zipf-like key popularity: a few keys are read all the time, some rarely
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(_KEYS))]
    return Catalogue(
        org_id=org_id,
        user_ids=[new_id() for _ in range(40)],
        machine_ids=[new_id() for _ in range(160)],
        projects=list(_PROJECTS),
        environments=list(_ENVIRONMENTS),
        keys=list(_KEYS),
        key_weights=weights,
        start=now - SPAN_DAYS * 86400.0,
        end=now - 60.0,
    )


def _contexts(catalogue: Catalogue, rng: random.Random) -> tuple[list[Any], list[Any]]:
    """CallContexts of the catalogue's users and machines (each with an address and an
    agent of its own; some with two addresses)."""
    from coffer.domain.models import Actor, ActorKind, CallContext

    def contexts(ids: list[str], kind: ActorKind) -> list[Any]:
        out = []
        for number, identity in enumerate(ids):
            actor = Actor(id=identity, kind=kind, org_id=catalogue.org_id, name=f"{kind}-{number}")
            for _ in range(rng.choice((1, 1, 2))):
                address = ".".join(
                    str(part)
                    for part in (10, rng.randrange(4), rng.randrange(256), rng.randrange(1, 255))
                )
                agent = rng.choice(_AGENTS)
                out.append(CallContext(actor=actor, source_ip=address, user_agent=agent))
        return out

    return contexts(catalogue.user_ids, ActorKind.USER), contexts(
        catalogue.machine_ids, ActorKind.MACHINE
    )


def generate_entries(engine: Any, keys: Any, catalogue: Catalogue, count: int) -> dict[str, Any]:
    """Inserts ``count`` valid, unsealed entries (MAC by the vault's keys), times spread
    evenly (with jitter) from ``catalogue.start`` to ``catalogue.end``, oldest first.
    Returns the time spent building rows and inserting them."""
    import sqlalchemy as sa

    from coffer.audit.records import RECORD_COLUMNS, canonical_from_values
    from coffer.audit.writer import AuditWriter
    from coffer.domain.events import Event, Result
    from coffer.storage.tables import audit_log

    rng = random.Random(4)
    writer = AuditWriter(keys)
    users, machines = _contexts(catalogue, rng)
    # heavy hitters: some machines read far more than others
    machine_weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(machines))]
    columns = [name for name in RECORD_COLUMNS if name != "leaf_index"] + ["mac"]
    insert = sa.insert(audit_log).values({name: sa.bindparam(name) for name in columns})
    actions = [a for a, _w, _s, _r in _ACTIONS]
    action_weights = [w for _a, w, _s, _r in _ACTIONS]
    secretish = {a: s for a, _w, s, _r in _ACTIONS}
    results = {a: Result(r) for a, _w, _s, r in _ACTIONS}
    events = {a: Event(a) for a in actions}
    step = (catalogue.end - catalogue.start) / count
    build_s = insert_s = 0.0
    for first in range(0, count, INSERT_BATCH):
        size = min(INSERT_BATCH, count - first)
        started = time.perf_counter()
        picked = rng.choices(actions, action_weights, k=size)
        actors = rng.choices(machines, machine_weights, k=size)
        people = rng.choices(users, k=size)
        projects = rng.choices(catalogue.projects, k=size)
        envs = rng.choices(catalogue.environments, (5, 2, 3), k=size)
        names = rng.choices(catalogue.keys, catalogue.key_weights, k=size)
        rows = []
        for n in range(size):
            action = picked[n]
            position = first + n
            timestamp = round(catalogue.start + (position + rng.random() * 0.5) * step, 6)
            if action in ("auth.login", "auth.login_failed", "member.invited"):
                ctx = people[n]
            elif action in ("token.created", "grant.created", "key.rotated"):
                ctx = people[n] if n % 3 else actors[n]
            else:
                ctx = actors[n]
            metadata: dict[str, str | int | float | bool | None]
            if action == "secret.read":
                metadata = {"version": 1 + position % 7, "via": "get"}
                if position % 50 == 0:
                    metadata = {"version": 1, "via": "get", "read_count": 1, "max_reads": 3}
            elif action == "secret.created":
                metadata = {"version": 1, "ttl_seconds": 86400} if n % 4 == 0 else {"version": 1}
            elif action == "secret.updated":
                metadata = {"version": 2 + position % 11}
            elif action == "anomaly.detected":
                metadata = {"reason": "new_source_ip", "rule": "production_read"}
            elif action.startswith("auth."):
                metadata = {"method": "password", "mfa": n % 5 == 0}
            else:
                metadata = {}
            if secretish[action]:
                row = writer.entry(
                    ctx,
                    events[action],
                    project=projects[n],
                    environment=envs[n],
                    key=names[n],
                    result=results[action],
                    metadata=metadata,
                )
            elif action == "key.rotated":
                row = writer.entry(
                    ctx, events[action], project=projects[n], metadata={"version": 2}
                )
            else:
                row = writer.entry(ctx, events[action], result=results[action], metadata=metadata)
            row["timestamp"] = timestamp
            row["mac"] = keys.mac(
                canonical_from_values([row[name] for name in RECORD_COLUMNS], None)
            )
            del row["leaf_index"]
            rows.append(row)
        # a few entries of the system itself (no organization), such as retention runs
        if first % (10 * INSERT_BATCH) == 0:
            rows[-1] = _system_entry(writer, keys, rows[-1]["timestamp"])
        built = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(insert, rows)
        build_s += built - started
        insert_s += time.perf_counter() - built
        if (first // INSERT_BATCH) % 10 == 9:
            log(f"    generated {first + size:,} entries ({build_s + insert_s:.0f} s)")
    return {"build_s": build_s, "insert_s": insert_s}


def _system_entry(writer: Any, keys: Any, timestamp: float) -> dict[str, Any]:
    from coffer.audit.records import RECORD_COLUMNS, canonical_from_values
    from coffer.domain.events import Event

    row: dict[str, Any] = writer.entry(
        None, Event.AUDIT_PRUNED, metadata={"removed": 0, "before_index": 0, "retention_days": 400}
    )
    row["timestamp"] = timestamp
    row["mac"] = keys.mac(canonical_from_values([row[name] for name in RECORD_COLUMNS], None))
    del row["leaf_index"]
    return row


def _profiled(function: Callable[[], Any], top: int = 14) -> tuple[Any, str]:
    """Runs ``function`` under cProfile; returns its result and the top functions by
    own time."""
    profile = cProfile.Profile()
    result = profile.runcall(function)
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    text = out.getvalue()
    # keep the table only, with paths shortened to the package
    lines = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    shortened = [
        line.replace(str(Path(sys.prefix)), "").replace(str(Path(__file__).parents[1]), "")
        for line in lines[start:]
    ]
    return result, "\n".join(shortened)


def bench_verify(
    label: str, vault: Vault, count: int, workdir: Path, args: Any
) -> tuple[Catalogue, dict[str, Any]]:
    """Generates ``count`` entries in ``vault`` and times sealing, verifying, exporting and
    verifying the export, in this process."""
    import sqlalchemy as sa

    from coffer.audit.export import jsonl_export, verify_export
    from coffer.audit.live_check import verify_database
    from coffer.audit.sealer import AuditSealer, CheckpointPolicy, checkpoint_from_row
    from coffer.bootstrap import audit_keys_for, load_settings_root_key
    from coffer.config import Settings
    from coffer.storage import audit_store
    from coffer.storage.database import create_engine
    from coffer.storage.tables import organizations

    env = {"COFFER_DATABASE_URL": vault.database_url} if vault.database_url else {}
    settings = Settings.from_env(env, directory=vault.directory)
    keys = audit_keys_for(load_settings_root_key(settings))
    figures: dict[str, Any] = {"entries": count}

    loader = create_engine(settings.database_url)
    if vault.database == "sqlite":  # the generator's own connection only; disposed below
        with loader.connect() as conn:
            conn.exec_driver_sql("PRAGMA cache_size=-262144")
            conn.commit()
    with loader.connect() as conn:
        org_id = str(conn.execute(sa.select(organizations.c.id)).scalar_one())
    catalogue = make_catalogue(org_id, random.Random(4), time.time())
    log(f"[{label}] generating {count:,} entries")
    started = time.perf_counter()
    made = generate_entries(loader, keys, catalogue, count)
    figures["generate_s"] = time.perf_counter() - started
    figures.update(made)
    loader.dispose()
    log(
        f"[{label}] generated in {figures['generate_s']:.1f} s (building rows "
        f"{made['build_s']:.1f} s, inserting {made['insert_s']:.1f} s)"
    )

    engine = create_engine(settings.database_url)
    sealer = AuditSealer(
        engine,
        keys,
        CheckpointPolicy(
            every_entries=settings.audit_checkpoint_entries,
            every_seconds=settings.audit_checkpoint_seconds,
        ),
    )
    try:
        started = time.perf_counter()
        sealed = sealer.seal()
        figures["seal_s"] = time.perf_counter() - started
        figures["sealed"] = sealed.sealed
        figures["checkpoints_signed"] = len(sealed.checkpoints)
        figures["rejected"] = len(sealed.rejected)
        log(
            f"[{label}] sealed {sealed.sealed:,} entries in {figures['seal_s']:.1f} s "
            f"({sealed.sealed / figures['seal_s']:,.0f}/s), {len(sealed.checkpoints)} checkpoints"
        )
        if vault.database == "postgresql":
            # what autovacuum does by itself after a bulk load: clean up the row versions
            # the sealer's UPDATEs left behind, and gather the planner's statistics
            started = time.perf_counter()
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM ANALYZE audit_log"
                )
            figures["vacuum_analyze_s"] = time.perf_counter() - started

        started = time.perf_counter()
        report = verify_database(engine, keys, sealer)
        figures["verify_s"] = time.perf_counter() - started
        figures["verify_ok"] = report.ok
        figures["verify_entries"] = report.entries
        figures["verify_checkpoints"] = report.checkpoints
        if not report.ok:
            figures["verify_problem"] = report.problems[0].to_json()
        log(
            f"[{label}] verify_database: {report.entries:,} entries, {report.checkpoints} "
            f"checkpoints in {figures['verify_s']:.2f} s, ok={report.ok}"
        )

        figures["consumers_moved_to_head"] = consumers_at_head(engine)

        export_path = workdir / f"{label}-export.jsonl"
        with engine.connect() as conn:
            latest = audit_store.latest_checkpoint_row(conn)
            assert latest is not None
            final = checkpoint_from_row(latest)
            started = time.perf_counter()
            with export_path.open("wb") as out:
                for line in jsonl_export(
                    conn, final, since=None, exported_at=time.time(), org_id=org_id
                ):
                    out.write(line)
            figures["export_s"] = time.perf_counter() - started
        figures["export_bytes"] = export_path.stat().st_size
        log(
            f"[{label}] jsonl export: {figures['export_bytes'] / 1e6:.0f} MB in "
            f"{figures['export_s']:.2f} s"
        )

        def check_export() -> Any:
            with export_path.open("rb") as lines:
                return verify_export(lines, keys.public)

        started = time.perf_counter()
        exported = check_export()
        figures["verify_export_s"] = time.perf_counter() - started
        figures["verify_export_ok"] = exported.ok
        figures["verify_export_entries"] = exported.entries
        log(
            f"[{label}] verify_export: {exported.entries:,} entries in "
            f"{figures['verify_export_s']:.2f} s, ok={exported.ok}"
        )
        if args.profile:
            log(f"[{label}] profiling verify_database and verify_export (cProfile)")
            _r, figures["profile_verify_database"] = _profiled(
                lambda: verify_database(engine, keys, sealer)
            )
            _r, figures["profile_verify_export"] = _profiled(check_export)
        export_path.unlink()
    finally:
        engine.dispose()
    return catalogue, figures


def consumers_at_head(engine: Any) -> list[str]:
    """Moves the cursors of the sealed log's consumers (webhook dispatch, anomaly detection)
    to the end of the log, as in a server that has run all along and followed the log as it
    grew; returns their names. Without this, a server started on the generated log spends
    its first minutes replaying the whole history through them (see BENCHMARKS.md)."""
    import importlib

    from coffer.storage import audit_store

    names = []
    for module in ("coffer.services.anomalies", "coffer.services.webhook_delivery"):
        try:
            names.append(str(importlib.import_module(module).CURSOR))
        except (ImportError, AttributeError):
            continue
    with engine.begin() as conn:
        size = audit_store.read_tree(conn).size
        for name in names:
            audit_store.set_cursor(conn, name, size, time.time())
    return names


# --- 3. filtered queries ----------------------------------------------------------------------


def query_kinds(
    catalogue: Catalogue, first_pages: dict[str, Any]
) -> list[tuple[str, list[dict[str, str]]]]:
    """The filter kinds and, for each, the parameter sets its requests cycle through."""
    rng = random.Random(44)
    actors = catalogue.machine_ids[:4] + catalogue.machine_ids[-3:] + catalogue.user_ids[:3]
    keys = catalogue.keys[:4] + catalogue.keys[10:13] + catalogue.keys[-3:]
    pairs = [
        {"project": rng.choice(catalogue.projects), "environment": rng.choice(_ENVIRONMENTS)}
        for _ in range(10)
    ]
    windows: dict[int, list[dict[str, str]]] = {3600: [], 7 * 86400: []}
    for width, chosen in windows.items():
        for _ in range(10):
            since = catalogue.start + rng.random() * (catalogue.end - catalogue.start - width)
            chosen.append({"since": f"{since:.0f}", "until": f"{since + width:.0f}"})
    return [
        ("no filter", [{}]),
        ("action=secret.read", [{"action": "secret.read"}]),
        ("key exact", [{"key": k} for k in keys]),
        ("key prefix db/*", [{"key": "db/*"}]),
        ("actor", [{"actor": a} for a in actors]),
        ("project+environment", pairs),
        ("since/until (1 h)", windows[3600]),
        ("since/until (7 d)", windows[7 * 86400]),
        (
            "cursor: page 2",
            [{"cursor": first_pages["no filter"]}, first_pages["action=secret.read"]],
        ),
    ]


def _second_pages(server: ServerHandle) -> dict[str, Any]:
    """The ``next`` cursors of the first pages of the unfiltered and secret.read listings."""
    pages: dict[str, Any] = {}
    for name, params in (("no filter", {}), ("action=secret.read", {"action": "secret.read"})):
        response = httpx.get(
            server.base_url + "/api/v1/audit", params=params, headers=server.auth(), timeout=60
        )
        response.raise_for_status()
        cursor = response.json()["next"]
        pages[name] = cursor if name == "no filter" else {**params, "cursor": cursor}
    return pages


def bench_queries(
    label: str, plan: CpuPlan, vault: Vault, catalogue: Catalogue, args: Any
) -> dict[str, Any]:
    """Times each filter kind through HTTP on a server of ``vault``; then explains each."""
    results: dict[str, Any] = {}
    with serve(vault, f"{label}-queries", plan, audit=True) as server:
        kinds = query_kinds(catalogue, _second_pages(server))
        latencies: dict[str, list[float]] = {name: [] for name, _p in kinds}
        counts: dict[str, list[int]] = {name: [] for name, _p in kinds}
        errors = 0
        with httpx.Client(base_url=server.base_url, headers=server.auth(), timeout=60) as client:
            warm = 3
            log(f"[{label}] queries: {warm} rounds of warm-up, {args.queries} counted, per kind")
            for round_no in range(warm + args.queries):
                for name, variants in kinds:
                    params = variants[round_no % len(variants)]
                    started = time.perf_counter()
                    response = client.get("/api/v1/audit", params=params)
                    body = response.content
                    elapsed = time.perf_counter() - started
                    if round_no < warm:
                        continue
                    if response.status_code != 200:
                        errors += 1
                        continue
                    latencies[name].append(1000 * elapsed)
                    counts[name].append(len(json.loads(body)["entries"]))
    plans = explain_kinds(vault, catalogue, kinds)
    for name, _variants in kinds:
        values = sorted(latencies[name])
        results[name] = {
            "requests": len(values),
            "p50_ms": _percentile(values, 50),
            "p95_ms": _percentile(values, 95),
            "max_ms": values[-1] if values else float("nan"),
            "entries_min": min(counts[name], default=0),
            "entries_max": max(counts[name], default=0),
            **plans[name],
        }
        log(
            f"[{label}] {name:22s} p50 {results[name]['p50_ms']:7.2f} ms  p95 "
            f"{results[name]['p95_ms']:7.2f} ms  (database alone p50 "
            f"{plans[name]['db_p50_ms']:.2f} ms; {results[name]['entries_min']}-"
            f"{results[name]['entries_max']} entries)"
        )
    return {"kinds": results, "errors": errors, "per_kind": args.queries}


def explain_kinds(
    vault: Vault, catalogue: Catalogue, kinds: list[tuple[str, list[dict[str, str]]]]
) -> dict[str, dict[str, Any]]:
    """For each kind: the SQL the query runs (captured), its plan, and the database-only time
    of ``audit_search.search`` (p50 over the kind's parameter sets, twice each)."""
    import sqlalchemy as sa

    from coffer.domain.audit_query import parse_audit_filter
    from coffer.storage import audit_search
    from coffer.storage.database import create_engine

    url = vault.database_url or f"sqlite:///{vault.directory / 'coffer.db'}"
    engine = create_engine(url)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        captured.append((statement, parameters))

    out: dict[str, dict[str, Any]] = {}
    try:
        for name, variants in kinds:
            times = []
            with engine.connect() as conn:
                for params in variants * 2:
                    query = parse_audit_filter(**params)
                    started = time.perf_counter()
                    audit_search.search(conn, catalogue.org_id, query)
                    times.append(1000 * (time.perf_counter() - started))
                query = parse_audit_filter(**variants[0])
                captured.clear()
                sa.event.listen(engine, "before_cursor_execute", capture)
                try:
                    audit_search.search(conn, catalogue.org_id, query)
                finally:
                    sa.event.remove(engine, "before_cursor_execute", capture)
                statement, parameters = captured[-1]
                if engine.dialect.name == "sqlite":
                    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                    plan = "\n".join(str(row[-1]) for row in rows)
                else:
                    rows = conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                    )
                    plan = "\n".join(str(row[0]) for row in rows)
                conn.rollback()
            out[name] = {
                "db_p50_ms": statistics.median(times),
                "params": variants[0],
                "sql": statement,
                "plan": plan,
            }
    finally:
        engine.dispose()
    return out


# --- the run ----------------------------------------------------------------------------------


def bench_database(label: str, plan: CpuPlan, admin_url: str | None, args: Any) -> dict[str, Any]:
    """All three parts on one database (SQLite, or a fresh PostgreSQL database)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"coffer-bench-audit-{label}-"))
    section: dict[str, Any] = {"database": label}
    try:
        with contextlib.ExitStack() as stack:
            urls: list[str | None] = [None, None, None]
            if admin_url:
                database = stack.enter_context(postgres_database(admin_url))
                urls = [stack.enter_context(postgres_schema(database)) for _ in range(3)]
            if not args.skip_reads:
                section["reads"] = bench_reads(label, plan, workdir, (urls[0], urls[1]), args)
            vault = init_vault(workdir / "large", urls[2])
            catalogue, section["verify"] = bench_verify(label, vault, args.entries, workdir, args)
            section["queries"] = bench_queries(label, plan, vault, catalogue, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return section


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its figure and PASS/FAIL."""
    out: list[dict[str, Any]] = []
    for label in ("sqlite", "postgresql"):
        section = results.get(label)
        if not section or "skipped" in section:
            continue
        reads = section.get("reads")
        if reads:
            cpu = reads["ratio_cpu"]
            out.append(
                {
                    "target": f"reads with auditing on >= {READ_RATIO_TARGET:.0%} of off ({label})",
                    "measured": f"{reads['ratio']:.1%} ({reads['on']['rps']:.0f} vs "
                    f"{reads['off']['rps']:.0f} reads/s; by round {reads['ratio_by_round']}; "
                    f"by server CPU per read {'?' if cpu is None else f'{cpu:.1%}'})",
                    "pass": reads["ratio"] >= READ_RATIO_TARGET,
                }
            )
        verify = section["verify"]
        scale = FULL_SIZE / verify["entries"]
        note = "" if verify["entries"] >= FULL_SIZE else f" (projected from {verify['entries']:,})"
        for key, name, ok in (
            ("verify_s", "verify_database", "verify_ok"),
            ("verify_export_s", "verify_export", "verify_export_ok"),
        ):
            projected = verify[key] * scale
            out.append(
                {
                    "target": f"{name} of 1M entries < {VERIFY_TARGET_S:g} s ({label})",
                    "measured": f"{projected:.2f} s per 1M{note}; report ok={verify[ok]}",
                    "pass": projected < VERIFY_TARGET_S and bool(verify[ok]),
                }
            )
        note = "" if verify["entries"] >= FULL_SIZE else f" (on {verify['entries']:,} entries)"
        for name, kind in section["queries"]["kinds"].items():
            out.append(
                {
                    "target": f"query p95 < {QUERY_P95_TARGET_MS:g} ms: {name} ({label}){note}",
                    "measured": f"p95 {kind['p95_ms']:.1f} ms, p50 {kind['p50_ms']:.1f} ms",
                    "pass": kind["p95_ms"] < QUERY_P95_TARGET_MS,
                }
            )
    return out


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded)

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    labels = [k for k in ("sqlite", "postgresql") if "verify" in results.get(k, {})]
    lines = [
        "",
        f"coffer audit benchmarks  {meta['date']}  revision {meta['revision']}  "
        f"({meta['cpus']} CPUs)",
        f"reads: {meta['tool']}, {meta['connections']} connections, {meta['rounds']} "
        f"interleaved rounds of {meta['duration_s']:g} s; pinning: {meta['pinning']}",
        f"load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}",
        "",
    ]
    rows = []
    for label in labels:
        reads = results[label].get("reads")
        if not reads:
            continue
        for mode in ("on", "off"):
            s = reads[mode]
            cost = s["server_cpu_us_per_request"]
            rows.append(
                [
                    f"{label}: secret read, audit {mode}",
                    f"{s['rps']:.0f}",
                    f"{s['p50_ms']:.2f}",
                    f"{s['p99_ms']:.2f}",
                    "?" if cost is None else f"{cost:.0f}",
                    f"{reads['ratio']:.3f}" if mode == "on" else "1.000",
                    str(s["errors"]),
                ]
            )
    if rows:
        lines.append(
            _table(
                ["reads", "reads/s", "p50 ms", "p99 ms", "CPU us/read", "on/off", "errors"], rows
            )
        )
        for label in labels:
            reads = results[label].get("reads")
            if reads:
                lines.append(
                    f"{label}: on/off by round {reads['ratio_by_round']}; unsealed of the newest "
                    f"1000 after each on segment {reads['unsealed_after_on_segments']}; sealer "
                    f"caught up {reads['sealer_catch_up_s']:.2f} s after the last round; "
                    f"verify of the {reads['verify_after_rounds']['entries_checked']:,} entries "
                    f"written: ok={reads['verify_after_rounds']['ok']} in "
                    f"{reads['verify_after_rounds']['seconds']:.2f} s; off server wrote read "
                    f"entries: {reads['off_server_wrote_read_entries']}"
                )
        lines.append("")
    rows = []
    for label in labels:
        v = results[label]["verify"]
        n = v["entries"]
        rows.append(
            [
                label,
                f"{n:,}",
                f"{v['generate_s']:.1f}",
                f"{v['seal_s']:.1f} ({v['sealed'] / v['seal_s']:,.0f}/s)",
                f"{v['verify_s']:.2f} ({n / v['verify_s']:,.0f}/s)",
                f"{v['export_s']:.2f} ({v['export_bytes'] / 1e6:.0f} MB)",
                f"{v['verify_export_s']:.2f} ({n / v['verify_export_s']:,.0f}/s)",
            ]
        )
    lines.append(
        _table(
            [
                "log",
                "entries",
                "generate s",
                "seal s",
                "verify_database s",
                "export s",
                "verify_export s",
            ],
            rows,
        )
    )
    lines.append("")
    kinds = list(results[labels[0]]["queries"]["kinds"]) if labels else []
    header = ["GET /api/v1/audit"]
    for label in labels:
        header += [f"{label} p50", "p95", "db p50"]
    rows = []
    for kind in kinds:
        row = [kind]
        for label in labels:
            k = results[label]["queries"]["kinds"][kind]
            row += [f"{k['p50_ms']:.1f}", f"{k['p95_ms']:.1f}", f"{k['db_p50_ms']:.1f}"]
        rows.append(row)
    if rows:
        lines.append(_table(header, rows))
        lines.append(
            "(ms; client-side over HTTP, one keep-alive connection; db p50: the query alone, "
            "in-process)"
        )
    lines.append("")
    lines.append("targets:")
    for t in results["targets"]:
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['measured']}")
    for label in labels:
        for name, kind in results[label]["queries"]["kinds"].items():
            if kind["p95_ms"] >= QUERY_P95_TARGET_MS:
                lines.append(f"\n{label}: plan of '{name}' ({kind['params']}):\n{kind['plan']}")
        for key in ("profile_verify_database", "profile_verify_export"):
            if key in results[label]["verify"]:
                lines.append(f"\n{label}: {key}:\n{results[label]['verify'][key]}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=None, help="log size (default 1,000,000)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per read segment")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds of reads")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=50, help="requests per filter kind")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("COFFER_BENCH_POSTGRES_URL"),
        help="PostgreSQL server to use (default: $COFFER_BENCH_POSTGRES_URL; none: SQLite only)",
    )
    parser.add_argument("--skip-reads", action="store_true", help="only the large-log parts")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the verify steps too")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--quick", action="store_true", help="50,000 entries, short segments")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "audit-latest.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds, args.queries = 3.0, 1.0, 2, 20
        args.entries = args.entries or 50_000
    args.entries = args.entries or FULL_SIZE
    return args


def _src_changes() -> list[str]:
    """The files under src/ that differ from the commit (the run measured them as they were)."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True
        ).stdout
    except OSError:
        return []
    return [line[3:] for line in out.splitlines()]


def _revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = cpu_plan(pin=not args.no_pin)
    pin_self(plan.client)
    args.tool = choose_tool(args.loadgen)
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "revision": _revision(),
            "src_changes": _src_changes(),
            "tool": args.tool,
            "connections": args.connections,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "entries": args.entries,
            "queries_per_kind": args.queries,
            "pinning": plan.describe(),
            "loadavg_before": _loadavg(),
        }
    }
    results["sqlite"] = bench_database("sqlite", plan, None, args)
    if args.postgres and not args.sqlite_only:
        results["postgresql"] = bench_database("postgresql", plan, args.postgres, args)
    else:
        results["postgresql"] = {"skipped": "no --postgres / COFFER_BENCH_POSTGRES_URL"}
    results["meta"]["loadavg_after"] = _loadavg()
    results["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
    results["targets"] = targets(results)
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.output}  (took {results['meta']['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
