"""Running a use case again when the database rolled it back for a conflict.

Reads that count against several limited secrets lock their rows in an order the data decides
(a reference expanded after the secret that holds it; an export in key order). Such reads take
the organization's counted-reads lock first (``storage.database.serialize_counted_reads``), but
a bulk write (import, promote) locking the same rows in another order can still deadlock with
one on PostgreSQL. The database then rolls one back whole (its counts and audit entries with
it), and running it again is safe.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from coffer.domain.errors import Contention
from coffer.storage.database import is_transient_conflict

P = ParamSpec("P")
R = TypeVar("R")

ATTEMPTS = 4
_BACKOFF_SECONDS = 0.01


def retry_on_conflict(func: Callable[P, R]) -> Callable[P, R]:
    """Wraps a use case that owns its transaction: a deadlock or serialization failure runs
    it again (up to ``ATTEMPTS`` times, with a short growing pause); when every attempt
    conflicts it raises Contention. Other errors pass through at once."""

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        for attempt in range(ATTEMPTS):
            try:
                return func(*args, **kwargs)
            except Exception as error:
                if not is_transient_conflict(error):
                    raise
            time.sleep(_BACKOFF_SECONDS * 2**attempt)
        raise Contention(
            "the database rolled this request back for conflicting with others; retry it"
        )

    return run
