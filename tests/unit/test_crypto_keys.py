"""The key hierarchy: root key loading and storage, check value, KEK and data keys."""

from __future__ import annotations

import base64
import os
import pickle
import stat
from pathlib import Path

import pytest

from coffer.crypto.aad import data_key_aad, secret_version_aad
from coffer.crypto.aead import hkdf_sha256, open_envelope, seal
from coffer.crypto.keys import (
    DataKey,
    KeyEncryptionKey,
    RootKey,
    key_check_value,
    load_root_key,
    verify_key_check_value,
    write_root_key_file,
)
from coffer.domain.errors import ConfigError, DecryptionFailed, WrongRootKey

FIXED = bytes(range(32))
FIXED_B64 = base64.b64encode(FIXED).decode("ascii")
AAD = data_key_aad(org_id="org_1", project_id="prj_1", key_version=1)


def _key_forms(material: bytes) -> list[str]:
    """Textual forms in which key bytes could leak into a repr."""
    return [
        material.hex(),
        material.hex().upper(),
        base64.b64encode(material).decode("ascii"),
        base64.urlsafe_b64encode(material).decode("ascii").rstrip("="),
        repr(material)[2:-1],
    ]


# -- RootKey ------------------------------------------------------------------------------------


def test_root_key_base64_round_trip() -> None:
    """to_base64 and from_base64 are inverse, for a fixed and a generated key."""
    assert RootKey.from_base64(FIXED_B64, source="test").to_base64() == FIXED_B64
    key = RootKey.generate()
    assert RootKey.from_base64(key.to_base64(), source="test") == key


def test_generated_root_keys_differ() -> None:
    """Two generated root keys are different."""
    assert RootKey.generate() != RootKey.generate()


def test_from_base64_ignores_surrounding_whitespace() -> None:
    """Whitespace and newlines around the base64 text are ignored."""
    assert RootKey.from_base64(f"  {FIXED_B64}\n", source="test").to_base64() == FIXED_B64


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not base64!",
        base64.b64encode(bytes(16)).decode(),
        base64.b64encode(bytes(33)).decode(),
        FIXED_B64.rstrip("="),
        base64.urlsafe_b64encode(b"\xff" * 32).decode(),
        FIXED_B64[:20] + " " + FIXED_B64[20:],
        "ключ",
    ],
    ids=[
        "empty",
        "garbage",
        "16 bytes",
        "33 bytes",
        "no padding",
        "urlsafe",
        "inner space",
        "utf8",
    ],
)
def test_from_base64_error_names_source_and_rule(text: str) -> None:
    """Bad text raises ConfigError naming the source and the rule, never echoing the text."""
    with pytest.raises(ConfigError) as caught:
        RootKey.from_base64(text, source="COFFER_ROOT_KEY")
    message = caught.value.message
    assert "COFFER_ROOT_KEY" in message
    assert "must be base64 of exactly 32 bytes" in message
    if text.strip():
        assert text.strip() not in message


def test_root_key_rejects_wrong_length_material() -> None:
    """Constructing a RootKey from other than 32 bytes is a programmer error."""
    with pytest.raises(ValueError, match="32 bytes"):
        RootKey(bytes(31))


# -- load_root_key ------------------------------------------------------------------------------


def test_load_prefers_env_over_file(tmp_path: Path) -> None:
    """A non-empty env value wins over an existing key file."""
    key_file = tmp_path / "root.key"
    write_root_key_file(key_file, RootKey.generate())
    assert load_root_key(env_value=FIXED_B64, key_file=key_file).to_base64() == FIXED_B64


def test_load_empty_env_falls_back_to_file(tmp_path: Path) -> None:
    """An empty env value is treated as unset and the file is read."""
    key_file = tmp_path / "root.key"
    key = RootKey.generate()
    write_root_key_file(key_file, key)
    assert load_root_key(env_value="", key_file=key_file) == key
    assert load_root_key(env_value=None, key_file=key_file) == key


def test_load_bad_env_names_env_var(tmp_path: Path) -> None:
    """A bad env value is reported against COFFER_ROOT_KEY, even if the file is fine."""
    key_file = tmp_path / "root.key"
    write_root_key_file(key_file, RootKey.generate())
    with pytest.raises(ConfigError, match=r"COFFER_ROOT_KEY.*must be base64 of exactly 32 bytes"):
        load_root_key(env_value="short", key_file=key_file)


def test_load_reads_file_with_surrounding_whitespace(tmp_path: Path) -> None:
    """A key file with blank lines and spaces around the base64 loads."""
    key_file = tmp_path / "root.key"
    key_file.write_text(f"\n  {FIXED_B64}  \n\n", encoding="ascii")
    assert load_root_key(env_value=None, key_file=key_file).to_base64() == FIXED_B64


def test_load_missing_file(tmp_path: Path) -> None:
    """A missing key file raises ConfigError naming it and saying how to fix it."""
    key_file = tmp_path / "nope" / "root.key"
    with pytest.raises(ConfigError) as caught:
        load_root_key(env_value=None, key_file=key_file)
    assert caught.value.message == (
        f"root key file {key_file} does not exist; run `coffer init` or set COFFER_ROOT_KEY"
    )


