"""Use cases rolled back by a database conflict run again; anything else passes through."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from coffer.domain.errors import Contention, NotFound
from coffer.services.retries import ATTEMPTS, retry_on_conflict
from coffer.storage.database import is_transient_conflict


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"driver error {sqlstate}")
        self.sqlstate = sqlstate


def _conflict(sqlstate: str) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("UPDATE secrets ...", {}, _DriverError(sqlstate))


@pytest.mark.parametrize(
    ("sqlstate", "transient"), [("40P01", True), ("40001", True), ("57014", False)]
)
def test_only_deadlocks_and_serialization_failures_are_transient(
    sqlstate: str, transient: bool
) -> None:
    assert is_transient_conflict(_conflict(sqlstate)) is transient
    assert is_transient_conflict(ValueError("40P01")) is False


def test_a_deadlocked_call_runs_again_until_it_succeeds() -> None:
    calls: list[int] = []

    @retry_on_conflict
    def read() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _conflict("40P01")
        return "value"

    assert read() == "value"
    assert len(calls) == 3


def test_a_call_that_always_conflicts_ends_in_contention() -> None:
    calls: list[int] = []

    @retry_on_conflict
    def read() -> str:
        calls.append(1)
        raise _conflict("40001")

    with pytest.raises(Contention) as raised:
        read()
    assert len(calls) == ATTEMPTS
    assert raised.value.code == "contention"


def test_other_errors_pass_through_at_once() -> None:
    calls: list[int] = []

    @retry_on_conflict
    def read() -> str:
        calls.append(1)
        raise NotFound("secret 'K' not found", field="key")

    with pytest.raises(NotFound):
        read()
    assert len(calls) == 1
    with pytest.raises(sa.exc.OperationalError):
        retry_on_conflict(lambda: (_ for _ in ()).throw(_conflict("57014")))()
