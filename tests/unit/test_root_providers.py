"""Root key providers without their back ends: Shamir shares, the settings each provider
needs, the local key file's rotation rules, and what providers and records print."""

from __future__ import annotations

import base64
import itertools
from pathlib import Path

import pytest
from shamir_mnemonic.shamir import EncryptedMasterSecret, split_ems
from shamir_mnemonic.share import Share
from shamir_mnemonic.wordlist import WORDLIST

from coffer.config import Settings
from coffer.crypto.keys import KeyEncryptionKey, RootKey, key_check_value, write_root_key_file
from coffer.crypto.providers.aws_kms import AwsKmsRootProvider
from coffer.crypto.providers.base import NewRootKek
from coffer.crypto.providers.configured import RootProviders
from coffer.crypto.providers.local import LocalRootProvider, next_key_file
from coffer.crypto.providers.pkcs11_hsm import Pkcs11RootProvider
from coffer.crypto.providers.shamir import (
    ShamirRootProvider,
    UnsealProgress,
    split_identity,
    split_root,
    validate_split,
)
from coffer.domain.errors import ConfigError, InvalidInput, WrongRootKey
from coffer.domain.models import Organization
from coffer.domain.root_keys import ProviderName, RootKeyRecord, RootKeyState
from coffer.services.vault_setup import InitResult

FIXED = bytes(range(32))
PIN = "S3cr3t-PIN-4321"


def _record(root: RootKey, generation: int = 1) -> RootKeyRecord:
    """The generation record of a vault whose local (or Shamir) root is ``root``."""
    return RootKeyRecord(
        generation=generation,
        state=RootKeyState.ACTIVE,
        provider=ProviderName.SHAMIR,
        key_id=key_check_value(root),
        kek_check=KeyEncryptionKey.derive(root).check_value(),
        created_at=0.0,
    )


def _identifier(share: str) -> int:
    """The random identifier SLIP-39 gives every share of one split."""
    identifier: int = Share.from_mnemonic(share).identifier
    return identifier


def _mistyped(share: str, position: int) -> str:
    words = share.split()
    replacement = next(w for w in WORDLIST if w != words[position])
    words[position] = replacement
    return " ".join(words)


# -- Shamir ---------------------------------------------------------------------------------


def _unsealer(share: str) -> ShamirRootProvider:
    """An unsealer told that ``share``'s set is the vault's, as ``coffer server`` tells it
    from what ``coffer init`` recorded."""
    provider = ShamirRootProvider()
    provider.expect(*split_identity(share))
    return provider


def _split_like(root: RootKey, share: str, *, shares: int, threshold: int) -> list[str]:
    """Shares of ``root`` carrying the same set identifier as ``share`` (what an attacker who
    saw one share could make)."""
    identifier, _ = split_identity(share)
    secret = EncryptedMasterSecret.from_master_secret(root._material, b"", identifier, True, 1)
    return [s.mnemonic() for s in split_ems(1, [(threshold, shares)], secret)[0]]


def test_any_threshold_of_the_shares_opens_the_vault() -> None:
    """Every 3 of 5 shares, in any order, rebuild the root: the provider unseals and its KEK
    is the root's KEK."""
    root = RootKey(FIXED)
    shares = split_root(root, shares=5, threshold=3)
    assert len(shares) == len(set(shares)) == 5
    for subset in itertools.permutations(shares, 3):
        provider = _unsealer(shares[0])
        progress = [provider.add_share(share, _record(root)) for share in subset]
        assert progress == [
            UnsealProgress(1, 3, False),
            UnsealProgress(2, 3, False),
            UnsealProgress(3, 3, True),
        ]
        assert not provider.sealed
        kek = provider.open_kek(_record(root))
        assert kek.check_value() == KeyEncryptionKey.derive(root).check_value()


