"""Closed-loop HTTP/1.1 keep-alive load: ``wrk`` when it is installed, else a Python generator.

Both keep ``connections`` connections open, each sending its next request as soon as the
previous response has arrived, for ``duration`` seconds, and report completed requests per
second and latency percentiles (time from sending a request to having read its whole response).

* ``wrk`` (Debian package ``wrk``) runs with a generated Lua script that sets the method, the
  Authorization header and the body, and prints its exact counters and percentiles from the
  ``done`` hook on one line that is parsed here (``--latency`` also prints wrk's own table).
* The fallback runs ``threads`` worker processes, each an asyncio (uvloop when available) loop
  with its share of the connections over raw sockets. It costs far more CPU per request than
  wrk, so on a two-core machine it is the first thing to check when the constant endpoint's
  rate looks low: see ``client_cpu_percent`` in the result.

Either client inherits the CPU affinity of the calling process (the runner pins itself to the
client's core before starting anything), so it never runs on the server's core.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import multiprocessing
import os
import re
import resource
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The Python generator starts measuring this many seconds after it is called (its worker
# processes need the time to start); work meant to overlap its window must wait as long.
PYTHON_START_DELAY = 1.5


@dataclass(frozen=True)
class Request:
    """One request, repeated for the whole run."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass
class LoadResult:
    """What one timed run measured. Latencies are in milliseconds."""

    tool: str
    requests: int
    duration_s: float
    rps: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    connections: int
    threads: int
    client_cpu_percent: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_path() -> str | None:
    """Returns the wrk binary, or None when it is not installed."""
    return shutil.which("wrk")


def choose_tool(preference: str = "auto") -> str:
    """Returns "wrk" or "python": the preference, with "auto" meaning wrk when installed."""
    if preference == "python":
        return "python"
    if preference == "wrk":
        if wrk_path() is None:
            raise RuntimeError("wrk was asked for but is not installed (apt-get install wrk)")
        return "wrk"
    return "wrk" if wrk_path() is not None else "python"


def run_load(
    base_url: str,
    request: Request,
    *,
    duration: float,
    connections: int,
    threads: int,
    tool: str,
    stop: threading.Event | None = None,
) -> LoadResult:
    """Drives ``request`` against ``base_url`` for ``duration`` seconds with ``tool``; with
    wrk and ``stop``, ends earlier when ``stop`` is set (wrk then reports on the time it ran).
    The Python generator ignores ``stop``."""
    if tool == "wrk":
        return _run_wrk(base_url, request, duration, connections, threads, stop)
    return _run_python(base_url, request, duration, connections, threads)


# --- wrk --------------------------------------------------------------------------------------

_MARK = "COFFER_BENCH_RESULT"

