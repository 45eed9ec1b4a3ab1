"""What issue 9's compliance features cost on the hot paths, as ratios within one run.

    .venv/bin/python bench/compliance_bench.py [--quick] [--rounds N] [--duration S]
    .venv/bin/python bench/run_all.py --only compliance [--quick]

One real ``coffer server`` on the embedded SQLite (``server_process.running_server``: a fresh
vault, a free port, rate limits off, access log off), pinned to the first core; wrk, the CLI and
this script on the other (``server_process.cpu_plan``). Before the run, through the API: project
``bench`` (with ``staging`` and ``production``), the environment policy of ``production``
(``PUT /api/v1/policies/production``: owner required, 90-day rotation, reads state a reason),
and ``db/password`` plus ``--write-keys`` keys ``bench/write-NN`` in both environments, each
written with the inventory owner (so later plain PUTs pass the policy). Every request path is
checked once for a 2xx before wrk starts.

The machine is shared (two cores, other sessions run tests at the same time), so the figures
that matter are ratios of streams measured in the same run: after a warm-up of each stream,
``--rounds`` interleaved rounds of ``--duration`` seconds (``scale_bench.interleaved``), wrk
with ``--connections`` (16) connections and 2 threads, the bootstrap token:

(a) **Writes.** ``PUT .../environments/staging/secrets/bench/write-NN`` (no policy) against
    the same in ``production`` (the policy is checked on every write); body ``{"value": ...}``
    only, round-robin over the keys (``scale_bench.run_wrk``'s Lua hook). Ratio
    production/staging.
(b) **Reads.** ``GET .../staging/secrets/db/password`` (the hot path) against
    ``GET .../production/secrets/db/password?reason=bench`` (a query string sends the request
    through the full stack, where the reason is checked and audited); and, to split the two
    costs, ``GET .../staging/secrets/db/password?reason=bench`` (the full stack without a
    policy). Ratios production/staging and production/staging-with-reason.

Each ratio is given for the rates (overall and round by round) and for the server's CPU per
request (its process's user+system time over the segment / requests): on a busy machine the
server may not get its whole core, which lowers rates but not the CPU a request costs.
(c) **Evidence.** ``coffer demo seed --months 4`` into a temporary folder, a second server on
    it; then ``--cli-runs`` (3) interleaved runs of ``coffer compliance status --json`` and of
    ``coffer compliance evidence`` for the demo's whole period (into a fresh folder each run);
    median wall seconds, the pack's files and bytes.

Prints a table and writes ``bench/results/compliance.json``; exits 0 (it reports, it does not
gate) unless a request failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_load import Request, wrk_path
from scale_bench import Node, _cpu_model, _revision, _table, interleaved, log, write_key
from server_process import (
    COFFER,
    LIMITS_OFF,
    ServerHandle,
    base_env,
    cpu_plan,
    pin_self,
    running_server,
    spawned_server,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROJECT, READ_KEY = "bench", "db/password"
INVENTORY = {"owner": "bench@example.com", "rotation_days": 90}  # what the policy requires
POLICY = {"required_fields": ["owner"], "max_rotation_days": 90, "require_read_reason": True}
WRITE_BODY = json.dumps({"value": "rotated-" + "v" * 32}).encode()


# --- setting up the benchmark server ------------------------------------------------------------


def _ok(response: httpx.Response) -> httpx.Response:
    """Returns ``response`` when it is a 2xx; raises with the server's answer otherwise."""
    if not response.is_success:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:300]}"
        )
    return response


def prepare(server: ServerHandle, keys: list[str]) -> None:
    """Creates the project, the production policy and every secret the streams touch (with
    the inventory owner), and checks that each stream's request answers 2xx once."""
    with httpx.Client(base_url=server.base_url, headers=server.auth(), timeout=30.0) as client:
        _ok(client.post("/api/v1/projects", json={"name": PROJECT}))
        _ok(client.put("/api/v1/policies/production", json=POLICY))
        for environment in ("staging", "production"):
            for key in [READ_KEY, *keys]:
                path = server.secret_path(PROJECT, environment, key)
                body = {"value": "initial-" + "x" * 24, "inventory": INVENTORY}
                _ok(client.put(path, json=body))
        # the policy really applies: a production read without a reason is refused
        refused = client.get(server.secret_path(PROJECT, "production", READ_KEY))
        if refused.status_code < 400:
            raise RuntimeError("a production read without a reason was not refused")
        for environment in ("staging", "production"):
            path = server.secret_path(PROJECT, environment, keys[0])
            _ok(client.put(path, content=WRITE_BODY, headers={"Content-Type": "application/json"}))
        for path in (
            server.secret_path(PROJECT, "staging", READ_KEY),
            server.secret_path(PROJECT, "staging", READ_KEY) + "?reason=bench",
            server.secret_path(PROJECT, "production", READ_KEY) + "?reason=bench",
        ):
            _ok(client.get(path))


