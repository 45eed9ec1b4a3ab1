"""coffer's benchmarks, in one run against one server process (``make bench``).

1. Authenticated secret reads (``GET .../secrets/{key}``: token check, decrypt, audit insert)
   next to the constant endpoint ``/healthz`` of the same server, same client, same concurrency,
   interleaved (healthz, read, healthz, read, ...) so drift on a shared machine hits both.
   Figures: requests/s, p50 and p99 latency, and the ratio read/constant.
2. Writes (``PUT`` of a new version of one key), same method.
3. Wall time of ``coffer run -p P -e E -- true`` (median and p90), next to the bare start-up
   of the same Python interpreter and the import of the CLI application, run interleaved.
4. Optionally, 1 and 2 again on a second server whose database is PostgreSQL, when
   ``COFFER_BENCH_POSTGRES_URL`` names a server (a fresh schema is created and dropped).

Prints a table and the targets with PASS/FAIL, writes ``bench/results/latest.json``, and exits 0
whether or not a target is met: it reports, it does not gate. Usage::

    .venv/bin/python bench/run_all.py [--quick] [--loadgen auto|wrk|python] [--no-pin]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cli_timing import time_commands
from http_load import LoadResult, Request, choose_tool, run_load, wrk_path
from server_process import (
    BIN,
    COFFER,
    CpuPlan,
    ServerHandle,
    base_env,
    cpu_plan,
    pin_self,
    postgres_schema,
    process_cpu_seconds,
    running_server,
    seed,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"

PROJECT = "bench"
ENVIRONMENT = "development"
READ_KEY = "db/password"
WRITE_KEY = "bench/write-target"
SECRETS = {
    READ_KEY: "correct-horse-battery-staple-0123456789",
    "db/user": "app",
    "api/stripe_key": "sk_test_" + "x" * 24,
    "smtp/password": "p" * 32,
    "feature/flags": '{"beta": true, "limit": 10}',
}
WRITE_BODY = json.dumps({"value": "rotated-" + "v" * 32}).encode()

READ_TARGET_RATIO = 0.40
RUN_TARGET_MS = 300.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_revision() -> str:
    """Returns the short commit, with "+dirty" when src/ has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _tool_version(tool: str) -> str:
    if tool == "wrk":
        binary = wrk_path() or "wrk"
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    return f"python {platform.python_version()} asyncio raw-socket client"


def _summary(segments: list[LoadResult]) -> dict[str, Any]:
    """Combines rounds: rate over all requests, mean of p50s, worst p99."""
    requests = sum(s.requests for s in segments)
    duration = sum(s.duration_s for s in segments)
    known = requests > 0 and all("server_cpu_percent" in s.detail for s in segments)
    cost: float | None = None
    share: float | None = None
    if known:
        cpu_us = [float(s.detail["server_cpu_us_per_request"]) * s.requests for s in segments]
        cost = sum(cpu_us) / requests
        share = sum(float(s.detail["server_cpu_percent"]) for s in segments) / len(segments)
    return {
        "server_cpu_us_per_request": cost,
        "server_cpu_percent": share,
        "rps": requests / duration if duration else 0.0,
        "p50_ms": sum(s.p50_ms for s in segments) / len(segments),
        "p99_ms": max(s.p99_ms for s in segments),
        "requests": requests,
        "errors": sum(s.errors for s in segments),
        "rounds_rps": [round(s.rps, 1) for s in segments],
    }


def _line(r: LoadResult) -> str:
    cpu = r.detail.get("server_cpu_percent")
    return (
        f"{r.rps:8.1f} req/s  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms  "
        f"errors {r.errors}  server CPU {'?' if cpu is None else f'{cpu:.0f}%'}"
    )


def _segment(name: str, r: LoadResult) -> dict[str, Any]:
    data = r.as_dict()
    detail = data.pop("detail", {})
    data["name"] = name
    data["server_cpu_percent"] = detail.get("server_cpu_percent")
    data["server_cpu_us_per_request"] = detail.get("server_cpu_us_per_request")
    return data


