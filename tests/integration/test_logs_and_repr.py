"""Plaintext never reaches log records or the ``repr`` of what the services hand back."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from coffer.bootstrap import build_services
from coffer.crypto.share_cipher import decode_share_key, open_share, seal_share, share_proof
from coffer.domain.errors import CofferError
from coffer.domain.models import EphemeralKind
from coffer.domain.read_limits import ReadLimits, parse_limit_change
from coffer.domain.secret_value import SecretValue
from coffer.storage import ephemeral_store
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


# -- TTL, read limits, ephemeral secrets and shares ---------------------------------------------


def _share_parts(plaintext: bytes) -> tuple[str, bytes, str]:
    """(key text, envelope, proof) of a share sealed as the CLI seals it."""
    key_text, envelope = seal_share(plaintext)
    return key_text, envelope, share_proof(decode_share_key(key_text))


def test_no_log_record_contains_a_limited_ephemeral_or_shared_value(
    debug_logs: pytest.LogCaptureFixture, api: TestClient, vault: Vault, project: str
) -> None:
    """Limited vault secrets (burned, sealed, reset, exported, referenced), ephemeral secrets
    (created, read, replaced, refused, deleted) and shares (created, previewed, revealed)
    log no value, no share key and no proof."""
    env = env_path(project, DEV)
    put_secret(api, project, DEV, "PLAIN", f"{LOGLEAK}-plain")
    for key, body in (
        ("ONCE", {"max_reads": 1}),
        ("SEALED", {"max_reads": 1, "delete": False}),
        ("TIMED", {"ttl_seconds": "5m", "max_reads": 3}),
    ):
        response = api.put(
            secret_path(project, DEV, key), json={"value": f"{LOGLEAK}-{key}", **body}
        )
        assert response.status_code == 200, response.text
    put_secret(api, project, DEV, "REF", "${TIMED}")
    assert api.get(secret_path(project, DEV, "ONCE")).status_code == 200
    assert api.get(secret_path(project, DEV, "ONCE")).status_code == 404
    assert api.get(secret_path(project, DEV, "SEALED")).status_code == 200
    assert api.get(secret_path(project, DEV, "SEALED")).status_code == 410
    assert api.head(secret_path(project, DEV, "TIMED")).status_code == 200
    assert api.patch(secret_path(project, DEV, "SEALED"), json={"reset": True}).status_code == 200
    assert api.get(secret_path(project, DEV, "REF"), params={"expand": "true"}).status_code == 200
    assert LOGLEAK in api.get(f"{env}/export", params={"format": "json"}).text
    api.put(secret_path(project, DEV, "BIG"), json={"value": LOGLEAK * 5000, "max_reads": 1})
    api.put(secret_path(project, DEV, "BADTTL"), json={"value": LOGLEAK, "ttl_seconds": "soon"})

    ephemeral = "/api/v1/ephemeral"
    created = api.post(ephemeral, json={"key": "eph/k", "value": f"{LOGLEAK}-eph", "max_reads": 3})
    assert created.status_code == 201, created.text
    assert api.post(ephemeral, json={"key": "eph/k", "value": f"{LOGLEAK}-dup"}).status_code == 409
    assert api.get(f"{ephemeral}/eph/k").json()["value"] == f"{LOGLEAK}-eph"
    assert api.patch(f"{ephemeral}/eph/k", json={"value": f"{LOGLEAK}-new"}).status_code == 200
    assert api.get(f"{ephemeral}/eph/k").json()["value"] == f"{LOGLEAK}-new"
    refused: list[dict[str, object]] = [
        {"key": "eph/big", "value": LOGLEAK * 5000},
        {"key": "eph/nul", "value": f"{LOGLEAK}\x00"},
        {"key": "eph..bad", "value": LOGLEAK},
        {"key": "eph/ttl", "value": LOGLEAK, "ttl_seconds": 0},
    ]
    for body in refused:
        assert api.post(ephemeral, json=body).status_code in (400, 413)
    assert api.delete(f"{ephemeral}/eph/k").status_code == 200

    key_text, envelope, proof = _share_parts(f"{LOGLEAK}-share".encode())
    share = api.post(
        "/api/v1/shares",
        json={"ciphertext": base64.b64encode(envelope).decode(), "proof": proof, "max_reads": 2},
    )
    assert share.status_code == 201, share.text
    token = share.json()["token"]
    anonymous = TestClient(api.app)
    assert anonymous.get(f"/s/{token}").status_code == 200
    assert anonymous.head(f"/api/v1/shares/{token}").status_code == 200
    assert (
        anonymous.post(f"/api/v1/shares/{token}/reveal", json={"proof": "A" * 43}).status_code
        == 404
    )
    revealed = anonymous.post(f"/api/v1/shares/{token}/reveal", json={"proof": proof})
    assert open_share(key_text, base64.b64decode(revealed.json()["ciphertext"])) == (
        f"{LOGLEAK}-share".encode()
    )

    services, ctx = vault.services, vault.ctx
    services.ephemeral.create(ctx, "svc/k", SecretValue(f"{LOGLEAK}-svc"), ReadLimits(max_reads=2))
    services.ephemeral.read(ctx, "svc/k")
    services.pruner.prune(ctx)

    text = _all_log_text(debug_logs)
    assert "INSERT INTO ephemeral_secrets" in text  # the capture saw the SQL
    assert LOGLEAK not in text
    assert key_text not in text
    assert proof not in text
    assert vault.token not in text


def test_repr_of_limited_and_ephemeral_results_hides_values(vault: Vault) -> None:
    """repr and str of what the services return for limited secrets, ephemeral secrets and
    shares, and of the stored ephemeral row (which holds only ciphertext), show no value."""
    services, ctx = vault.services, vault.ctx
    services.projects.create(ctx, "web")
    limits = ReadLimits(ttl_seconds=3600, max_reads=5, burn=False)
    value = SecretValue(f"{LOGLEAK}-limited")
    objects: list[object] = [
        limits,
        services.secrets.set(ctx, "web", DEV, "K", value, limits=limits),
        services.secrets.get(ctx, "web", DEV, "K"),
        services.secrets.info(ctx, "web", DEV, "K"),
        services.secrets.change_limits(ctx, "web", DEV, "K", parse_limit_change({"reset": True})),
        services.secrets.list_keys(ctx, "web", DEV),
        services.ephemeral.create(ctx, "e/k", SecretValue(f"{LOGLEAK}-eph"), limits),
        services.ephemeral.read(ctx, "e/k"),
        services.ephemeral.info(ctx, "e/k"),
        services.ephemeral.list_secrets(ctx),
        services.ephemeral.update(ctx, "e/k", value=SecretValue(f"{LOGLEAK}-eph-2")),
        services.pruner.prune(ctx),
    ]
    revealed = services.ephemeral.read(ctx, "e/k")
    assert revealed.value.reveal() == f"{LOGLEAK}-eph-2"
    objects.append(revealed)
    key_text, envelope, proof = _share_parts(f"{LOGLEAK}-share".encode())
    created = services.shares.create(ctx, envelope, proof, ReadLimits(max_reads=2))
    opened = services.shares.open(created.token, proof, source_ip=None, user_agent=None)
    objects += [created.info, opened, services.shares.info(created.token)]
    with services.engine.connect() as conn:
        rows = [
            ephemeral_store.find(conn, ctx.actor.org_id, EphemeralKind.SECRET, "e/k"),
            ephemeral_store.find(conn, ctx.actor.org_id, EphemeralKind.SHARE, created.info.key),
        ]
    assert all(row is not None and row.ciphertext for row in rows)
    objects += rows
    for obj in objects:
        for text in (repr(obj), str(obj), f"{obj}", f"{obj!r}"):
            assert LOGLEAK not in text, type(obj).__name__
            assert key_text not in text, type(obj).__name__
            assert proof not in text, type(obj).__name__


def test_repr_of_a_created_share_hides_its_link_token(vault: Vault) -> None:
    """The link token, like an API token, never appears in a repr (a log line of the object
    would hand out the link)."""
    _, envelope, proof = _share_parts(b"token-in-repr")
    created = vault.services.shares.create(vault.ctx, envelope, proof, ReadLimits(max_reads=1))
    for text in (repr(created), str(created)):
        assert created.token not in text


def test_errors_of_ephemeral_writes_hide_values(vault: Vault) -> None:
    """Refused ephemeral writes (too large, NUL, bad name, duplicate, bad limit change) say
    what is wrong without repeating the value."""
    services, ctx = vault.services, vault.ctx
    services.ephemeral.create(ctx, "taken", SecretValue(f"{LOGLEAK}-taken"), ReadLimits())
    attempts: list[Callable[[], object]] = [
        lambda: services.ephemeral.create(ctx, "k", SecretValue(LOGLEAK * 5000), ReadLimits()),
        lambda: services.ephemeral.create(ctx, "k", SecretValue(f"{LOGLEAK}\x00"), ReadLimits()),
        lambda: services.ephemeral.create(ctx, "a..b", SecretValue(LOGLEAK), ReadLimits()),
        lambda: services.ephemeral.create(ctx, "taken", SecretValue(LOGLEAK), ReadLimits()),
        lambda: services.ephemeral.update(ctx, "taken", value=SecretValue(LOGLEAK * 5000)),
        lambda: services.shares.create(ctx, LOGLEAK.encode() * 5000, "A" * 43, ReadLimits()),
    ]
    for attempt in attempts:
        with pytest.raises(CofferError) as raised:
            attempt()
        assert LOGLEAK not in repr(raised.value)
        assert LOGLEAK not in str(raised.value)
        assert LOGLEAK not in str(raised.value.to_dict())