def test_fewer_shares_than_the_threshold_leave_it_sealed() -> None:
    """Two of three needed shares (one given twice) leave the vault sealed: opening says so."""
    root = RootKey(FIXED)
    shares = split_root(root, shares=5, threshold=3)
    provider = _unsealer(shares[0])
    provider.add_share(shares[0], _record(root))
    assert provider.add_share(shares[0], _record(root)) == UnsealProgress(1, 3, False)
    assert provider.add_share(shares[4], _record(root)) == UnsealProgress(2, 3, False)
    assert provider.sealed
    assert provider.progress() == UnsealProgress(2, 3, False)
    with pytest.raises(ConfigError) as raised:
        provider.open_kek(_record(root))
    assert raised.value.message == "the vault is sealed; run `coffer unseal` with enough shares"


def test_a_share_is_read_whatever_its_case_and_spacing() -> None:
    """A share typed in capitals with extra spaces and a line break counts as the share."""
    root = RootKey(FIXED)
    shares = split_root(root, shares=3, threshold=2)
    provider = _unsealer(shares[0])
    messy = "  " + shares[1].upper().replace(" ", "   ", 3).replace(" ", "\n", 1) + "\n"
    assert provider.add_share(messy, _record(root)) == UnsealProgress(1, 2, False)
    assert provider.add_share(shares[2], _record(root)).unsealed


@pytest.mark.parametrize(
    "damage",
    ["one word replaced", "last word replaced", "a word missing", "not a word", "empty"],
)
def test_a_mistyped_share_is_refused_naming_the_share(damage: str) -> None:
    """A share with a wrong, missing or unknown word is refused at once (its checksum fails),
    as InvalidInput on field ``share``, and counts for nothing."""
    root = RootKey(FIXED)
    share = split_root(root, shares=3, threshold=2)[0]
    words = share.split()
    bad = {
        "one word replaced": _mistyped(share, 7),
        "last word replaced": _mistyped(share, len(words) - 1),
        "a word missing": " ".join(words[:12] + words[13:]),
        "not a word": " ".join([*words[:-1], "coffeepot"]),
        "empty": "   ",
    }[damage]
    provider = _unsealer(share)
    with pytest.raises(InvalidInput) as raised:
        provider.add_share(bad, _record(root))
    assert raised.value.field == "share"
    assert raised.value.message == (
        "share is not a valid SLIP-39 share (a word is wrong or missing)"
    )
    assert provider.progress() == UnsealProgress(0, 2, False)


def test_a_share_of_another_split_is_refused_and_the_first_kept() -> None:
    """A share of another split (even of the same root) is refused naming ``share``, before
    or after the vault's own shares, and counts nothing; the right ones complete it."""
    root = RootKey(FIXED)
    first = split_root(root, shares=3, threshold=2)
    other = split_root(root, shares=3, threshold=2)
    while _identifier(other[0]) == _identifier(first[0]):  # 1 in 32768: split again
        other = split_root(root, shares=3, threshold=2)
    provider = _unsealer(first[0])
    for attempt in (0, 1):
        with pytest.raises(InvalidInput) as raised:
            provider.add_share(other[1], _record(root))
        assert (raised.value.field, raised.value.message) == (
            "share",
            "share belongs to another set of shares, not this vault's",
        )
        assert provider.progress() == UnsealProgress(attempt, 2, False)
        if attempt == 0:
            provider.add_share(first[0], _record(root))
    assert provider.add_share(first[1], _record(root)).unsealed


def test_shares_of_another_vaults_root_are_refused_and_forgotten() -> None:
    """Shares forged with the vault's set identifier but of another root are WrongRootKey
    once enough arrive; they are then forgotten, so the vault's shares can be given anew."""
    mine, theirs = RootKey(FIXED), RootKey(bytes(range(1, 33)))
    own = split_root(mine, shares=3, threshold=2)
    provider = _unsealer(own[0])
    foreign = _split_like(theirs, own[0], shares=3, threshold=2)
    provider.add_share(foreign[0], _record(mine))
    with pytest.raises(WrongRootKey) as raised:
        provider.add_share(foreign[1], _record(mine))
    assert raised.value.message == "the shares rebuild a root key that is not this vault's"
    assert provider.sealed
    assert provider.progress() == UnsealProgress(0, 2, False)
    provider.add_share(own[2], _record(mine))
    assert provider.add_share(own[0], _record(mine)).unsealed