def bench_server(
    server: ServerHandle, args: argparse.Namespace, tool: str, *, cli: bool
) -> dict[str, Any]:
    """Seeds the server, then runs warm-ups, the interleaved rounds, the writes and (when
    ``cli``) the CLI timing, all against this one server process."""
    seed(server, PROJECT, ENVIRONMENT, SECRETS)
    auth = server.auth()
    healthz = Request("GET", "/healthz")
    read = Request("GET", server.secret_path(PROJECT, ENVIRONMENT, READ_KEY), headers=auth)
    write = Request(
        "PUT",
        server.secret_path(PROJECT, ENVIRONMENT, WRITE_KEY),
        headers={**auth, "Content-Type": "application/json"},
        body=WRITE_BODY,
    )

    def load(request: Request, seconds: float) -> LoadResult:
        cpu_before = process_cpu_seconds(server.pid)
        result = run_load(
            server.base_url,
            request,
            duration=seconds,
            connections=args.connections,
            threads=args.threads,
            tool=tool,
        )
        cpu_after = process_cpu_seconds(server.pid)
        if cpu_before is not None and cpu_after is not None and result.requests:
            cpu = cpu_after - cpu_before
            result.detail["server_cpu_percent"] = 100 * cpu / result.duration_s
            result.detail["server_cpu_us_per_request"] = 1e6 * cpu / result.requests
        return result

    log(f"[{server.label}] warm-up: {args.warmup:g} s of /healthz, {args.warmup:g} s of reads")
    load(healthz, args.warmup)
    load(read, args.warmup)
    constant: list[LoadResult] = []
    reads: list[LoadResult] = []
    segments: list[dict[str, Any]] = []
    for round_no in range(1, args.rounds + 1):
        for name, request, bucket in (("healthz", healthz, constant), ("read", read, reads)):
            result = load(request, args.duration)
            bucket.append(result)
            segments.append(_segment(f"{name} #{round_no}", result))
            log(f"[{server.label}] {name:7s} round {round_no}: {_line(result)}")
    log(f"[{server.label}] writes: {args.warmup:g} s warm-up, {args.duration:g} s measured")
    load(write, args.warmup)
    writes = load(write, args.duration)
    segments.append(_segment("write", writes))
    log(f"[{server.label}] write        : {_line(writes)}")
    constant_summary = _summary(constant)
    read_summary = _summary(reads)
    write_summary = _summary([writes])
    section: dict[str, Any] = {
        "database": server.database,
        "constant": constant_summary,
        "read": read_summary,
        "write": write_summary,
        "read_over_constant": read_summary["rps"] / constant_summary["rps"],
        "read_over_constant_cpu": (
            constant_summary["server_cpu_us_per_request"]
            / read_summary["server_cpu_us_per_request"]
            if constant_summary["server_cpu_us_per_request"]
            and read_summary["server_cpu_us_per_request"]
            else None
        ),
        "read_over_constant_by_round": [
            round(r.rps / c.rps, 3) for c, r in zip(constant, reads, strict=True)
        ],
        "write_over_constant": write_summary["rps"] / constant_summary["rps"],
        "segments": segments,
    }
    if cli:
        section["cli"] = bench_cli(server, args)
    return section


