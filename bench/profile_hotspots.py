"""Where the time goes: py-spy samples of the read path under load, or of ``coffer run``.

Not part of ``make bench``; run it by hand when BENCHMARKS.md's figures need explaining::

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile_hotspots.py read  [--seconds 10] [--top 30] [--token machine]
    .venv/bin/python bench/profile_hotspots.py write [--seconds 10] [--top 30]
    .venv/bin/python bench/profile_hotspots.py read --postgres postgresql+psycopg://u@host/db
    .venv/bin/python bench/profile_hotspots.py cli   [--top 30]

``read`` starts one server (pinned like ``run_all.py``, rate limits off unless ``--limits-on``),
drives authenticated secret reads (with the bootstrap token, or with ``--token machine`` the
machine token with scopes that ``run_all.py`` measures; or, with ``write``, PUTs of new
versions) with the same load generator, and attaches ``py-spy
record`` to the server, sampling its active (non-idle) threads. On SQLite the service calls run
inline on the event loop's thread, so that thread is where the server's one core goes, native
calls (SQLite, socket writes, AES) included. ``--gil`` samples only the thread holding the GIL.
``cli`` samples one ``coffer run -p P -e E -- true`` from start to exec.

All print, per function (file without line numbers), the share of samples in which it is on
the stack (inclusive) and at the top of it (self).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from http_load import Request, choose_tool, run_load
from server_process import (
    BIN,
    COFFER,
    LIMITS_HIGH,
    LIMITS_OFF,
    base_env,
    cpu_plan,
    pin_self,
    postgres_schema,
    running_server,
    seed,
    seed_identities,
)

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Leaf frames of threads that wait for work (anyio's idle pool threads look busy to py-spy).
_IDLE_LEAVES = ("Condition.wait (threading.py)", "Event.wait (threading.py)")


def _short(frame: str, *, line: bool = False) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    if path.startswith("python3.") and "/" in path:  # stdlib: /usr/lib/python3.11/x.py
        path = path.split("/", 1)[1]
    if line and match.group("line"):
        path += f":{match.group('line')}"
    return f"{match.group('func')} ({path})"


def aggregate(raw: str) -> tuple[int, int, Counter[str], Counter[str]]:
    """Returns (samples counted, idle samples left out, inclusive counts by function, self
    counts by function and line) from py-spy's raw output."""
    total = idle = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        raw_frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not raw_frames:
            continue
        frames = [_short(f) for f in raw_frames]
        if frames[-1] in _IDLE_LEAVES:
            idle += count
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[_short(raw_frames[-1], line=True)] += count
    return total, idle, inclusive, own


def _package(frame: str) -> str:
    """The component a frame belongs to: coffer's subpackage, else the top-level package."""
    match = _FRAME.match(frame)
    path = match.group("file") if match else frame
    parts = path.split("/")
    if parts[0] == "coffer" and len(parts) > 2:
        return "/".join(parts[:2])
    if parts[0].startswith("<frozen") or len(parts) == 1:
        return "stdlib " + parts[0].removesuffix(".py")
    return parts[0]


