"""Password hashing (Argon2id, production cost pinned here) and TOTP codes (RFC 6238 vectors,
the replay rule) with their recovery codes."""

from __future__ import annotations

import base64
import re
import time

import pytest

from coffer.bootstrap import password_hasher
from coffer.config import Settings
from coffer.crypto import totp
from coffer.crypto.passwords import Argon2Parameters, PasswordHasher
from coffer.domain.errors import ConfigError

CHEAP = Argon2Parameters(memory_kib=1024, time_cost=1)


# --- Argon2id -----------------------------------------------------------------------------


def test_production_argon2_defaults_are_pinned() -> None:
    """Settings and the hasher default to OWASP's Argon2id minimum: 19 MiB, 2 passes, 1 lane."""
    settings = Settings()
    assert (settings.argon2_memory_kib, settings.argon2_time_cost) == (19456, 2)
    assert Settings.from_env({}).argon2_memory_kib == 19456
    assert Settings.from_env({}).argon2_time_cost == 2
    assert password_hasher(settings).params == Argon2Parameters(19456, 2, 1)
    assert Argon2Parameters() == Argon2Parameters(19456, 2, 1)


def test_production_hash_uses_the_pinned_cost() -> None:
    """A hash made with the default settings records m=19456, t=2, p=1 and verifies."""
    hasher = password_hasher(Settings())
    stored = hasher.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert hasher.verify(stored, "correct horse battery staple")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COFFER_ARGON2_MEMORY_KIB", "1024"),
        ("COFFER_ARGON2_MEMORY_KIB", "19455"),
        ("COFFER_ARGON2_MEMORY_KIB", "lots"),
        ("COFFER_ARGON2_TIME_COST", "1"),
        ("COFFER_HASH_CONCURRENCY", "0"),
    ],
)
def test_environment_cannot_lower_the_cost(variable: str, value: str) -> None:
    """Start-up refuses an Argon2 cost below the production minimum, naming the variable."""
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_environment_may_raise_the_cost() -> None:
    """A higher cost than the default is accepted."""
    settings = Settings.from_env(
        {"COFFER_ARGON2_MEMORY_KIB": "65536", "COFFER_ARGON2_TIME_COST": "3"}
    )
    assert password_hasher(settings).params == Argon2Parameters(65536, 3, 1)


def test_hash_is_salted_argon2id_and_verifies() -> None:
    """Hashes are PHC strings of Argon2id with a fresh salt; only the right password verifies."""
    hasher = PasswordHasher(CHEAP)
    first, second = hasher.hash("s3cret passphrase"), hasher.hash("s3cret passphrase")
    assert re.fullmatch(
        r"\$argon2id\$v=19\$m=1024,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}", first
    )
    assert first != second
    assert hasher.verify(first, "s3cret passphrase")
    assert hasher.verify(second, "s3cret passphrase")
    assert not hasher.verify(first, "s3cret passphrasE")
    assert not hasher.verify(first, "")
    assert "s3cret" not in first


@pytest.mark.parametrize("stored", ["", "plaintext", "$argon2id$v=19$m=1024", "$2b$12$abc"])
def test_malformed_hash_never_verifies_and_needs_rehash(stored: str) -> None:
    """A stored value that is not an Argon2 hash verifies nothing (no exception) and is
    marked for rehashing."""
    hasher = PasswordHasher(CHEAP)
    assert not hasher.verify(stored, "anything at all")
    assert hasher.needs_rehash(stored)


def test_needs_rehash_when_the_cost_changed() -> None:
    """A hash made with other parameters needs rehashing; one made with the current does not."""
    cheap = PasswordHasher(CHEAP)
    stronger = PasswordHasher(Argon2Parameters(memory_kib=2048, time_cost=2))
    stored = cheap.hash("passphrase here")
    assert not cheap.needs_rehash(stored)
    assert stronger.needs_rehash(stored)
    assert stronger.verify(stored, "passphrase here")


def test_dummy_verification_for_unknown_users_raises_nothing() -> None:
    """The dummy verification used for an unknown address runs and returns quietly."""
    PasswordHasher(CHEAP).verify_dummy("whatever was typed")


# --- TOTP ---------------------------------------------------------------------------------

RFC_SEED = base64.b32encode(b"12345678901234567890").decode()