def bench_http(
    server: ServerHandle, args: argparse.Namespace, client_cpus: frozenset[int] | None
) -> dict[str, Any]:
    """(a) and (b): interleaved wrk streams on one server; returns each stream's figures and
    the ratios (overall and per round)."""
    keys = [write_key(i) for i in range(args.write_keys)]
    prepare(server, keys)
    node = Node(server, None)
    c, t = args.connections, 2
    json_auth = {**server.auth(), "Content-Type": "application/json"}

    def writes_in(environment: str) -> tuple[str, Any, Any]:
        request = Request(
            "PUT", server.secret_path(PROJECT, environment, keys[0]), json_auth, WRITE_BODY
        )
        paths = [server.secret_path(PROJECT, environment, k) for k in keys]
        return (f"write {environment}", [(node, request, c, t)], lambda _n: paths)

    def reads(name: str, environment: str, query: str) -> tuple[str, Any, None]:
        path = server.secret_path(PROJECT, environment, READ_KEY) + query
        return (name, [(node, Request("GET", path, server.auth()), c, t)], None)

    log(f"(a) writes over {len(keys)} keys, staging against production, {c} connections")
    writes = interleaved(
        "sqlite", [writes_in("staging"), writes_in("production")], args, client_cpus
    )
    log(f"(b) reads, staging (hot path) against production ?reason=, {c} connections")
    read = interleaved(
        "sqlite",
        [
            reads("read staging", "staging", ""),
            reads("read staging ?reason", "staging", "?reason=bench"),
            reads("read production ?reason", "production", "?reason=bench"),
        ],
        args,
        client_cpus,
    )
    return {
        "writes": writes,
        "write_ratio": _ratio(writes["write production"], writes["write staging"]),
        "reads": read,
        "read_ratio": _ratio(read["read production ?reason"], read["read staging"]),
        "read_ratio_full_stack": _ratio(
            read["read production ?reason"], read["read staging ?reason"]
        ),
    }


def _ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> dict[str, Any]:
    """The ratio of two streams' rates over the whole run and round by round, and of their
    server CPU per request."""
    by_round = [
        round(a / b, 3) if b else 0.0
        for a, b in zip(numerator["rounds_rps"], denominator["rounds_rps"], strict=True)
    ]
    overall = numerator["rps"] / denominator["rps"] if denominator["rps"] else 0.0
    a, b = numerator["server_cpu_us_per_request"], denominator["server_cpu_us_per_request"]
    return {
        "overall": round(overall, 3),
        "by_round": by_round,
        # server CPU per request, the other way round (cost, not rate): holds when the server
        # gets less than its whole core from a busy machine
        "cpu_per_request": round(a / b, 3) if a and b else None,
    }


# --- (c) the evidence pack ---------------------------------------------------------------------


