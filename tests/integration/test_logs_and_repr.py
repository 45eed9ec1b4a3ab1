"""Plaintext never reaches log records or the ``repr`` of what the services hand back."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from coffer.bootstrap import build_services
from coffer.domain.errors import CofferError
from coffer.domain.secret_value import SecretValue
from tests.conftest import Vault
from tests.integration.api_helpers import PROJECTS, env_path, put_secret, secret_path

DEV = "development"
LOGLEAK = "LOGLEAK-8e2b71d4"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Captures every logger at DEBUG from before the vault is built until the test ends,
    SQLAlchemy's statement, parameter and row logging included."""
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "alembic", "httpx"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def _all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    parts: list[str] = []
    for phase in ("setup", "call"):
        for record in caplog.get_records(phase):
            parts.append(record.getMessage())
            parts.append(repr(record.args))
            parts.append(str(record.exc_text or ""))
            if record.exc_info and record.exc_info[1] is not None:
                parts.append(repr(record.exc_info[1]))
    parts.append(caplog.text)
    return "\n".join(parts)


def test_no_log_record_contains_a_value(
    debug_logs: pytest.LogCaptureFixture, api: TestClient, vault: Vault, project: str
) -> None:
    """Set, get, export, import, errors and service calls log nothing holding a value."""
    put_secret(api, project, DEV, "db/password", f"{LOGLEAK}-set", comment="logged comment")
    put_secret(api, project, DEV, "db/password", f"{LOGLEAK}-update")
    put_secret(api, project, DEV, "REF", f"{LOGLEAK}-ref-${{db/password}}")
    assert api.get(secret_path(project, DEV, "db/password")).status_code == 200
    assert api.get(secret_path(project, DEV, "db/password"), params={"version": 1}).status_code
    assert api.get(secret_path(project, DEV, "REF"), params={"expand": "true"}).status_code == 200
    for fmt in ("dotenv", "json", "yaml"):
        response = api.get(f"{env_path(project, DEV)}/export", params={"format": fmt})
        assert response.status_code == 200
        assert LOGLEAK in response.text
    api.post(f"{env_path(project, 'staging')}/import", json={"content": f"I={LOGLEAK}-imp\n"})
    api.post(f"{PROJECTS}/{project}/promote", json={"from": DEV, "to": "staging"})
    api.put(secret_path(project, DEV, "bad..key"), json={"value": f"{LOGLEAK}-badkey"})
    api.put(secret_path(project, DEV, "BIG"), json={"value": LOGLEAK + "x" * 70000})
    api.put(secret_path(project, DEV, "NUL"), json={"value": f"{LOGLEAK}\x00"})
    put_secret(api, project, "production", "CYCLE", f"{LOGLEAK}-${{CYCLE}}")
    api.get(secret_path(project, "production", "CYCLE"), params={"expand": "true"})
    api.get(f"{env_path(project, 'production')}/export")
    services, ctx = vault.services, vault.ctx
    services.secrets.set(ctx, project, DEV, "SVC", SecretValue(f"{LOGLEAK}-svc"))
    services.secrets.get(ctx, project, DEV, "SVC")
    services.transfer.export(ctx, project, DEV)

    text = _all_log_text(debug_logs)
    # The capture works: requests and SQL were logged (names and ciphertexts, not values).
    assert "db/password" in text
    assert "INSERT INTO secret_versions" in text
    assert LOGLEAK not in text
    assert vault.token not in text


def _root_key_text(vault: Vault) -> str:
    return Path(vault.settings.root_key_file).read_text(encoding="ascii").strip()


def test_repr_of_service_results_hides_values(vault: Vault) -> None:
    """repr, str and format of RevealedSecret, SecretValue and reports never show a value."""
    services, ctx = vault.services, vault.ctx
    services.projects.create(ctx, "web")
    value = SecretValue(f"{LOGLEAK}-repr")
    objects: list[object] = [
        value,
        services.secrets.set(ctx, "web", DEV, "K", value),
        services.secrets.get(ctx, "web", DEV, "K"),
        services.secrets.get(ctx, "web", DEV, "K", version=1, expand=True),
        services.transfer.export(ctx, "web", DEV),
        services.transfer.import_secrets(ctx, "web", "staging", {"K": value}),
        services.transfer.diff(ctx, "web", DEV, "staging"),
        services.transfer.promote(ctx, "web", DEV, "production"),
        services.secrets.history(ctx, "web", DEV, "K"),
    ]
    revealed = services.secrets.get(ctx, "web", DEV, "K")
    assert revealed.value.reveal() == f"{LOGLEAK}-repr"
    for obj in objects:
        for text in (repr(obj), str(obj), f"{obj}", f"{obj!r}"):
            assert LOGLEAK not in text, type(obj).__name__


def test_repr_of_errors_hides_values(vault: Vault) -> None:
    """Errors raised for bad values say what is wrong without repeating the value."""
    services, ctx = vault.services, vault.ctx
    services.projects.create(ctx, "web")
    services.secrets.set(ctx, "web", DEV, "CYCLE", SecretValue(f"{LOGLEAK}-${{CYCLE}}"))
    attempts: list[Callable[[], object]] = [
        lambda: services.secrets.set(ctx, "web", DEV, "K", SecretValue(LOGLEAK * 5000)),
        lambda: services.secrets.set(ctx, "web", DEV, "K", SecretValue(f"{LOGLEAK}\x00")),
        lambda: services.secrets.set(ctx, "web", DEV, "a..b", SecretValue(LOGLEAK)),
        lambda: services.secrets.get(ctx, "web", DEV, "CYCLE", expand=True),
    ]
    for attempt in attempts:
        with pytest.raises(CofferError) as raised:
            attempt()
        assert LOGLEAK not in repr(raised.value)
        assert LOGLEAK not in str(raised.value)
        assert LOGLEAK not in str(raised.value.to_dict())


def test_repr_of_services_and_settings_hides_key_material(vault: Vault) -> None:
    """Services and Settings (with COFFER_ROOT_KEY set) never print the root key or token."""
    root_key = _root_key_text(vault)
    settings = vault.settings.with_overrides(root_key_b64=root_key)
    services = build_services(settings)
    try:
        services.projects.create(vault.ctx, "web")
        services.secrets.set(vault.ctx, "web", DEV, "K", SecretValue(f"{LOGLEAK}-svc"))
        services.secrets.get(vault.ctx, "web", DEV, "K")
        for obj in (
            settings,
            services,
            vault.services,
            services.secrets,
            services.transfer,
            services.projects,
            services.auth,
            services.engine,
        ):
            for text in (repr(obj), str(obj)):
                assert root_key not in text, type(obj).__name__
                assert vault.token not in text, type(obj).__name__
                assert LOGLEAK not in text, type(obj).__name__
    finally:
        services.close()
