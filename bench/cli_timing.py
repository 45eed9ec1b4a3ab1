"""Wall time of commands, as a user at a shell sees it: start to exit of the subprocess.

Each run is timed with ``time.perf_counter`` around the subprocess, so the figure includes
interpreter start-up, imports, the HTTP round trip(s) and the exec of the child command. The
child's CPU time (user + system, from ``wait4``) is recorded too: unlike wall time it barely
moves when other work on a shared machine takes the CPU. Commands are run interleaved (A, B, C,
A, B, C, ...) so such drift hits all of them alike, after a few untimed rounds that warm the
page cache and write ``.pyc`` files, as on any machine where the CLI has been used before.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Timing:
    """Wall and CPU times of repeated runs of one command, in milliseconds."""

    label: str
    argv: list[str]
    runs: int
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    cpu_median_ms: float
    samples_ms: list[float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    # nearest rank: with 15 runs this is the 14th fastest
    rank = max(0, min(len(ordered) - 1, -(-9 * len(ordered) // 10) - 1))
    return ordered[rank]


def _run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Returns (wall ms, CPU ms) of one run; raises RuntimeError when it fails."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    errors = proc.stderr.read()  # the child closes it at exit (exec keeps it open till then)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - started) * 1000
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited with {proc.returncode}: "
            f"{errors.decode(errors='replace').strip()}"
        )
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def time_commands(
    commands: list[tuple[str, list[str]]],
    env: dict[str, str],
    *,
    runs: int = 15,
    warmups: int = 2,
) -> list[Timing]:
    """Runs every command ``warmups`` + ``runs`` times, interleaved, and returns each one's
    statistics over the timed runs. Raises RuntimeError when a run fails (a failing command's
    time means nothing)."""
    walls: list[list[float]] = [[] for _ in commands]
    cpus: list[list[float]] = [[] for _ in commands]
    for index in range(warmups + runs):
        for slot, (_, argv) in enumerate(commands):
            wall, cpu = _run_once(argv, env)
            if index >= warmups:
                walls[slot].append(wall)
                cpus[slot].append(cpu)
    return [
        Timing(
            label=label,
            argv=argv,
            runs=runs,
            median_ms=statistics.median(walls[slot]),
            p90_ms=_p90(walls[slot]),
            min_ms=min(walls[slot]),
            max_ms=max(walls[slot]),
            cpu_median_ms=statistics.median(cpus[slot]),
            samples_ms=[round(s, 2) for s in walls[slot]],
        )
        for slot, (label, argv) in enumerate(commands)
    ]