def test_an_unsealed_root_does_not_open_another_generation() -> None:
    """The rebuilt root opens only the generation whose key id it matches."""
    root = RootKey(FIXED)
    shares = split_root(root, shares=2, threshold=2)
    provider = _unsealer(shares[0])
    for share in shares:
        provider.add_share(share, _record(root))
    with pytest.raises(WrongRootKey) as raised:
        provider.open_kek(_record(RootKey(bytes(range(1, 33))), generation=2))
    assert raised.value.message == "the unsealed root key is not this generation's"


@pytest.mark.parametrize(
    ("shares", "threshold", "field", "message"),
    [
        (1, 1, "shares", "shares must be between 2 and 16"),
        (0, 2, "shares", "shares must be between 2 and 16"),
        (17, 3, "shares", "shares must be between 2 and 16"),
        (5, 1, "threshold", "threshold must be between 2 and the number of shares (5)"),
        (5, 6, "threshold", "threshold must be between 2 and the number of shares (5)"),
        (2, 3, "threshold", "threshold must be between 2 and the number of shares (2)"),
    ],
)
def test_validate_split_bounds(shares: int, threshold: int, field: str, message: str) -> None:
    """A split needs 2 to 16 shares and a threshold from 2 to the number of shares."""
    with pytest.raises(InvalidInput) as raised:
        validate_split(shares, threshold)
    assert (raised.value.field, raised.value.message) == (field, message)


@pytest.mark.parametrize(("shares", "threshold"), [(2, 2), (16, 2), (16, 16), (5, 3)])
def test_validate_split_accepts_the_bounds(shares: int, threshold: int) -> None:
    """The extreme splits are allowed and split_root makes them."""
    validate_split(shares, threshold)
    assert len(split_root(RootKey(FIXED), shares=shares, threshold=threshold)) == shares


def test_shamir_init_splits_a_new_root_and_refuses_rotation() -> None:
    """At init the provider makes a new root, split as configured, whose shares unseal the
    generation it describes; a root rotation is refused with a message saying what to do."""
    made = ShamirRootProvider(shares=4, threshold=2).new_kek(1, rotate=False)
    assert len(made.shares) == 4
    record = RootKeyRecord(
        generation=1,
        state=RootKeyState.ACTIVE,
        provider=ProviderName.SHAMIR,
        key_id=made.key_id,
        kek_check=made.kek.check_value(),
        created_at=0.0,
    )
    unsealer = _unsealer(made.shares[0])
    unsealer.add_share(made.shares[3], record)
    assert unsealer.add_share(made.shares[1], record).unsealed
    assert unsealer.open_kek(record).check_value() == made.kek.check_value()
    with pytest.raises(ConfigError) as raised:
        unsealer.new_kek(2, rotate=True)
    assert raised.value.message == (
        "rotate-root does not yet support a Shamir-split root key; move it to another "
        "provider with COFFER_ROOT_PROVIDER"
    )


# -- the settings each provider needs --------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "name", "message"),
    [
        (
            {"COFFER_ROOT_PROVIDER": "pkcs11", "COFFER_PKCS11_PIN": PIN},
            ProviderName.PKCS11,
            "COFFER_PKCS11_TOKEN must be set to use the pkcs11 root key provider",
        ),
        (
            {"COFFER_ROOT_PROVIDER": "pkcs11", "COFFER_PKCS11_TOKEN": "tok"},
            ProviderName.PKCS11,
            "COFFER_PKCS11_PIN must be set to use the pkcs11 root key provider",
        ),
        (
            {"COFFER_ROOT_PROVIDER": "awskms"},
            ProviderName.AWSKMS,
            "COFFER_KMS_KEY_ID must be set to use the awskms root key provider",
        ),
    ],
)
def test_a_provider_without_its_settings_names_the_variable(
    env: dict[str, str], name: ProviderName, message: str, tmp_path: Path
) -> None:
    """Using a provider whose variables are not all set raises ConfigError naming one."""
    providers = RootProviders(Settings.from_env(env, directory=tmp_path))
    assert providers.configured is name
    with pytest.raises(ConfigError) as raised:
        providers.get(name)
    assert raised.value.message == message


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"COFFER_ROOT_PROVIDER": "shamir"},
            "COFFER_ROOT_PROVIDER must be one of local, pkcs11, awskms",
        ),
        (
            {"COFFER_ROOT_PROVIDER": "vault"},
            "COFFER_ROOT_PROVIDER must be one of local, pkcs11, awskms",
        ),
        (
            {"COFFER_KMS_ENDPOINT": "127.0.0.1:4566"},
            "COFFER_KMS_ENDPOINT must be an http:// or https:// URL",
        ),
        ({"COFFER_KMS_TIMEOUT": "0"}, "COFFER_KMS_TIMEOUT must be between 1 and 120, got 0"),
        ({"COFFER_KMS_TIMEOUT": "1.5"}, "COFFER_KMS_TIMEOUT must be an integer, got '1.5'"),
    ],
)
def test_bad_provider_settings_name_the_variable(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    """A bad provider variable is refused when the settings are read, naming it."""
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env, directory=tmp_path)
    assert raised.value.message == message


