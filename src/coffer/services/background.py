"""Background work of a running server: sealing the audit log, retention, and the consumers
of the sealed log (SIEM streams, webhooks, anomaly detection).

Each job runs in its own daemon thread on a fixed interval, so a slow or failing sink never
holds up requests or the other jobs. A job that raises is logged (without the message, which
could name a URL's credentials) and tried again on its next turn.

With ``JobLeases`` several nodes on one database share the jobs: each job is done by exactly
one node, the holder of its lease (a row of ``job_leases``, see ``storage.lease_store``).

- Before every step the job's thread takes or renews its lease for ``JobLeases.seconds``
  and runs the step only when that succeeded. A holder keeps renewing while it waits for
  the next step (at least every third of the lease), so it keeps the job for as long as it
  lives.
- A node that does not hold a job checks again every ``min(interval, seconds / 3)``
  seconds. It takes the job once the holder's lease has run out: at once when the holder
  stopped (``stop`` releases its leases), ``seconds`` after the holder's last renewal when
  it died (a SIGKILL releases nothing).
- The contract of a step: it must end well within the lease, since nothing renews the lease
  while a step runs. Keep ``seconds`` several times the longest step (the default of 30 s
  against steps that take one batch and time out their network calls in a few seconds). A
  step that outlives its lease is logged as a warning: another node may have started the
  same job meanwhile.
- A lease that cannot be checked (the database is down) counts as not held: the step waits,
  the error is logged (its type, never its message) and the lease is tried again on the next
  turn. Nothing about leases ends a job's thread.

``before_start`` work runs on every node that starts, so it must be idempotent under
concurrency (two nodes may run it at the same moment).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from coffer.domain.access import Action
from coffer.domain.models import CallContext
from coffer.services.access import AccessGate
from coffer.storage import lease_store

_log = logging.getLogger("coffer.background")


@dataclass(frozen=True)
class Job:
    """``step`` runs every ``interval`` seconds; it returns True when more work is waiting
    (then it runs again at once)."""

    name: str
    interval: float
    step: Callable[[], bool]


@dataclass(frozen=True)
class JobLeases:
    """Where the jobs' leases live (``engine``), this node's name in them (``holder``, unique
    to the process), each lease's length in seconds, and the gate that says who may see
    them."""

    engine: Engine
    holder: str
    seconds: float
    gate: AccessGate


@dataclass(frozen=True)
class JobLease:
    """Job ``job``'s lease: its holder and when it runs out; ``held`` is False once it has
    (then no node is doing the job, or its holder died and another will take it)."""

    job: str
    holder: str
    expires_at: float
    held: bool


class BackgroundJobs:
    """Starts and stops the server's jobs (see the module docstring for leases)."""

    def __init__(self, jobs: list[Job] | None = None, *, leases: JobLeases | None = None) -> None:
        self._jobs: list[Job] = list(jobs or [])
        self._leases = leases
        self._before_start: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._threads: list[tuple[Job, threading.Thread]] = []
        self._held: set[str] = set()
        self._held_lock = threading.Lock()

    def add(self, job: Job) -> None:
        """Registers a job (before ``start``)."""
        self._jobs.append(job)

    def before_start(self, prepare: Callable[[], None]) -> None:
        """Registers work to do once, in ``start``, before any job runs. It runs on every
        node, so it must be idempotent even when two nodes run it at the same moment."""
        self._before_start.append(prepare)

    def before_start_only(self) -> None:
        """Runs the ``before_start`` work without starting the jobs (``start`` does both)."""
        for prepare in self._before_start:
            prepare()

    @property
    def names(self) -> list[str]:
        """The registered jobs' names."""
        return [job.name for job in self._jobs]

    @property
    def held(self) -> set[str]:
        """The names of the jobs whose lease this node held at its last check."""
        with self._held_lock:
            return set(self._held)

    def start(self) -> None:
        """Starts one thread per job; idempotent."""
        if self._threads:
            return
        self.before_start_only()
        self._stop.clear()
        for job in self._jobs:
            thread = threading.Thread(
                target=self._loop, args=(job,), name=f"coffer-{job.name}", daemon=True
            )
            thread.start()
            self._threads.append((job, thread))

    def stop(self, timeout: float = 5.0, *, release: bool = True) -> None:
        """Asks every job to stop and waits up to ``timeout`` seconds for each; then releases
        the leases of the jobs that stopped, so another node takes them at once. A job still
        in its step keeps its lease until it runs out. ``release=False`` leaves every lease to
        run out, as a node that was killed does."""
        self._stop.set()
        stopped: list[str] = []
        for job, thread in self._threads:
            thread.join(timeout)
            if not thread.is_alive():
                stopped.append(job.name)
        self._threads.clear()
        with self._held_lock:
            releasing = sorted(self._held.intersection(stopped)) if release else []
            self._held.clear()
        if releasing:
            self._release(releasing)

    def leases(self, ctx: CallContext) -> list[JobLease]:
        """Returns who holds each job's lease, by job name, as the database says (every node's
        jobs, not only this node's). Requires ``audit.view`` (admins and owners); raises
        AccessDenied otherwise. Empty when the jobs run without leases (one process)."""
        if self._leases is None:
            return []
        self._leases.gate.require(ctx, Action.AUDIT_VIEW)
        with self._leases.engine.connect() as conn:
            now = lease_store.database_now(conn)
            rows = lease_store.holders(conn)
        return [
            JobLease(row.name, row.holder, row.expires_at, row.expires_at >= now) for row in rows
        ]

    def _loop(self, job: Job) -> None:
        leases = self._leases
        due = 0.0  # time.monotonic() when the next step is due
        if leases is None:
            while not self._stop.is_set():
                waiting = due - time.monotonic()
                if waiting > 0:
                    self._stop.wait(waiting)
                    continue
                due = self._step(job, None)
            return
        retry = min(job.interval, leases.seconds / 3)
        check_at = 0.0  # when to take or renew the lease even if no step is due
        holding = False
        while not self._stop.is_set():
            waiting = (min(due, check_at) if holding else check_at) - time.monotonic()
            if waiting > 0:
                self._stop.wait(waiting)
                continue
            asked = time.monotonic()
            holding = self._hold(job, leases)
            if not holding:
                check_at = time.monotonic() + retry
                continue
            check_at = asked + leases.seconds / 3
            if time.monotonic() >= due:
                due = self._step(job, leases)

    def _step(self, job: Job, leases: JobLeases | None) -> float:
        """Runs one step; returns when the next one is due."""
        started = time.monotonic()
        more = False
        try:
            more = job.step()
        except Exception as exc:  # noqa: BLE001 - the outermost edge of a job
            _log.warning("background job %s failed: %s", job.name, type(exc).__name__)
        ended = time.monotonic()
        if leases is not None and ended - started > leases.seconds:
            _log.warning(
                "background job %s: a step took %.1f s, longer than its %.0f s lease; another "
                "node may have run the job meanwhile (raise COFFER_JOB_LEASE_SECONDS)",
                job.name,
                ended - started,
                leases.seconds,
            )
        return ended if more else ended + job.interval

    def _hold(self, job: Job, leases: JobLeases) -> bool:
        """Takes or renews the job's lease; False when another node holds it or the lease
        could not be checked."""
        try:
            with leases.engine.begin() as conn:
                now = lease_store.database_now(conn)
                held = lease_store.acquire(conn, job.name, leases.holder, now, leases.seconds)
        except Exception as exc:  # noqa: BLE001 - the outermost edge of a job's thread
            _log.warning(
                "background job %s: its lease could not be checked: %s",
                job.name,
                type(exc).__name__,
            )
            held = False
        with self._held_lock:
            had = job.name in self._held
            if held:
                self._held.add(job.name)
            else:
                self._held.discard(job.name)
        if held != had:
            _log.info(
                "background job %s: %s %s",
                job.name,
                "taken by" if held else "no longer held by",
                leases.holder,
            )
        return held

    def _release(self, names: list[str]) -> None:
        assert self._leases is not None
        try:
            with self._leases.engine.begin() as conn:
                for name in names:
                    lease_store.release(conn, name, self._leases.holder)
        except Exception as exc:  # noqa: BLE001 - they run out by themselves
            _log.warning("background job leases were not released: %s", type(exc).__name__)