def print_profile(raw: str, top: int, title: str) -> None:
    total, idle, inclusive, own = aggregate(raw)
    print(f"\n{title}: {total} samples ({idle} of idle pool threads left out)")
    if not total:
        return
    everywhere = {frame for frame, count in inclusive.items() if count == total}
    print(f"\n  inclusive (on the stack), top {top}, without the {len(everywhere)} frames on every")
    print("  stack (entry point, uvicorn's loop):")
    shown = [(f, c) for f, c in inclusive.most_common() if f not in everywhere][:top]
    for frame, count in shown:
        print(f"  {100 * count / total:5.1f}%  {frame}")
    by_package: Counter[str] = Counter()
    for frame, count in own.items():
        by_package[_package(frame)] += count
    print("\n  self time by component (native calls count in the Python frame calling them):")
    for package, count in by_package.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {package}")
    print(f"\n  self (top of the stack, by line), top {top}:")
    for frame, count in own.most_common(top):
        print(f"  {100 * count / total:5.1f}%  {frame}")


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(found).exists():
        sys.exit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def profile_load(
    what: str,
    seconds: float,
    top: int,
    loadgen: str,
    connections: int,
    raw_copy: Path | None,
    gil: bool,
    postgres: str | None,
    caller: str = "bootstrap",
    limits_on: bool = False,
) -> None:
    plan = cpu_plan()
    pin_self(plan.client)
    tool = choose_tool(loadgen)
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(postgres_schema(postgres)) if postgres else None
        limits = LIMITS_HIGH if limits_on else LIMITS_OFF
        server = stack.enter_context(
            running_server("profile", plan, database_url=database_url, limits=limits)
        )
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        seed(server, "bench", "development", {"db/password": "correct-horse-battery-staple"})
        path = server.secret_path("bench", "development", "db/password")
        auth = server.auth()
        if caller == "machine":
            auth = seed_identities(server, "bench", "development", "db/password").machine_auth()
        if what == "read":
            read = Request("GET", path, headers=auth)
        else:
            read = Request(
                "PUT",
                path,
                headers={**server.auth(), "Content-Type": "application/json"},
                body=b'{"value": "rotated-value"}',
            )
        run_load(server.base_url, read, duration=2, connections=connections, threads=2, tool=tool)
        out = Path(tmp) / f"{what}.raw"
        spy = subprocess.Popen(
            [
                _py_spy(),
                "record",
                *(["--gil"] if gil else []),
                "-r",
                "250",
                "-d",
                str(round(seconds)),
                "-f",
                "raw",
                "-o",
                str(out),
                "--pid",
                str(server.pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        result: list[float] = []
        loader = threading.Thread(
            target=lambda: result.append(
                run_load(
                    server.base_url,
                    read,
                    duration=seconds + 1,
                    connections=connections,
                    threads=2,
                    tool=tool,
                ).rps
            )
        )
        loader.start()
        spy.wait()
        loader.join()
        print(f"{what}s under profiling: {result[0]:.0f} req/s ({tool}, {connections} connections)")
        raw = out.read_text()
        if raw_copy is not None:
            raw_copy.write_text(raw)
        threads = "the GIL-holding thread" if gil else "active threads"
        database = "PostgreSQL" if postgres else "SQLite"
        print_profile(raw, top, f"server on {database}, {threads}, during secret {what}s")


def profile_cli(top: int) -> None:
    plan = cpu_plan()
    pin_self(plan.client)
    with running_server("profile", plan) as server, tempfile.TemporaryDirectory() as tmp:
        seed(server, "bench", "development", {"db/password": "correct-horse-battery-staple"})
        env = base_env(
            COFFER_ADDR=server.base_url,
            COFFER_TOKEN=server.token,
            COFFER_CONFIG=str(Path(tmp) / "absent.json"),
        )
        argv = [str(COFFER), "run", "-p", "bench", "-e", "development", "--", "true"]
        subprocess.run(argv, env=env, check=True)  # warm .pyc files
        out = Path(tmp) / "cli.raw"
        subprocess.run(
            [_py_spy(), "record", "-r", "2000", "-f", "raw", "-o", str(out), "--", *argv],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        print_profile(out.read_text(), top, "coffer run -- true, start to exec")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("read", "write", "cli"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--raw", type=Path, help="also keep py-spy's raw stacks in this file")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    parser.add_argument(
        "--token",
        choices=("bootstrap", "machine"),
        default="bootstrap",
        help="read with the bootstrap token or with a machine token with scopes",
    )
    parser.add_argument(
        "--limits-on", action="store_true", help="API rate limits on (set high), as LIMITS_HIGH"
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run the server on this PostgreSQL (in a fresh schema), e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    )
    args = parser.parse_args()
    if args.what in ("read", "write"):
        profile_load(
            args.what,
            args.seconds,
            args.top,
            args.loadgen,
            args.connections,
            args.raw,
            args.gil,
            args.postgres,
            args.token,
            args.limits_on,
        )
    else:
        profile_cli(args.top)


if __name__ == "__main__":
    main()