def test_provider_settings_are_read_from_the_environment(tmp_path: Path) -> None:
    """The provider name is case-insensitive; the KMS region falls back to AWS_REGION."""
    settings = Settings.from_env(
        {
            "COFFER_ROOT_PROVIDER": " AwsKMS ",
            "COFFER_KMS_KEY_ID": "alias/coffer",
            "AWS_REGION": "eu-west-3",
            "COFFER_KMS_TIMEOUT": "7",
        },
        directory=tmp_path,
    )
    assert (settings.root_provider, settings.kms_region, settings.kms_timeout) == (
        "awskms",
        "eu-west-3",
        7.0,
    )
    assert (settings.pkcs11_key_label, str(settings.pkcs11_module)) == (
        "coffer-root",
        "/usr/lib/softhsm/libsofthsm2.so",
    )


# -- the local provider's rotation rules -----------------------------------------------------


def test_local_rotation_is_refused_when_the_key_comes_from_the_environment(
    tmp_path: Path,
) -> None:
    """COFFER_ROOT_KEY cannot be changed by coffer: rotating says to use a key file."""
    provider = LocalRootProvider(
        env_value=base64.b64encode(FIXED).decode(), key_file=tmp_path / "root.key"
    )
    with pytest.raises(ConfigError) as raised:
        provider.new_kek(2, rotate=True)
    assert raised.value.message == (
        "the root key comes from COFFER_ROOT_KEY, which coffer cannot change; keep it in a "
        "key file (COFFER_ROOT_KEY_FILE) to rotate it"
    )
    assert not next_key_file(tmp_path / "root.key").exists()


def test_local_rotation_writes_the_next_key_beside_the_key_file(tmp_path: Path) -> None:
    """A rotation leaves the key file alone and writes the new key to ``<file>.next`` (mode
    0600); the provider then opens both generations, and finishing moves the new key over."""
    key_file = tmp_path / "root.key"
    write_root_key_file(key_file, RootKey(FIXED))
    provider = LocalRootProvider(env_value=None, key_file=key_file)
    made = provider.new_kek(2, rotate=True)
    pending = next_key_file(key_file)
    assert pending.name == "root.key.next"
    assert pending.stat().st_mode & 0o777 == 0o600
    old_record = _record(RootKey(FIXED))
    new_record = RootKeyRecord(
        generation=2,
        state=RootKeyState.PENDING,
        provider=ProviderName.LOCAL,
        key_id=made.key_id,
        kek_check=made.kek.check_value(),
        created_at=0.0,
    )
    assert provider.open_kek(old_record).check_value() == old_record.kek_check
    assert provider.open_kek(new_record).check_value() == made.kek.check_value()
    provider.finish_rotation(new_record)
    assert not pending.exists()
    assert provider.open_kek(new_record).check_value() == made.kek.check_value()
    with pytest.raises(WrongRootKey) as raised:
        provider.open_kek(old_record)
    assert raised.value.message == (
        "the root key does not match this vault (generation 1: key check value mismatch); "
        f"check COFFER_ROOT_KEY or the root key file {key_file}"
    )