def test_load_directory_instead_of_file(tmp_path: Path) -> None:
    """A directory at the key file path raises ConfigError naming the path and the reason."""
    with pytest.raises(ConfigError) as caught:
        load_root_key(env_value=None, key_file=tmp_path)
    assert str(tmp_path) in caught.value.message
    assert "Is a directory" in caught.value.message


def test_load_path_through_a_file(tmp_path: Path) -> None:
    """A key path whose parent is a regular file raises ConfigError with the OS reason."""
    parent = tmp_path / "not-a-dir"
    parent.write_text("x", encoding="ascii")
    with pytest.raises(ConfigError, match="cannot be read: Not a directory") as caught:
        load_root_key(env_value=None, key_file=parent / "root.key")
    assert str(parent / "root.key") in caught.value.message


def test_load_permission_error_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PermissionError while opening the key file becomes ConfigError with path and reason."""
    key_file = tmp_path / "root.key"
    write_root_key_file(key_file, RootKey.generate())

    def deny(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(ConfigError) as caught:
        load_root_key(env_value=None, key_file=key_file)
    assert caught.value.message == f"root key file {key_file} cannot be read: Permission denied"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file modes")
def test_load_unreadable_file(tmp_path: Path) -> None:
    """A key file without read permission raises ConfigError naming path and reason."""
    key_file = tmp_path / "root.key"
    write_root_key_file(key_file, RootKey.generate())
    key_file.chmod(0)
    with pytest.raises(ConfigError, match="Permission denied") as caught:
        load_root_key(env_value=None, key_file=key_file)
    assert str(key_file) in caught.value.message


@pytest.mark.parametrize(
    "content",
    [
        b"%%% not base64 %%%",
        base64.b64encode(bytes(16)),
        base64.b64encode(bytes(48)),
        b"\xff\xfe\x00garbage",
        b"",
        FIXED_B64.encode() * 200,
    ],
    ids=["bad base64", "16 bytes", "48 bytes", "binary", "empty", "huge"],
)
def test_load_bad_file_content_names_path(tmp_path: Path, content: bytes) -> None:
    """Bad key file content raises ConfigError naming the file and the rule."""
    key_file = tmp_path / "root.key"
    key_file.write_bytes(content)
    with pytest.raises(ConfigError, match="must be base64 of exactly 32 bytes") as caught:
        load_root_key(env_value=None, key_file=key_file)
    assert str(key_file) in caught.value.message


# -- write_root_key_file ------------------------------------------------------------------------


def test_write_creates_file_with_mode_0600(tmp_path: Path) -> None:
    """The key file is created with mode 0600 and holds the base64 key and a newline."""
    key_file = tmp_path / "root.key"
    key = RootKey.from_base64(FIXED_B64, source="test")
    old_umask = os.umask(0)
    try:
        write_root_key_file(key_file, key)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text(encoding="ascii") == FIXED_B64 + "\n"


def test_write_creates_missing_parent_with_mode_0700(tmp_path: Path) -> None:
    """A missing parent directory is created with mode 0700."""
    key_file = tmp_path / "vault" / "root.key"
    write_root_key_file(key_file, RootKey.generate())
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert key_file.is_file()


def test_write_leaves_existing_parent_mode_alone(tmp_path: Path) -> None:
    """An existing parent directory keeps its mode; only a directory coffer creates is 0700."""
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o755)
    write_root_key_file(parent / "root.key", RootKey.generate())
    assert stat.S_IMODE(parent.stat().st_mode) == 0o755


def test_write_refuses_to_overwrite(tmp_path: Path) -> None:
    """An existing key file is never replaced; the error names the path."""
    key_file = tmp_path / "root.key"
    first = RootKey.generate()
    write_root_key_file(key_file, first)
    with pytest.raises(ConfigError, match="already exists") as caught:
        write_root_key_file(key_file, RootKey.generate())
    assert str(key_file) in caught.value.message
    assert load_root_key(env_value=None, key_file=key_file) == first


def test_write_refuses_dangling_symlink(tmp_path: Path) -> None:
    """A symlink at the key path is not followed, even when its target does not exist."""
    key_file = tmp_path / "root.key"
    target = tmp_path / "elsewhere"
    key_file.symlink_to(target)
    with pytest.raises(ConfigError, match="already exists"):
        write_root_key_file(key_file, RootKey.generate())
    assert not target.exists()


# -- key check value ----------------------------------------------------------------------------


def test_key_check_value_shape_and_derivation() -> None:
    """The check value is 32 hex chars of HKDF(root, info=coffer/key-check/v1), not the KEK."""
    root = RootKey.from_base64(FIXED_B64, source="test")
    kcv = key_check_value(root)
    assert kcv == hkdf_sha256(FIXED, info=b"coffer/key-check/v1", length=16).hex()
    assert len(kcv) == 32
    assert kcv not in hkdf_sha256(FIXED, info=b"coffer/kek/v1").hex()


def test_verify_key_check_value_accepts_matching_key() -> None:
    """Verifying a root key against its own check value returns quietly."""
    root = RootKey.generate()
    verify_key_check_value(root, key_check_value(root))


@pytest.mark.parametrize("stored", ["", "zz", "ключ"])
def test_verify_key_check_value_rejects_garbage(stored: str) -> None:
    """A malformed stored check value is a mismatch, not a crash."""
    with pytest.raises(WrongRootKey):
        verify_key_check_value(RootKey.generate(), stored)


def test_verify_key_check_value_wrong_key() -> None:
    """Another root key raises WrongRootKey with the documented message."""
    stored = key_check_value(RootKey.generate())
    with pytest.raises(WrongRootKey) as caught:
        verify_key_check_value(RootKey.generate(), stored)
    assert caught.value.message == (
        "the root key does not match this vault (key check value mismatch); "
        "check COFFER_ROOT_KEY or the root key file"
    )
    assert caught.value.code == "wrong_root_key"


# -- KEK and data keys --------------------------------------------------------------------------


def test_kek_derivation_is_deterministic() -> None:
    """The same root key derives a KEK that unwraps what another derivation wrapped."""
    root = RootKey.generate()
    data_key = DataKey.generate()
    wrapped = KeyEncryptionKey.derive(root).wrap(data_key, AAD)
    assert KeyEncryptionKey.derive(root).unwrap(wrapped, AAD) == data_key


def test_kek_is_hkdf_of_root_with_kek_info() -> None:
    """The KEK is HKDF-SHA256(root, info=coffer/kek/v1): its wraps open under that key."""
    root = RootKey.from_base64(FIXED_B64, source="test")
    data_key = DataKey(bytes(range(100, 132)))
    wrapped = KeyEncryptionKey.derive(root).wrap(data_key, AAD)
    assert open_envelope(hkdf_sha256(FIXED, info=b"coffer/kek/v1"), wrapped, AAD) == bytes(
        range(100, 132)
    )


def test_unwrap_with_other_kek_fails() -> None:
    """A wrapped data key does not open under another root's KEK."""
    wrapped = KeyEncryptionKey.derive(RootKey.generate()).wrap(DataKey.generate(), AAD)
    with pytest.raises(DecryptionFailed):
        KeyEncryptionKey.derive(RootKey.generate()).unwrap(wrapped, AAD)


