"""Group commit for the audit entries of the hot read path.

A read may answer only once its ``secret.read`` entry is durable. Committing one transaction
per read costs more than the read itself, so reads hand their entries to this batcher and
wait: every entry that arrives while a batch is being written joins the next one, and each
batch is one INSERT of many rows and one COMMIT, written on a dedicated thread. The waiting
reads are released when their batch has committed, or get its exception when it failed (the
value is then never sent). Under load a batch holds as many entries as reads arrived during
the previous commit, so the cost per read falls as load rises; alone, a read waits for one
commit, as before.

Durability is the database's: on SQLite a committed batch is in the write-ahead log
(``synchronous=NORMAL``: it survives a crash of coffer or of any process; a power loss
may lose the last commits before a WAL checkpoint), on PostgreSQL it is flushed per commit.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.storage.raw_statements import raw_transaction

MAX_BATCH = 512


class AuditBatcher:
    """Writes audit rows in batches, one transaction each, for coroutines that await them.

    One instance serves one event loop (the server's); ``close`` stops its writer thread.
    """

    def __init__(self, engine: Engine, writer: AuditWriter) -> None:
        self._engine = engine
        self._writer = writer
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writing = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="coffer-audit-batch")

    async def append(self, row: dict[str, Any]) -> None:
        """Returns once ``row`` (from ``AuditWriter.entry``) is committed; raises the
        database's error when its batch could not be written."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((row, done))
        if not self._writing:
            self._writing = True
            # Let every read already scheduled in this turn of the loop join the batch.
            loop.call_soon(self._write_next, loop)
        await done

    def close(self) -> None:
        """Stops the writer thread once the batch in flight is written."""
        self._executor.shutdown(wait=True)

    def _write_next(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        if not batch:
            self._writing = False
            return
        try:
            written = loop.run_in_executor(self._executor, self._write, [row for row, _ in batch])
        except RuntimeError as closed:  # the executor was shut down: nothing is written
            self._fail([*batch, *self._pending], closed)
            self._pending, self._writing = [], False
            return
        written.add_done_callback(lambda result: self._release(loop, batch, result))

    @staticmethod
    def _fail(
        batch: list[tuple[dict[str, Any], asyncio.Future[None]]], error: BaseException
    ) -> None:
        for _row, done in batch:
            if not done.done():
                done.set_exception(error)

    def _release(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[dict[str, Any], asyncio.Future[None]]],
        result: asyncio.Future[None],
    ) -> None:
        error: BaseException | None = (
            asyncio.CancelledError() if result.cancelled() else result.exception()
        )
        for _row, done in batch:
            if done.done():
                continue
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
        self._write_next(loop)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        with raw_transaction(self._engine) as tx:
            self._writer.append_rows(self._engine, tx, rows)