def bench_cli(server: ServerHandle, args: argparse.Namespace) -> dict[str, Any]:
    """Times ``coffer run -p P -e E -- true`` and, to show where its time goes, the bare
    interpreter start-up and the import of the CLI application (typer, httpx, commands)."""
    with tempfile.TemporaryDirectory(prefix="coffer-bench-cli-") as tmp:
        env = base_env(
            COFFER_ADDR=server.base_url,
            COFFER_TOKEN=server.token,
            COFFER_CONFIG=str(Path(tmp) / "absent.json"),  # never a developer's config file
        )
        log(
            f"[{server.label}] timing `coffer run -- true` and its baselines, interleaved "
            f"({args.cli_runs} runs each)"
        )
        run, imports, python = time_commands(
            [
                (
                    "coffer run -- true",
                    [str(COFFER), "run", "-p", PROJECT, "-e", ENVIRONMENT, "--", "true"],
                ),
                (
                    "python -c 'import coffer.cli.app'",
                    [str(BIN / "python"), "-c", "import coffer.cli.app"],
                ),
                ("python -c pass", [str(BIN / "python"), "-c", "pass"]),
            ],
            env,
            runs=args.cli_runs,
        )
    return {
        "run": run.as_dict(),
        "python_startup": python.as_dict(),
        "cli_import": imports.as_dict(),
    }


# --- report -----------------------------------------------------------------------------------


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_row(header, widths), _row(["-" * w for w in widths], widths)]
    lines += [_row(r, widths) for r in rows]
    return "\n".join(lines)