RFC_6238_SHA1 = [
    # time, 8-digit code from RFC 6238 appendix B (coffer uses the last 6 digits)
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


def test_rfc_seed_is_the_known_base32() -> None:
    """The RFC's ASCII seed in base32, as an authenticator app would receive it."""
    assert RFC_SEED == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


@pytest.mark.parametrize(("moment", "code"), RFC_6238_SHA1)
def test_totp_matches_rfc_6238(moment: int, code: str) -> None:
    """Codes are RFC 6238 SHA-1 codes of 6 digits (T=59 gives 287082)."""
    assert totp.current_code(RFC_SEED, moment) == code[-6:]


def test_code_is_accepted_in_its_step_and_one_either_side() -> None:
    """A code is accepted for its 30-second step and one step of drift either way, returning
    the step it belongs to; two steps away it is refused."""
    code = totp.current_code(RFC_SEED, 1111111111)
    step = 1111111111 // 30
    for now, accepted in ((1111111111, True), (1111111111 + 30, True), (1111111111 - 30, True)):
        assert totp.accepted_step(RFC_SEED, code, last_step=None, now=now) == (
            step if accepted else None
        )
    for now in (1111111111 + 61, 1111111111 - 61):
        assert totp.accepted_step(RFC_SEED, code, last_step=None, now=now) is None


def test_code_is_never_accepted_twice_nor_an_earlier_one() -> None:
    """Once a step is used, its code and every earlier code are refused, a later one works."""
    now = 1111111111.0
    step = int(now) // 30
    code = totp.current_code(RFC_SEED, now)
    earlier = totp.current_code(RFC_SEED, now - 30)
    later = totp.current_code(RFC_SEED, now + 30)
    assert totp.accepted_step(RFC_SEED, code, last_step=step, now=now) is None
    assert totp.accepted_step(RFC_SEED, earlier, last_step=step, now=now) is None
    assert totp.accepted_step(RFC_SEED, later, last_step=step, now=now) == step + 1
    assert totp.accepted_step(RFC_SEED, code, last_step=step - 1, now=now) == step


@pytest.mark.parametrize("spelling", ["050471", " 050471 ", "050 471", "05 04 71"])
def test_code_may_carry_spaces(spelling: str) -> None:
    """Spaces that an authenticator app shows inside a code are ignored."""
    assert totp.accepted_step(RFC_SEED, spelling, last_step=None, now=1111111111) is not None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "05047",
        "0504711",
        "O5O471",
        "-50471",
        pytest.param("05047\u00b9", id="superscript"),
        pytest.param("\uff10\uff15\uff10\uff14\uff17\uff11", id="fullwidth"),
        pytest.param("\u0660\u0665\u0660\u0664\u0667\u0661", id="arabic-indic"),
    ],
)
def test_malformed_codes_are_refused(bad: str) -> None:
    """A code that is not exactly 6 ASCII digits is refused."""
    assert totp.accepted_step(RFC_SEED, bad, last_step=None, now=1111111111) is None


def test_new_seed_and_provisioning_uri() -> None:
    """A new seed is 32 base32 characters (160 bits), different each time; the URI names the
    issuer, the account and the seed."""
    seed = totp.new_totp_seed()
    assert re.fullmatch(r"[A-Z2-7]{32}", seed)
    assert seed != totp.new_totp_seed()
    uri = totp.provisioning_uri(seed, account="dev@example.com")
    assert uri.startswith("otpauth://totp/coffer:dev%40example.com?")
    assert f"secret={seed}" in uri and "issuer=coffer" in uri
    assert totp.accepted_step(seed, totp.current_code(seed), last_step=None, now=time.time())


def test_recovery_codes_are_distinct_and_unambiguous() -> None:
    """Ten codes like k7mq-2x9p-wd4hx, from an alphabet without look-alike characters."""
    codes = totp.new_recovery_codes()
    assert len(codes) == len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(r"[a-km-np-z2-9]{4}-[a-km-np-z2-9]{4}-[a-km-np-z2-9]{5}", code)
        assert not set(code) & set("01ilo")


def test_recovery_code_hash_ignores_case_dashes_and_spaces() -> None:
    """A recovery code typed in capitals, without dashes or with spaces is the same code."""
    canonical = totp.hash_recovery_code("k7mq-2x9p-wd4hx")
    for spelling in ("K7MQ-2X9P-WD4HX", "k7mq2x9pwd4hx", " k7mq 2x9p wd4hx "):
        assert totp.hash_recovery_code(spelling) == canonical
    assert totp.hash_recovery_code("k7mq-2x9p-wd4hy") != canonical
    assert "k7mq" not in canonical
