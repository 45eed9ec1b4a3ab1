"""The driver-level transaction of the hot read path commits whole or not at all."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from coffer.storage.raw_statements import CompiledStatement, raw_transaction
from coffer.storage.tables import vault_meta
from tests.conftest import Vault

_INSERT = sa.insert(vault_meta).values(name=sa.bindparam("name"), value=sa.bindparam("value"))


def _names(vault: Vault) -> set[str]:
    with vault.services.engine.connect() as conn:
        return set(conn.execute(sa.select(vault_meta.c.name)).scalars())


def test_an_exception_rolls_back_and_leaves_the_pool_usable(vault: Vault) -> None:
    """A block that raises writes nothing, and the next transaction commits normally."""
    engine = vault.services.engine
    statement = CompiledStatement(_INSERT, engine)
    with pytest.raises(RuntimeError), raw_transaction(engine) as tx:
        tx.execute(statement, {"name": "rolled-back", "value": "x"})
        raise RuntimeError("boom")
    with raw_transaction(engine) as tx:
        tx.execute(statement, {"name": "committed", "value": "y"})
    names = _names(vault)
    assert "committed" in names
    assert "rolled-back" not in names