def _server_rows(label: str, s: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, key, ratio in (
        ("GET /healthz (constant)", "constant", None),
        ("GET secret (auth+decrypt+audit)", "read", s["read_over_constant"]),
        ("PUT secret (new version)", "write", s["write_over_constant"]),
    ):
        figures = s[key]
        cost = figures["server_cpu_us_per_request"]
        share = figures["server_cpu_percent"]
        rows.append(
            [
                f"{label}: {name}",
                f"{figures['rps']:.0f}",
                f"{figures['p50_ms']:.2f}",
                f"{figures['p99_ms']:.2f}",
                "1.00" if ratio is None else f"{ratio:.2f}",
                "?" if cost is None else f"{cost:.0f}",
                "?" if share is None else f"{share:.0f}%",
                str(figures["errors"]),
            ]
        )
    return rows


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured figure and PASS/FAIL."""
    out = []
    for label in ("sqlite", "postgresql"):
        section = results.get(label)
        if not section or "read_over_constant" not in section:
            continue
        ratio = section["read_over_constant"]
        cpu_ratio = section["read_over_constant_cpu"]
        cpu_note = "" if cpu_ratio is None else f"; by server CPU per request {cpu_ratio:.1%}"
        out.append(
            {
                "target": f"reads >= {READ_TARGET_RATIO:.0%} of the constant endpoint ({label})",
                "measured": f"{ratio:.1%} ({section['read']['rps']:.0f} vs "
                f"{section['constant']['rps']:.0f} req/s{cpu_note})",
                "pass": ratio >= READ_TARGET_RATIO,
            }
        )
    cli = results.get("sqlite", {}).get("cli")
    if cli:
        median = cli["run"]["median_ms"]
        out.append(
            {
                "target": f"`coffer run -- true` under {RUN_TARGET_MS:.0f} ms (median)",
                "measured": f"{median:.0f} ms median, {cli['run']['p90_ms']:.0f} ms p90, "
                f"{cli['run']['cpu_median_ms']:.0f} ms CPU",
                "pass": median < RUN_TARGET_MS,
            }
        )
    return out


def report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "",
        f"coffer benchmarks  {meta['date']}  revision {meta['revision']}  "
        f"({meta['cpus']} CPUs: {meta['cpu_model']})",
        f"load: {meta['tool']} ({meta['tool_version']}), {meta['connections']} connections, "
        f"{meta['threads']} threads, {meta['duration_s']:g} s per segment, "
        f"{meta['rounds']} interleaved rounds",
        f"pinning: {meta['pinning']}",
        f"load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}",
        "",
    ]
    rows: list[list[str]] = []
    for label in ("sqlite", "postgresql"):
        section = results.get(label)
        if section and "read" in section:
            rows += _server_rows(label, section)
    header = ["endpoint", "req/s", "p50 ms", "p99 ms", "x const", "CPU us/req", "srv CPU", "errors"]
    lines.append(_table(header, rows))
    for label in ("sqlite", "postgresql"):
        section = results.get(label)
        if section and "read_over_constant_by_round" in section:
            cpu_ratio = section["read_over_constant_cpu"]
            lines.append(
                f"{label}: read/constant by round {section['read_over_constant_by_round']}; "
                f"constant req/s by round {section['constant']['rounds_rps']}; "
                "server CPU per request, constant/read: "
                + ("?" if cpu_ratio is None else f"{cpu_ratio:.2f}")
            )
    pg = results.get("postgresql")
    if pg and "skipped" in pg:
        lines.append(f"postgresql: skipped ({pg['skipped']})")
    cli = results.get("sqlite", {}).get("cli")
    if cli:
        lines.append("")
        lines.append(
            _table(
                ["command", "wall median ms", "p90 ms", "min ms", "CPU median ms", "runs"],
                [
                    [
                        t["label"],
                        f"{t['median_ms']:.0f}",
                        f"{t['p90_ms']:.0f}",
                        f"{t['min_ms']:.0f}",
                        f"{t['cpu_median_ms']:.0f}",
                        str(t["runs"]),
                    ]
                    for t in (cli["run"], cli["cli_import"], cli["python_startup"])
                ],
            )
        )
    lines.append("")
    lines.append("targets:")
    for t in results["targets"]:
        lines.append(f"  {'PASS' if t['pass'] else 'FAIL'}  {t['target']}: {t['measured']}")
    starved = [
        f"{label} {seg['name']} ({seg['server_cpu_percent']:.0f}%)"
        for label in ("sqlite", "postgresql")
        for seg in results.get(label, {}).get("segments", [])
        if seg["name"].startswith("healthz") and (seg["server_cpu_percent"] or 100) < 85
    ]
    if starved:
        lines.append(
            "  NOTE: the server got under 85% of its core during "
            + ", ".join(starved)
            + ": other load on the machine; rates are low there, CPU us/req still holds"
        )
    if any(results.get(k, {}).get("errors_seen") for k in ("sqlite", "postgresql")):
        lines.append("  WARNING: some requests failed; the figures above are not valid")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per segment")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up")
    parser.add_argument("--rounds", type=int, default=4, help="healthz/read pairs")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads / client processes")
    parser.add_argument("--cli-runs", type=int, default=15)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    parser.add_argument("--quick", action="store_true", help="short segments, for trying it out")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds, args.cli_runs = 2.0, 1.0, 1, 5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan: CpuPlan = cpu_plan(pin=not args.no_pin)
    pin_self(plan.client)
    tool = choose_tool(args.loadgen)
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
            "revision": _git_revision(),
            "tool": tool,
            "tool_version": _tool_version(tool),
            "connections": args.connections,
            "threads": args.threads,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "pinning": plan.describe(),
            "loadavg_before": _loadavg(),
        }
    }
    if tool == "python":
        log("wrk not found (or --loadgen python): using the Python load generator")

    with running_server("sqlite", plan) as server:
        results["sqlite"] = bench_server(server, args, tool, cli=True)

    pg_url = os.environ.get("COFFER_BENCH_POSTGRES_URL")
    if pg_url:
        try:
            with (
                postgres_schema(pg_url) as schema_url,
                running_server("postgresql", plan, database_url=schema_url) as server,
            ):
                results["postgresql"] = bench_server(server, args, tool, cli=False)
        except Exception as exc:  # noqa: BLE001 - an optional section reports why it failed
            log(f"[postgresql] failed: {exc}")
            results["postgresql"] = {"skipped": f"failed: {exc}"}
    else:
        results["postgresql"] = {
            "skipped": "set COFFER_BENCH_POSTGRES_URL=postgresql+psycopg://user@host:port/db"
        }

    for label in ("sqlite", "postgresql"):
        section = results[label]
        if "read" in section:
            section["errors_seen"] = any(
                section[k]["errors"] for k in ("constant", "read", "write")
            )
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
