"""Background work of a running server: sealing the audit log, retention, and the consumers
of the sealed log (SIEM streams, webhooks, anomaly detection).

Each job runs in its own daemon thread on a fixed interval, so a slow or failing sink never
holds up requests or the other jobs. A job that raises is logged (without the message, which
could name a URL's credentials) and tried again on its next turn.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

_log = logging.getLogger("coffer.background")


@dataclass(frozen=True)
class Job:
    """``step`` runs every ``interval`` seconds; it returns True when more work is waiting
    (then it runs again at once)."""

    name: str
    interval: float
    step: Callable[[], bool]


class BackgroundJobs:
    """Starts and stops the server's jobs."""

    def __init__(self, jobs: list[Job] | None = None) -> None:
        self._jobs: list[Job] = list(jobs or [])
        self._before_start: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(self, job: Job) -> None:
        """Registers a job (before ``start``)."""
        self._jobs.append(job)

    def before_start(self, prepare: Callable[[], None]) -> None:
        """Registers work to do once, in ``start``, before any job runs."""
        self._before_start.append(prepare)

    def before_start_only(self) -> None:
        """Runs the ``before_start`` work without starting the jobs (``start`` does both)."""
        for prepare in self._before_start:
            prepare()

    @property
    def names(self) -> list[str]:
        """The registered jobs' names."""
        return [job.name for job in self._jobs]

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
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Asks every job to stop and waits up to ``timeout`` seconds for each."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def _loop(self, job: Job) -> None:
        while not self._stop.is_set():
            more = False
            try:
                more = job.step()
            except Exception as exc:  # noqa: BLE001 - the outermost edge of a job
                _log.warning("background job %s failed: %s", job.name, type(exc).__name__)
            if not more:
                self._stop.wait(job.interval)