def test_unwrap_with_other_aad_fails() -> None:
    """A wrapped data key does not open for another project or key version."""
    kek = KeyEncryptionKey.derive(RootKey.generate())
    wrapped = kek.wrap(DataKey.generate(), AAD)
    for other in (
        data_key_aad(org_id="org_1", project_id="prj_2", key_version=1),
        data_key_aad(org_id="org_1", project_id="prj_1", key_version=2),
    ):
        with pytest.raises(DecryptionFailed):
            kek.unwrap(wrapped, other)


def test_unwrap_rejects_envelope_not_holding_a_key() -> None:
    """An authentic envelope whose content is not 32 bytes is not a data key."""
    root = RootKey.from_base64(FIXED_B64, source="test")
    envelope = seal(hkdf_sha256(FIXED, info=b"coffer/kek/v1"), bytes(16), AAD)
    with pytest.raises(DecryptionFailed):
        KeyEncryptionKey.derive(root).unwrap(envelope, AAD)


def test_data_key_seal_open_round_trip() -> None:
    """A data key opens what it sealed, and a different data key cannot."""
    aad = secret_version_aad(
        org_id="o", project_id="p", environment_id="e", key="K", version=1, key_version=1
    )
    data_key = DataKey.generate()
    envelope = data_key.seal(b"value", aad)
    assert data_key.open(envelope, aad) == b"value"
    with pytest.raises(DecryptionFailed):
        DataKey.generate().open(envelope, aad)


def test_data_key_rejects_wrong_length_material() -> None:
    """Constructing a DataKey from other than 32 bytes is a programmer error."""
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey(bytes(16))


# -- no leaks -----------------------------------------------------------------------------------


def test_reprs_contain_no_key_material() -> None:
    """repr and str of RootKey, KeyEncryptionKey and DataKey show no form of the key bytes."""
    root = RootKey.from_base64(FIXED_B64, source="test")
    kek_material = hkdf_sha256(FIXED, info=b"coffer/kek/v1")
    dk_material = bytes(range(200, 232))
    objects = [
        (root, FIXED),
        (KeyEncryptionKey.derive(root), kek_material),
        (DataKey(dk_material), dk_material),
    ]
    for obj, material in objects:
        for shown in (repr(obj), str(obj), f"{obj}", repr([obj])):
            assert "********" in shown
            for form in _key_forms(material):
                assert form not in shown
                assert form[:8] not in shown


def test_keys_refuse_pickling() -> None:
    """Key objects cannot be pickled, so they cannot leak into caches or queues by accident."""
    root = RootKey.generate()
    for obj in (root, KeyEncryptionKey.derive(root), DataKey.generate()):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(obj)


def test_keys_are_not_hashable() -> None:
    """Keys with constant-time equality are deliberately unhashable."""
    with pytest.raises(TypeError):
        hash(RootKey.generate())
    with pytest.raises(TypeError):
        hash(DataKey.generate())
