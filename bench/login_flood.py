"""A bounded login flood: password logins against one account, from a few concurrent clients.

Each login hashes the password with Argon2id (OWASP parameters: 19 MiB, 2 passes, about 30 ms
of one core) in the server's thread pool, at most ``COFFER_HASH_CONCURRENCY`` at once. The
flood is there to show what that does to reads running at the same time; it is bounded twice:
at most ``attempts`` attempts in all, and no attempt starts after ``seconds``. It only ever
talks to the benchmark's own server on 127.0.0.1.

Every other attempt uses a wrong password, so half the attempts take the failure path (hash,
``auth.login_failed`` audit entry, 401) and half the success path (hash, new CLI token,
``auth.login`` audit entry, 200). The server must run with ``COFFER_LOGIN_RATE_LIMIT=off`` and
``COFFER_LOGIN_FAILURE_LIMIT=off`` so that no attempt is refused before it is hashed; any other
answer than 200 or 401 is counted as an error.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx


@dataclass
class FloodResult:
    """What the flood did. Times are ``time.monotonic`` seconds; latencies milliseconds."""

    attempts: int
    succeeded: int
    refused: int
    errors: int
    clients: int
    started: float
    finished: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def per_second(self) -> float:
        return self.attempts / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = self.seconds
        data["per_second"] = self.per_second
        return data


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def login_flood(
    base_url: str,
    email: str,
    password: str,
    *,
    attempts: int,
    clients: int,
    seconds: float,
) -> FloodResult:
    """Runs ``clients`` threads, each with its own keep-alive ``httpx.Client``, that together
    make at most ``attempts`` login attempts (even-numbered with ``password``, odd-numbered with
    a wrong one) and start none after ``seconds``; returns when the last answer is in."""
    numbers = itertools.count()  # next() on it is atomic under the GIL
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    started = time.monotonic()
    stop_at = started + seconds

    def client_loop() -> None:
        with httpx.Client(base_url=base_url, timeout=60.0) as client:
            while time.monotonic() < stop_at:
                number = next(numbers)
                if number >= attempts:
                    return
                body = {
                    "email": email,
                    "password": password if number % 2 == 0 else password + " (wrong)",
                }
                sent = time.perf_counter()
                try:
                    status = str(client.post("/api/v1/auth/login", json=body).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - sent
                with lock:
                    latencies.append(elapsed)
                    statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = time.monotonic()
    latencies.sort()
    succeeded = statuses.get("200", 0)
    refused = statuses.get("401", 0)
    return FloodResult(
        attempts=len(latencies),
        succeeded=succeeded,
        refused=refused,
        errors=len(latencies) - succeeded - refused,
        clients=clients,
        started=started,
        finished=finished,
        p50_ms=1000 * _percentile(latencies, 50),
        p99_ms=1000 * _percentile(latencies, 99),
        max_ms=1000 * latencies[-1] if latencies else float("nan"),
        statuses=statuses,
    )
