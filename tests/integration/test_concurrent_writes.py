"""Concurrent writers of one key get consecutive versions with no gap, loss or error."""

from __future__ import annotations

import threading

import pytest

from coffer.domain.models import WriteResult
from coffer.domain.secret_value import SecretValue
from tests.conftest import Vault

THREADS = 8
WRITES_PER_THREAD = 10
DEV = "development"


def _hammer(vault: Vault, key: str) -> tuple[list[WriteResult], list[BaseException]]:
    """Runs THREADS threads that each write WRITES_PER_THREAD versions of ``key`` at once."""
    results: list[WriteResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def writer(thread: int) -> None:
        start.wait()
        for i in range(WRITES_PER_THREAD):
            try:
                result = vault.services.secrets.set(
                    vault.ctx, "web", DEV, key, SecretValue(f"t{thread}-w{i}")
                )
            except BaseException as error:  # noqa: BLE001 - every failure is the finding
                with lock:
                    errors.append(error)
            else:
                with lock:
                    results.append(result)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    return results, errors


def _assert_versions(vault: Vault, key: str, first: int, total: int) -> None:
    history = vault.services.secrets.history(vault.ctx, "web", DEV, key)
    assert [v.version for v in history] == list(range(total, 0, -1))
    values = {
        vault.services.secrets.get(vault.ctx, "web", DEV, key, version=n).value.reveal()
        for n in range(first, total + 1)
    }
    expected = {f"t{t}-w{i}" for t in range(THREADS) for i in range(WRITES_PER_THREAD)}
    assert values == expected, "every write must be stored exactly once"


def test_concurrent_writes_of_an_existing_key_number_versions_without_gaps(vault: Vault) -> None:
    """8 threads x 10 writes to an existing key end at versions 1..81 with no error or loss."""
    vault.services.projects.create(vault.ctx, "web")
    vault.services.secrets.set(vault.ctx, "web", DEV, "K", SecretValue("seed"))
    results, errors = _hammer(vault, "K")
    assert errors == []
    assert sorted(r.version for r in results) == list(range(2, 82))
    assert all(r.outcome == "updated" for r in results)
    _assert_versions(vault, "K", first=2, total=81)


def test_concurrent_first_writes_of_a_new_key_number_versions_without_gaps(
    vault: Vault, request: pytest.FixtureRequest
) -> None:
    """8 threads x 10 writes to a key that does not exist yet end at versions 1..80, exactly
    one "created", with no error or loss."""
    vault.services.projects.create(vault.ctx, "web")
    results, errors = _hammer(vault, "NEW")
    assert [type(e).__name__ for e in errors] == []
    assert sorted(r.version for r in results) == list(range(1, 81))
    assert [r.outcome for r in results].count("created") == 1
    _assert_versions(vault, "NEW", first=1, total=80)