_LUA_DONE = f"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("{_MARK} %d %d %d %d %d %d %d %.1f %.1f %.1f %.1f %.1f\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
"""


def _lua_string(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def wrk_script(request: Request) -> str:
    """Returns the Lua script that makes wrk send ``request`` and report its figures."""
    lines = [
        f"wrk.method = {_lua_string(request.method)}",
        f"wrk.path = {_lua_string(request.path)}",
    ]
    for name, value in request.headers.items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    if request.body is not None:
        lines.append(f"wrk.body = {_lua_string(request.body.decode('utf-8'))}")
    return "\n".join(lines) + "\n" + _LUA_DONE


def parse_wrk(output: str) -> dict[str, float]:
    """Returns the figures printed by the script's ``done`` hook (latencies in microseconds,
    duration in microseconds) plus wrk's own Requests/sec line."""
    for line in output.splitlines():
        if line.startswith(_MARK):
            parts = line.split()[1:]
            names = [
                "requests",
                "duration_us",
                "err_connect",
                "err_read",
                "err_write",
                "err_status",
                "err_timeout",
                "mean_us",
                "p50_us",
                "p90_us",
                "p99_us",
                "max_us",
            ]
            figures = {name: float(value) for name, value in zip(names, parts, strict=True)}
            match = re.search(r"Requests/sec:\s+([\d.]+)", output)
            figures["wrk_rps"] = float(match.group(1)) if match else float("nan")
            return figures
    raise RuntimeError(f"no {_MARK} line in wrk's output:\n{output}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wrk_until(argv: list[str], stop: threading.Event) -> subprocess.CompletedProcess[str]:
    """Runs wrk and interrupts it (SIGINT: it stops its threads and reports as usual) as
    soon as ``stop`` is set."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        while proc.poll() is None:
            if stop.wait(0.01):
                proc.send_signal(signal.SIGINT)
                break
        stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _run_wrk(
    base_url: str,
    request: Request,
    duration: float,
    connections: int,
    threads: int,
    stop: threading.Event | None = None,
) -> LoadResult:
    binary = wrk_path()
    if binary is None:
        raise RuntimeError("wrk is not installed")
    with tempfile.TemporaryDirectory(prefix="coffer-wrk-") as tmp:
        script = Path(tmp) / "request.lua"
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # holds the token
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(wrk_script(request))
        seconds = max(1, round(duration))
        argv = [
            binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            base_url + request.path,
        ]
        cpu_before = _children_cpu()
        if stop is None:
            completed = subprocess.run(argv, capture_output=True, text=True, check=False)
        else:
            completed = _wrk_until(argv, stop)
        cpu = _children_cpu() - cpu_before
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    f = parse_wrk(completed.stdout)
    duration_s = f["duration_us"] / 1e6
    errors = int(
        f["err_connect"] + f["err_read"] + f["err_write"] + f["err_status"] + f["err_timeout"]
    )
    return LoadResult(
        tool="wrk",
        requests=int(f["requests"]),
        duration_s=duration_s,
        rps=f["requests"] / duration_s,
        mean_ms=f["mean_us"] / 1000,
        p50_ms=f["p50_us"] / 1000,
        p90_ms=f["p90_us"] / 1000,
        p99_ms=f["p99_us"] / 1000,
        max_ms=f["max_us"] / 1000,
        errors=errors,
        connections=connections,
        threads=threads,
        client_cpu_percent=100 * cpu / duration_s,
        detail={k: v for k, v in f.items() if k.startswith("err_")} | {"raw": completed.stdout},
    )


# --- Python fallback --------------------------------------------------------------------------


def _raw_request(host: str, port: int, request: Request) -> bytes:
    headers = {"Host": f"{host}:{port}", "User-Agent": "coffer-bench", **request.headers}
    if request.body is not None:
        headers["Content-Length"] = str(len(request.body))
    head = f"{request.method} {request.path} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return head.encode("latin-1") + b"\r\n" + (request.body or b"")


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


async def _connection(
    host: str, port: int, raw: bytes, deadline: float, latencies: array.array[float]
) -> tuple[int, int]:
    """Sends ``raw`` in a loop until ``deadline``; returns (non-2xx responses, socket errors)."""
    status_errors = 0
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return 0, 1
    clock = time.perf_counter
    try:
        while True:
            started = clock()
            if started >= deadline:
                break
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            match = _CONTENT_LENGTH.search(head)
            if match is None:
                raise OSError("response without Content-Length")
            await reader.readexactly(int(match.group(1)))
            latencies.append(clock() - started)
            if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")):
                status_errors += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return status_errors, 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return status_errors, 0


def _worker(
    host: str, port: int, raw: bytes, connections: int, start_at: float, duration: float
) -> dict[str, Any]:
    """One load process: waits for the common start, runs its connections, returns its
    latencies (seconds, as bytes of an array of doubles) and counters."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    latencies: array.array[float] = array.array("d")

    async def main() -> list[tuple[int, int]]:
        # sleep until the common start time so all processes measure the same window
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.perf_counter() + duration
        return await asyncio.gather(
            *(_connection(host, port, raw, deadline, latencies) for _ in range(connections))
        )

    cpu0 = time.process_time()
    wall0 = time.time()
    outcomes = asyncio.run(main())
    return {
        "latencies": latencies.tobytes(),
        "status_errors": sum(o[0] for o in outcomes),
        "socket_errors": sum(o[1] for o in outcomes),
        "elapsed": time.time() - max(wall0, start_at),
        "cpu": time.process_time() - cpu0,
    }


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def _run_python(
    base_url: str, request: Request, duration: float, connections: int, threads: int
) -> LoadResult:
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    raw = _raw_request(host, port, request)
    processes = max(1, min(threads, connections))
    shares = [
        connections // processes + (1 if i < connections % processes else 0)
        for i in range(processes)
    ]
    start_at = time.time() + PYTHON_START_DELAY  # time for the spawned processes to import
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        outputs = pool.starmap(
            _worker, [(host, port, raw, share, start_at, duration) for share in shares]
        )
    latencies: list[float] = []
    for output in outputs:
        values: array.array[float] = array.array("d")
        values.frombytes(output["latencies"])
        latencies.extend(values)
    latencies.sort()
    elapsed = max(o["elapsed"] for o in outputs)
    count = len(latencies)
    errors = sum(o["status_errors"] + o["socket_errors"] for o in outputs)
    return LoadResult(
        tool="python",
        requests=count,
        duration_s=elapsed,
        rps=count / elapsed if elapsed else 0.0,
        mean_ms=1000 * sum(latencies) / count if count else float("nan"),
        p50_ms=1000 * _percentile(latencies, 50),
        p90_ms=1000 * _percentile(latencies, 90),
        p99_ms=1000 * _percentile(latencies, 99),
        max_ms=1000 * latencies[-1] if latencies else float("nan"),
        errors=errors,
        connections=connections,
        threads=processes,
        client_cpu_percent=100 * sum(o["cpu"] for o in outputs) / elapsed if elapsed else None,
        detail={
            "status_errors": sum(o["status_errors"] for o in outputs),
            "socket_errors": sum(o["socket_errors"] for o in outputs),
        },
    )