def test_local_finish_leaves_a_next_file_of_another_key_alone(tmp_path: Path) -> None:
    """finish_rotation moves ``.next`` only when it holds the finished generation's key."""
    key_file = tmp_path / "root.key"
    write_root_key_file(key_file, RootKey(FIXED))
    provider = LocalRootProvider(env_value=None, key_file=key_file)
    provider.new_kek(2, rotate=True)
    stranger = _record(RootKey(bytes(range(1, 33))), generation=2)
    provider.finish_rotation(stranger)
    assert next_key_file(key_file).exists()
    assert provider.root() == RootKey(FIXED)


# -- what providers and records print --------------------------------------------------------


def test_providers_never_print_a_pin_or_key_material(tmp_path: Path) -> None:
    """repr, str and describe() of every provider (and the settings and the provider set)
    show where the root lives, never the PIN, the root key or a share."""
    key_b64 = base64.b64encode(FIXED).decode()
    settings = Settings.from_env(
        {
            "COFFER_ROOT_PROVIDER": "pkcs11",
            "COFFER_PKCS11_TOKEN": "tok",
            "COFFER_PKCS11_PIN": PIN,
            "COFFER_ROOT_KEY": key_b64,
        },
        directory=tmp_path,
    )
    pkcs11 = Pkcs11RootProvider(
        module=Path("/usr/lib/x.so"), token_label="tok", pin=PIN, key_label="coffer-root"
    )
    local = LocalRootProvider(env_value=key_b64, key_file=tmp_path / "root.key")
    kms = AwsKmsRootProvider(
        key_id="alias/coffer", region="eu-west-1", endpoint="http://127.0.0.1:1", timeout=1.0
    )
    share = split_root(RootKey(FIXED), shares=3, threshold=2)[0]
    shamir = _unsealer(share)
    shamir.add_share(share, _record(RootKey(FIXED)))
    providers = RootProviders(settings)
    texts = {
        "pkcs11": [repr(pkcs11), str(pkcs11), str(pkcs11.describe())],
        "local": [repr(local), str(local), str(local.describe())],
        "kms": [repr(kms), str(kms), str(kms.describe())],
        "shamir": [repr(shamir), str(shamir), str(shamir.describe())],
        "settings": [repr(settings), repr(providers), repr(providers.get(ProviderName.PKCS11))],
    }
    # Three consecutive words of the share: one short word alone may occur in any text.
    secrets = [PIN, key_b64, FIXED.hex(), " ".join(share.split()[4:7])]
    for name, shown in texts.items():
        for text in shown:
            leaked = [s for s in secrets if s in text]
            assert leaked == [], f"{name}: {text}"
    assert pkcs11.describe() == {"module": "/usr/lib/x.so", "token": "tok"}
    assert local.describe() == {"source": "COFFER_ROOT_KEY"}
    assert kms.describe() == {"region": "eu-west-1", "endpoint": "http://127.0.0.1:1"}
    assert "pin='********'" in repr(pkcs11)


def test_new_keks_records_and_init_results_never_print_key_material() -> None:
    """A new root KEK, a generation record and an init result with shares print no KEK,
    wrapped KEK, sealed audit keys or share words."""
    kek = KeyEncryptionKey(FIXED)
    wrapped = bytes(range(100, 160))
    shares = split_root(RootKey(FIXED), shares=2, threshold=2)
    made = NewRootKek(kek=kek, key_id="label", wrapped_kek=wrapped, shares=shares)
    record = RootKeyRecord(
        generation=1,
        state=RootKeyState.ACTIVE,
        provider=ProviderName.PKCS11,
        key_id="label",
        kek_check=kek.check_value(),
        created_at=0.0,
        wrapped_kek=wrapped,
        audit_keys_sealed=bytes(range(200, 256)),
    )
    result = InitResult(
        organization=Organization(id="01ORG", name="acme", created_at=0.0),
        token="coffer_boot_secret",
        shares=shares,
    )
    for text in (repr(made), repr(record), repr(result), str(result)):
        for secret in (FIXED.hex(), wrapped.hex(), repr(wrapped), bytes(range(200, 256)).hex()):
            assert secret not in text
        assert " ".join(shares[0].split()[3:6]) not in text
        assert "coffer_boot_secret" not in text
