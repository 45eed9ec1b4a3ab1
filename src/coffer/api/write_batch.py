"""Group commit for the hot path's plain secret writes.

Writes that arrive together (in one turn of the event loop, or while the previous batch is
being written) go to ``SecretService.set_many`` as one transaction, each in its own
savepoint: one COMMIT (one WAL append on SQLite, one flush on PostgreSQL) for all of them,
and each request still gets exactly its own result or error. Nothing is answered before
its batch has committed.
"""

from __future__ import annotations

import asyncio

from coffer.api.context import BlockingRunner
from coffer.domain.errors import CofferError
from coffer.domain.models import WriteResult
from coffer.services.secrets import SecretService, SecretWrite

MAX_BATCH = 64


class WriteBatcher:
    """Collects plain writes and commits them in groups; one instance per event loop."""

    def __init__(self, secrets: SecretService, runner: BlockingRunner) -> None:
        self._secrets = secrets
        self._runner = runner
        self._pending: list[tuple[SecretWrite, asyncio.Future[WriteResult]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def write(self, write: SecretWrite) -> WriteResult:
        """Returns the write's result once its batch has committed; raises the CofferError
        that refused it, or the database's error when the batch could not be written."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[WriteResult] = loop.create_future()
        self._pending.append((write, done))
        if self._draining is None:
            # A task starts on the next turn of the loop: every write already on its way
            # in this turn joins the first batch.
            self._draining = loop.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    outcomes = await self._runner(
                        self._secrets.set_many, [write for write, _ in batch]
                    )
                except Exception as error:  # noqa: BLE001 - handed to every waiting request
                    _fail(batch, error)
                    continue
                except asyncio.CancelledError:  # shutting down: nobody waits for ever
                    _fail([*batch, *self._pending], asyncio.CancelledError())
                    self._pending = []
                    raise
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if done.done():
                        continue
                    if isinstance(outcome, CofferError):
                        done.set_exception(outcome)
                    else:
                        done.set_result(outcome)
        finally:
            self._draining = None


def _fail(
    batch: list[tuple[SecretWrite, asyncio.Future[WriteResult]]], error: BaseException
) -> None:
    for _, done in batch:
        if not done.done():
            done.set_exception(error)
