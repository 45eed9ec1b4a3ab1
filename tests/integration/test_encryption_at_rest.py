"""Encryption at rest: no plaintext in the database (files, WAL or columns), ciphertexts bound
to their row, and project deletion destroying its data keys."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import make_url

from coffer.crypto.share_cipher import decode_share_key, seal_share, share_proof
from coffer.crypto.tokens import hash_token
from coffer.storage.tables import (
    data_keys,
    environments,
    ephemeral_secrets,
    projects,
    secret_versions,
    secrets,
)
from tests.conftest import Vault
from tests.integration.api_helpers import (
    PROJECTS,
    all_rows_text,
    env_path,
    get_value,
    put_secret,
    secret_path,
)

DEV = "development"
STG = "staging"

# Distinctive values: each is long and random-looking, so a match in raw bytes is no accident.
AT_REST = {
    "ATREST_DB_PASSWORD": "atrest-Q7vX2pLm9kR4sT1w-password",
    "atrest/api_token": "atrest-ZK3mN8qW5eR2tY6u-token",
    "ATREST_UNICODE": "atrest-ünïcødé-☃-9J4hG7fD2sA5",
    "ATREST_LONG": "atrest-long-" + "Lq8Vb3Nz6Xc1Mw4Ke7" * 200,
}
UPDATED = "atrest-updated-H2jK5lP8oI3uY6tR"
IMPORTED = "atrest-imported-W9eR3tY6uI1oP4aS"


def _store_distinctive_values(api: TestClient, project: str) -> None:
    for key, value in AT_REST.items():
        put_secret(api, project, DEV, key, value, comment="at-rest test")
    put_secret(api, project, DEV, "ATREST_DB_PASSWORD", UPDATED)
    response = api.post(
        f"{env_path(project, DEV)}/import", json={"secrets": {"ATREST_IMPORTED": IMPORTED}}
    )
    assert response.status_code == 200, response.text
    promoted = api.post(
        f"{PROJECTS}/{project}/promote", json={"from": DEV, "to": STG, "keys": ["ATREST_LONG"]}
    )
    assert promoted.status_code == 200, promoted.text
    rollback = api.post(
        f"{env_path(project, DEV)}/rollback/ATREST_DB_PASSWORD", json={"version": 1}
    )
    assert rollback.status_code == 200, rollback.text
    assert get_value(api, project, DEV, "ATREST_DB_PASSWORD") == AT_REST["ATREST_DB_PASSWORD"]


def _plaintexts() -> list[bytes]:
    texts = [*AT_REST.values(), UPDATED, IMPORTED]
    return [t.encode("utf-8") for t in texts]


def _sqlite_files(vault: Vault) -> dict[str, bytes]:
    """The raw bytes of the SQLite database and its -wal and -shm files, read as they are."""
    database = make_url(vault.settings.database_url).database
    assert database is not None
    path = Path(database)
    return {
        suffix or "db": Path(f"{path}{suffix}").read_bytes()
        for suffix in ("", "-wal", "-shm")
        if Path(f"{path}{suffix}").exists()
    }


def _require_sqlite(vault: Vault) -> None:
    if not vault.settings.is_sqlite:
        pytest.skip("raw database files exist only for the embedded SQLite backend")


def test_sqlite_files_and_wal_hold_no_plaintext(
    api: TestClient, vault: Vault, project: str
) -> None:
    """The db, -wal and -shm files, read raw without a checkpoint, contain no stored value."""
    _require_sqlite(vault)
    _store_distinctive_values(api, project)
    files = _sqlite_files(vault)
    assert "db" in files
    everything = b"".join(files.values())
    # The files are the right ones and are read as stored: names are plaintext, so they show.
    assert b"ATREST_DB_PASSWORD" in everything
    assert b"at-rest test" in everything
    for plaintext in _plaintexts():
        for name, content in files.items():
            assert plaintext not in content, f"plaintext found in the {name} file"
    # A distinctive fragment too: no value is stored split or partly.
    assert b"Lq8Vb3Nz6Xc1Mw4Ke7" not in everything


def test_ciphertext_column_holds_only_envelopes(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Every stored version is an AES-GCM envelope (version byte, nonce, tag) with no plaintext."""
    _store_distinctive_values(api, project)
    with vault.services.engine.connect() as conn:
        stored = [bytes(c) for c in conn.execute(sa.select(secret_versions.c.ciphertext)).scalars()]
    assert len(stored) == len(AT_REST) + 1 + 1 + 1 + 1  # + update, import, promote, rollback
    expected_lengths = {1 + 12 + len(p) + 16 for p in _plaintexts()}
    assert {len(c) for c in stored} <= expected_lengths
    assert all(c[0] == 1 for c in stored)
    for ciphertext in stored:
        for plaintext in _plaintexts():
            assert plaintext not in ciphertext
    assert len({c[1:13] for c in stored}) == len(stored), "nonces must never repeat"