def _timed(argv: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Runs ``argv``; returns its wall seconds, exit code and stderr."""
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, done.returncode, done.stderr.strip()


def _folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def bench_evidence(args: argparse.Namespace, server_cpus: frozenset[int] | None) -> dict[str, Any]:
    """(c): a demo vault served by a second server; interleaved timed runs of ``compliance
    status`` and ``compliance evidence`` for the demo's whole period."""
    workdir = Path(tempfile.mkdtemp(prefix="coffer-compliance-"))
    try:
        demo = workdir / "demo"
        env = base_env(COFFER_ACCESS_LOG="false", COFFER_LOG_LEVEL="warning", **LIMITS_OFF)
        started = time.perf_counter()
        seeded = subprocess.run(
            [str(COFFER), "demo", "seed", "--dir", str(demo), "--months", str(args.months)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        found = re.search(r"coffer login --token (\S+)", seeded.stdout)
        if seeded.returncode != 0 or found is None:
            raise RuntimeError(
                f"coffer demo seed failed ({seeded.returncode}): {seeded.stderr.strip()}"
            )
        token = found.group(1)  # the owner's API key, shown once
        with spawned_server(
            [str(COFFER), "server", "--no-init"],
            directory=demo,
            env=env,
            log_path=workdir / "demo-server.log",
            cpus=server_cpus,
            label="demo",
            token=token,
            database="sqlite",
        ) as handle:
            cli_env = {
                **env,
                "COFFER_ADDR": handle.base_url,
                "COFFER_TOKEN": token,
                "COFFER_CONFIG": str(workdir / "cli-config.json"),
            }
            today = dt.datetime.now(dt.UTC).date()
            start = today - dt.timedelta(days=31 * args.months + 5)
            status_argv = [str(COFFER), "compliance", "status", "--json"]
            status_s: list[float] = []
            evidence_s: list[float] = []
            codes: dict[str, list[int]] = {"status": [], "evidence": []}
            pack: tuple[int, int] = (0, 0)
            _timed(status_argv, cli_env)  # warm-up: the server's first requests, page cache
            for run in range(args.cli_runs):
                s, code, err = _timed(status_argv, cli_env)
                if code not in (0, 1):  # 1: some control fails, still a full answer
                    raise RuntimeError(f"coffer compliance status failed ({code}): {err}")
                status_s.append(s)
                codes["status"].append(code)
                out = workdir / f"evidence-{run}"
                evidence_argv = [str(COFFER), "compliance", "evidence"]
                evidence_argv += ["--from", start.isoformat(), "--to", today.isoformat()]
                s, code, err = _timed([*evidence_argv, "--out", str(out)], cli_env)
                if code not in (0, 9):  # 9: written, but its audit export did not verify
                    raise RuntimeError(f"coffer compliance evidence failed ({code}): {err}")
                evidence_s.append(s)
                codes["evidence"].append(code)
                pack = _folder_size(out)
                log(f"(c) run {run + 1}: status {status_s[-1]:.2f} s, evidence {s:.2f} s")
        return {
            "months": args.months,
            "seed_s": round(seconds, 2),
            "period": [start.isoformat(), today.isoformat()],
            "status_s": [round(s, 3) for s in status_s],
            "status_median_s": round(statistics.median(status_s), 3),
            "evidence_s": [round(s, 3) for s in evidence_s],
            "evidence_median_s": round(statistics.median(evidence_s), 3),
            "exit_codes": codes,
            "pack_files": pack[0],
            "pack_bytes": pack[1],
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- report -------------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    meta, http = results["meta"], results["http"]
    lines = [
        "",
        f"coffer compliance benchmark  {meta['date']}  revision {meta['revision']}  "
        f"({meta['cpus']} CPUs: {meta['cpu_model']})",
        f"wrk, {meta['connections']} connections, 2 threads, {meta['duration_s']:g} s per "
        f"segment, {meta['rounds']} interleaved rounds; {meta['pinning']}",
        f"load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}",
        "",
    ]
    rows = []
    for part in ("writes", "reads"):
        for name, s in http[part].items():
            cpu = s["server_cpu_us_per_request"]
            rows.append(
                [
                    name,
                    f"{s['rps']:.0f}",
                    f"{s['p50_ms']:.2f}",
                    f"{s['p99_ms']:.2f}",
                    "?" if cpu is None else f"{cpu:.0f}",
                    " ".join(f"{r:.0f}" for r in s["rounds_rps"]),
                    str(s["errors"]),
                ]
            )
    header = ["stream", "req/s", "p50 ms", "p99 ms", "srv CPU us/req", "rounds req/s", "errors"]
    lines.append(_table(header, rows))
    lines.append("")
    for label, key in (
        ("writes production/staging", "write_ratio"),
        ("reads production ?reason / staging hot path", "read_ratio"),
        ("reads production ?reason / staging ?reason", "read_ratio_full_stack"),
    ):
        ratio = http[key]
        lines.append(
            f"{label}: {ratio['overall']:.2f} (by round: "
            + ", ".join(f"{r:.2f}" for r in ratio["by_round"])
            + ")"
            + (
                ""
                if ratio["cpu_per_request"] is None
                else f"; server CPU per request {ratio['cpu_per_request']:.2f}x"
            )
        )
    ev = results.get("evidence")
    if ev:
        lines += [
            "",
            f"demo vault: {ev['months']} months (seeded in {ev['seed_s']:.1f} s); period "
            f"{ev['period'][0]} .. {ev['period'][1]}",
            f"coffer compliance status:   median {ev['status_median_s']:.2f} s  "
            f"(runs {', '.join(f'{s:.2f}' for s in ev['status_s'])})",
            f"coffer compliance evidence: median {ev['evidence_median_s']:.2f} s  "
            f"(runs {', '.join(f'{s:.2f}' for s in ev['evidence_s'])}); pack "
            f"{ev['pack_files']} files, {ev['pack_bytes'] / 1024:.0f} KiB",
        ]
    if results["errors_seen"]:
        lines.append("WARNING: some requests failed; the figures above are not valid")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--write-keys", type=int, default=32, help="keys the writes spread over")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per segment")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cli-runs", type=int, default=3, help="runs of each compliance command")
    parser.add_argument("--months", type=int, default=4, help="months of the demo vault")
    parser.add_argument("--no-pin", action="store_true", help="pin nothing")
    parser.add_argument("--quick", action="store_true", help="2 s segments, 1 round, 1 CLI run")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "compliance.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds, args.cli_runs = 2.0, 1.0, 1, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if wrk_path() is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    plan = cpu_plan(pin=not args.no_pin)
    pin_self(plan.client)
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "revision": _revision(None),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "database": "sqlite",
            "connections": args.connections,
            "write_keys": args.write_keys,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "cli_runs": args.cli_runs,
            "policy": POLICY,
            "pinning": plan.describe(),
            "limits": LIMITS_OFF,
            "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        }
    }
    with running_server("sqlite", plan) as server:
        results["http"] = bench_http(server, args, plan.client)
    results["evidence"] = bench_evidence(args, plan.server)
    results["errors_seen"] = any(
        s["errors"] for part in ("writes", "reads") for s in results["http"][part].values()
    )
    results["meta"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    results["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.output}  (took {results['meta']['elapsed_s']:.0f} s)")
    return 1 if results["errors_seen"] else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