def test_no_table_holds_a_plaintext_value(api: TestClient, vault: Vault, project: str) -> None:
    """Selecting every column of every table shows none of the stored values."""
    _store_distinctive_values(api, project)
    text = all_rows_text(vault.services.engine)
    assert "ATREST_DB_PASSWORD" in text
    for plaintext in _plaintexts():
        value = plaintext.decode("utf-8")
        assert value not in text
        assert plaintext.hex() not in text


def _secret_id(vault: Vault, project: str, environment: str, key: str) -> str:
    with vault.services.engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(secrets.c.id)
                .join(environments, environments.c.id == secrets.c.environment_id)
                .join(projects, projects.c.id == environments.c.project_id)
                .where(
                    projects.c.name == project,
                    environments.c.name == environment,
                    secrets.c.key == key,
                )
            ).scalar_one()
        )


def _ciphertext(vault: Vault, secret_id: str, version: int) -> bytes:
    with vault.services.engine.connect() as conn:
        return bytes(
            conn.execute(
                sa.select(secret_versions.c.ciphertext).where(
                    secret_versions.c.secret_id == secret_id, secret_versions.c.version == version
                )
            ).scalar_one()
        )


def _overwrite_ciphertext(vault: Vault, secret_id: str, version: int, ciphertext: bytes) -> None:
    with vault.services.engine.begin() as conn:
        updated = conn.execute(
            sa.update(secret_versions)
            .where(secret_versions.c.secret_id == secret_id, secret_versions.c.version == version)
            .values(ciphertext=ciphertext)
        )
        assert updated.rowcount == 1


SOURCE_VALUE = "swap-source-J8kL2mN5bV7cX1zQ"

# (project, environment, key, version) of each row the source ciphertext is copied onto:
# another key, the same key in another environment, another version of the same key, and the
# same names in another project.
SWAP_TARGETS = [
    ("web", DEV, "TARGET", 1),
    ("web", STG, "SOURCE", 1),
    ("web", DEV, "SOURCE", 2),
    ("other", DEV, "SOURCE", 1),
]


def test_ciphertext_copied_onto_another_row_does_not_decrypt(
    api: TestClient, vault: Vault, project: str
) -> None:
    """A version's ciphertext copied onto another row (other key, environment, version or
    project) makes reading that row fail with 500 "decryption_failed", never the copied value."""
    assert api.post(PROJECTS, json={"name": "other"}).status_code == 201
    put_secret(api, project, DEV, "SOURCE", SOURCE_VALUE)
    put_secret(api, project, DEV, "SOURCE", "swap-source-v2")
    put_secret(api, project, DEV, "TARGET", "swap-target")
    put_secret(api, project, STG, "SOURCE", "swap-staging")
    put_secret(api, "other", DEV, "SOURCE", "swap-other-project")
    source = _ciphertext(vault, _secret_id(vault, project, DEV, "SOURCE"), 1)
    for t_project, t_env, t_key, t_version in SWAP_TARGETS:
        target_id = _secret_id(vault, t_project, t_env, t_key)
        _overwrite_ciphertext(vault, target_id, t_version, source)

    for t_project, t_env, t_key, t_version in SWAP_TARGETS:
        reads = [
            api.get(secret_path(t_project, t_env, t_key)),
            api.get(secret_path(t_project, t_env, t_key), params={"version": t_version}),
            api.get(f"{env_path(t_project, t_env)}/export", params={"format": "json"}),
        ]
        for response in reads:
            assert response.status_code == 500, (t_project, t_env, t_key, response.text)
            assert response.json() == {
                "error": {"code": "decryption_failed", "message": "decryption failed"}
            }
            assert SOURCE_VALUE not in response.text
    # The row the ciphertext came from still opens.
    assert get_value(api, project, DEV, "SOURCE", version=1) == SOURCE_VALUE


def test_tampered_ciphertext_fails_with_decryption_failed(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Flipping one bit of a stored ciphertext makes every read of it answer 500."""
    put_secret(api, project, DEV, "K", "tamper-value-R5tY8uI2")
    secret_id = _secret_id(vault, project, DEV, "K")
    stored = bytearray(_ciphertext(vault, secret_id, 1))
    stored[20] ^= 0x01
    _overwrite_ciphertext(vault, secret_id, 1, bytes(stored))
    response = api.get(secret_path(project, DEV, "K"))
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "decryption_failed"
    assert "tamper-value" not in response.text


def _project_rows(vault: Vault, project_id: str, secret_ids: list[str]) -> dict[str, int]:
    with vault.services.engine.connect() as conn:

        def count(table: sa.Table, where: sa.ColumnElement[bool]) -> int:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(table).where(where)
                ).scalar_one()
            )

        return {
            "data_keys": count(data_keys, data_keys.c.project_id == project_id),
            "environments": count(environments, environments.c.project_id == project_id),
            "secrets": count(secrets, secrets.c.id.in_(secret_ids)),
            "secret_versions": count(secret_versions, secret_versions.c.secret_id.in_(secret_ids)),
        }


def _project_id(vault: Vault, name: str) -> str:
    with vault.services.engine.connect() as conn:
        return str(
            conn.execute(sa.select(projects.c.id).where(projects.c.name == name)).scalar_one()
        )


def test_deleting_a_project_destroys_its_data_keys_and_versions(
    api: TestClient, vault: Vault, project: str
) -> None:
    """After deleting a project no data_keys, environments, secrets or secret_versions row of
    it remains, while another project's rows are untouched."""
    assert api.post(PROJECTS, json={"name": "keep"}).status_code == 201
    put_secret(api, "keep", DEV, "K", "keep-value")
    for key in ("A", "B"):
        put_secret(api, project, DEV, key, f"{key}-1")
        put_secret(api, project, STG, key, f"{key}-2")
    put_secret(api, project, DEV, "A", "A-again")
    web_id, keep_id = _project_id(vault, project), _project_id(vault, "keep")
    web_secrets = [_secret_id(vault, project, env, k) for env in (DEV, STG) for k in ("A", "B")]
    keep_secrets = [_secret_id(vault, "keep", DEV, "K")]
    assert _project_rows(vault, web_id, web_secrets) == {
        "data_keys": 1,
        "environments": 3,
        "secrets": 4,
        "secret_versions": 5,
    }
    assert api.delete(f"{PROJECTS}/{project}").status_code == 204
    assert _project_rows(vault, web_id, web_secrets) == {
        "data_keys": 0,
        "environments": 0,
        "secrets": 0,
        "secret_versions": 0,
    }
    assert _project_rows(vault, keep_id, keep_secrets) == {
        "data_keys": 1,
        "environments": 3,
        "secrets": 1,
        "secret_versions": 1,
    }
    assert get_value(api, "keep", DEV, "K") == "keep-value"


def test_deleting_an_environment_destroys_its_versions(
    api: TestClient, vault: Vault, project: str
) -> None:
    """After deleting an environment none of its secrets' version rows remain."""
    put_secret(api, project, STG, "A", "a1")
    put_secret(api, project, STG, "A", "a2")
    put_secret(api, project, DEV, "A", "dev")
    staging_secret = _secret_id(vault, project, STG, "A")
    assert api.delete(env_path(project, STG)).status_code == 204
    counts = _project_rows(vault, _project_id(vault, project), [staging_secret])
    assert (counts["secrets"], counts["secret_versions"], counts["data_keys"]) == (0, 0, 1)
    assert get_value(api, project, DEV, "A") == "dev"


@pytest.mark.parametrize("what", ["project", "secret"])
def test_deleted_key_material_is_gone_from_the_sqlite_files(
    api: TestClient, vault: Vault, project: str, what: str
) -> None:
    """Once a project (or a secret) is deleted, the raw db, -wal and -shm files no longer hold
    its wrapped data key (or its ciphertexts)."""
    _require_sqlite(vault)
    put_secret(api, project, DEV, "K", "shred-value-1")
    put_secret(api, project, DEV, "K", "shred-value-2")
    secret_id = _secret_id(vault, project, DEV, "K")
    ciphertexts = [_ciphertext(vault, secret_id, v) for v in (1, 2)]
    project_id = _project_id(vault, project)
    with vault.services.engine.connect() as conn:
        wrapped = bytes(
            conn.execute(
                sa.select(data_keys.c.wrapped_key).where(data_keys.c.project_id == project_id)
            ).scalar_one()
        )
    before = b"".join(_sqlite_files(vault).values())
    assert wrapped in before and all(c in before for c in ciphertexts)
    if what == "project":
        assert api.delete(f"{PROJECTS}/{project}").status_code == 204
        destroyed = [wrapped, *ciphertexts]
    else:
        assert api.delete(secret_path(project, DEV, "K")).status_code == 200
        destroyed = ciphertexts
    still_there = [
        (name, index)
        for name, content in _sqlite_files(vault).items()
        for index, material in enumerate(destroyed)
        if material in content
    ]
    assert still_there == [], "deleted key material (file, item) still on disk"


# -- ephemeral secrets, shares and limited secrets ----------------------------------------------

EPHEMERAL = "/api/v1/ephemeral"
EPHEMERAL_VALUES = {
    "atrest/eph": "atrest-eph-P4sW9dX2cV7bN1mQ",
    "atrest/eph-limited": "atrest-eph-limited-T6yU3iO8pA2sD5fG",
}
EPHEMERAL_REPLACED = "atrest-eph-replaced-K1lJ4hG7fD9sA3zX"
SHARED = b"atrest-share-R8tY2uI5oP1aS4dF"


def _ephemeral_ciphertext(vault: Vault, key: str) -> bytes:
    with vault.services.engine.connect() as conn:
        return bytes(
            conn.execute(
                sa.select(ephemeral_secrets.c.ciphertext).where(ephemeral_secrets.c.key == key)
            ).scalar_one()
        )


def _store_ephemeral_values(api: TestClient, project: str) -> tuple[str, str]:
    """Ephemeral secrets (one replaced, one read), a limited vault secret and a share;
    returns the share's key text and link token."""
    for key, value in EPHEMERAL_VALUES.items():
        created = api.post(EPHEMERAL, json={"key": key, "value": value, "max_reads": 5})
        assert created.status_code == 201, created.text
    assert api.get(f"{EPHEMERAL}/atrest/eph-limited").status_code == 200
    replaced = api.patch(f"{EPHEMERAL}/atrest/eph", json={"value": EPHEMERAL_REPLACED})
    assert replaced.status_code == 200, replaced.text
    limited = api.put(
        secret_path(project, DEV, "ATREST_LIMITED"),
        json={"value": UPDATED, "max_reads": 3, "ttl_seconds": 3600},
    )
    assert limited.status_code == 200, limited.text
    assert get_value(api, project, DEV, "ATREST_LIMITED") == UPDATED
    key_text, envelope = seal_share(SHARED)
    share = api.post(
        "/api/v1/shares",
        json={
            "ciphertext": base64.b64encode(envelope).decode(),
            "proof": share_proof(decode_share_key(key_text)),
        },
    )
    assert share.status_code == 201, share.text
    token: str = share.json()["token"]
    return key_text, token


def _ephemeral_plaintexts() -> list[bytes]:
    texts = [*EPHEMERAL_VALUES.values(), EPHEMERAL_REPLACED, UPDATED]
    return [t.encode("utf-8") for t in texts] + [SHARED]


def test_sqlite_files_hold_no_ephemeral_or_shared_plaintext(
    api: TestClient, vault: Vault, project: str
) -> None:
    """The raw db, -wal and -shm files hold no ephemeral value (first or replaced), no
    limited secret's value, and no share plaintext, key text or link token."""
    _require_sqlite(vault)
    key_text, token = _store_ephemeral_values(api, project)
    everything = b"".join(_sqlite_files(vault).values())
    assert b"atrest/eph-limited" in everything  # names are plaintext: the files are the right ones
    assert hash_token(token).encode() in everything
    for plaintext in _ephemeral_plaintexts():
        assert plaintext not in everything, plaintext
    assert key_text.encode() not in everything
    assert decode_share_key(key_text) not in everything
    assert token.encode() not in everything


def test_no_table_holds_an_ephemeral_or_shared_plaintext(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Every column of every table, on every backend: no ephemeral value, share plaintext,
    share key or link token; ephemeral ciphertexts are envelopes with fresh nonces, tagged
    with the root-key generation that sealed them."""
    key_text, token = _store_ephemeral_values(api, project)
    text = all_rows_text(vault.services.engine)
    assert "atrest/eph-limited" in text
    for plaintext in _ephemeral_plaintexts():
        assert plaintext.decode("utf-8") not in text
        assert plaintext.hex() not in text
    for secret in (key_text, decode_share_key(key_text).hex(), token):
        assert secret not in text
    stored = [_ephemeral_ciphertext(vault, key) for key in EPHEMERAL_VALUES]
    # generation tag (marker 0xC7, generation 1), then an envelope (version 1, nonce, ...)
    assert all(c[:6] == b"\xc7\x00\x00\x00\x01\x01" for c in stored)
    assert stored[0][6:18] != stored[1][6:18]


def test_ephemeral_ciphertext_copied_onto_another_row_does_not_decrypt(
    api: TestClient, vault: Vault
) -> None:
    """An ephemeral secret's ciphertext copied onto another's row makes that read fail with
    500 "decryption_failed", never the copied value, and counts no read."""
    for key, value in (("source", SOURCE_VALUE), ("target", "swap-target-eph")):
        body = {"key": key, "value": value, "max_reads": 3}
        assert api.post(EPHEMERAL, json=body).status_code == 201
    source = _ephemeral_ciphertext(vault, "source")
    with vault.services.engine.begin() as conn:
        conn.execute(
            sa.update(ephemeral_secrets)
            .where(ephemeral_secrets.c.key == "target")
            .values(ciphertext=source)
        )
    response = api.get(f"{EPHEMERAL}/target")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "decryption_failed", "message": "decryption failed"}
    }
    assert SOURCE_VALUE not in response.text
    assert api.head(f"{EPHEMERAL}/target").headers["x-coffer-read-count"] == "0"
    assert api.get(f"{EPHEMERAL}/source").json()["value"] == SOURCE_VALUE


def test_burned_and_pruned_material_is_gone_from_the_sqlite_files(
    api: TestClient, vault: Vault, project: str
) -> None:
    """Once burned by its last read (a vault secret, an ephemeral secret, a share) and the
    pruner has run, no ciphertext of it is left in the raw db, -wal and -shm files."""
    _require_sqlite(vault)
    put = api.put(secret_path(project, DEV, "BURN"), json={"value": "burn-me", "max_reads": 1})
    assert put.status_code == 200
    secret_id = _secret_id(vault, project, DEV, "BURN")
    vault_ciphertext = _ciphertext(vault, secret_id, 1)
    assert (
        api.post(EPHEMERAL, json={"key": "burn", "value": "burn-eph", "max_reads": 1}).status_code
        == 201
    )
    ephemeral_ciphertext = _ephemeral_ciphertext(vault, "burn")
    key_text, envelope = seal_share(b"burn-share")
    proof = share_proof(decode_share_key(key_text))
    share = api.post(
        "/api/v1/shares", json={"ciphertext": base64.b64encode(envelope).decode(), "proof": proof}
    )
    token = share.json()["token"]
    before = b"".join(_sqlite_files(vault).values())
    assert all(m in before for m in (vault_ciphertext, ephemeral_ciphertext, envelope))
    assert get_value(api, project, DEV, "BURN") == "burn-me"
    assert api.get(f"{EPHEMERAL}/burn").json()["value"] == "burn-eph"
    assert (
        TestClient(api.app)
        .post(f"/api/v1/shares/{token}/reveal", json={"proof": proof})
        .status_code
        == 200
    )
    assert api.post("/api/v1/prune").status_code == 200
    after = _sqlite_files(vault)
    left = [
        (name, what)
        for name, content in after.items()
        for what, material in (
            ("vault", vault_ciphertext),
            ("ephemeral", ephemeral_ciphertext),
            ("share", envelope),
        )
        if material in content
    ]
    assert left == [], "burned material (file, what) still on disk"


def test_a_deleted_ephemeral_secret_is_gone_from_the_sqlite_files(
    api: TestClient, vault: Vault
) -> None:
    """Like a deleted vault secret, a deleted ephemeral secret leaves no ciphertext in the
    raw db, -wal and -shm files."""
    _require_sqlite(vault)
    assert api.post(EPHEMERAL, json={"key": "doomed", "value": "delete-me"}).status_code == 201
    ciphertext = _ephemeral_ciphertext(vault, "doomed")
    assert ciphertext in b"".join(_sqlite_files(vault).values())
    assert api.delete(f"{EPHEMERAL}/doomed").status_code == 200
    still_there = [name for name, content in _sqlite_files(vault).items() if ciphertext in content]
    assert still_there == []
