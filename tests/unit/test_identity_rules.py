"""Rules for e-mail addresses and passwords (coffer.domain.identity) and durations as people
type them (coffer.domain.durations)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coffer.domain.durations import parse_duration
from coffer.domain.errors import InvalidInput
from coffer.domain.identity import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    normalize_email,
    validate_password,
)


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("dev@example.com", "dev@example.com"),
        ("Dev.Person@Example.COM", "dev.person@example.com"),
        ("  dev@example.com\t\n", "dev@example.com"),
        (_fullwidth("Dev@Example.com"), "dev@example.com"),
        ("dev+tag@mail.example.co.uk", "dev+tag@mail.example.co.uk"),
        ("Straße@example.de", "strasse@example.de"),
        ("ÉLODIE@exemple.fr", "élodie@exemple.fr"),
        ("e\u0301lodie@exemple.fr", "élodie@exemple.fr"),
    ],
)
def test_normalize_email_gives_one_spelling(text: str, canonical: str) -> None:
    """Case, surrounding whitespace, compatibility and composed forms fold to one address."""
    assert normalize_email(text) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "dev",
        "dev@",
        "@example.com",
        "dev@example",
        "dev@@example.com",
        "dev@exa@mple.com",
        "de v@example.com",
        "dev@example..com",
        "dev@example.com.",
        "dev@.example.com",
        "dev\x00@example.com",
        "dev\u200b@example.com",
        "dev@exam\u200bple.com",
        f"{'a' * 65}@example.com",
    ],
)
def test_normalize_email_refuses_what_is_not_an_address(text: str) -> None:
    """Anything that is not local@domain.tld with printable characters is refused, naming
    the field and showing what an address looks like."""
    with pytest.raises(InvalidInput) as refused:
        normalize_email(text, field="member")
    assert refused.value.field == "member"
    assert refused.value.message == "member must be an e-mail address like name@example.com"


def test_normalize_email_refuses_overlong_addresses_and_non_text() -> None:
    """Addresses over 254 characters and values that are not strings get their own message."""
    with pytest.raises(InvalidInput, match="at most 254 characters"):
        normalize_email(f"dev@{'a' * 250}.com")
    for value in (None, 42, b"dev@example.com"):
        with pytest.raises(InvalidInput, match="email must be a string"):
            normalize_email(value)


@given(st.emails())
def test_normalize_email_is_idempotent_and_case_blind(address: str) -> None:
    """Normalising twice changes nothing, and upper-casing the input changes nothing."""
    try:
        once = normalize_email(address)
    except InvalidInput:
        return
    assert normalize_email(once) == once
    assert normalize_email(f"  {address.upper()} ") == once


@pytest.mark.parametrize(
    "password",
    [
        "x" * MIN_PASSWORD_LENGTH,
        "correct horse battery staple",
        "пароль-пароль-пароль",
        "🔑" * MIN_PASSWORD_LENGTH,
        "y" * MAX_PASSWORD_LENGTH,
    ],
)
def test_validate_password_accepts_long_enough_passwords(password: str) -> None:
    """Any string from 12 to 1024 characters without NUL is accepted unchanged."""
    assert validate_password(password) == password


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short-pw-X1", "at least 12 characters"),
        ("", "at least 12 characters"),
        ("z" * (MAX_PASSWORD_LENGTH + 1), "at most 1024 characters"),
        ("nul-in-the-middle\x00-of-it", "must not contain NUL"),
    ],
)
def test_validate_password_names_the_rule_without_the_password(password: str, rule: str) -> None:
    """A refused password gets the field and the rule, and the message never repeats it."""
    with pytest.raises(InvalidInput) as refused:
        validate_password(password, field="new_password")
    assert refused.value.field == "new_password"
    assert rule in refused.value.message
    assert refused.value.message.startswith("new_password ")
    if password:
        assert password not in refused.value.message
        assert password not in repr(refused.value)


def test_validate_password_refuses_non_text() -> None:
    """A password that is not a string is refused."""
    with pytest.raises(InvalidInput, match="password must be a string"):
        validate_password(123456789012)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604800),
        ("90d", 90 * 86400),
        ("45", 45),
        (" 10 M ", 600),
        ("1D", 86400),
        (3600, 3600),
    ],
)
def test_parse_duration(text: str | int, seconds: int) -> None:
    """Durations are a number with an optional unit s, m, h or d (seconds without)."""
    assert parse_duration(text, field="expires_in") == seconds


@pytest.mark.parametrize(
    "text", ["", "d", "1w", "1.5h", "-5", "5 days", "1h30m", "1234567890", "٣d", True, None]
)
def test_parse_duration_refuses_other_spellings(text: object) -> None:
    """Anything else is refused with an example of what works, naming the field."""
    with pytest.raises(InvalidInput) as refused:
        parse_duration(text, field="ttl")  # type: ignore[arg-type]
    assert refused.value.field == "ttl"
    assert refused.value.message == "ttl must be a duration such as 30s, 5m, 2h or 7d"


def test_parse_duration_bounds() -> None:
    """Durations below the minimum or above the maximum are refused, saying the bound."""
    with pytest.raises(InvalidInput, match="expires_in must be at least 60 seconds"):
        parse_duration("59s", field="expires_in", minimum=60)
    with pytest.raises(InvalidInput, match="at least 1 second"):
        parse_duration("0", field="expires_in")
    with pytest.raises(InvalidInput, match=r"at most 365 days \(31536000 seconds\)"):
        parse_duration("366d", field="expires_in", maximum=365 * 86400)
    with pytest.raises(InvalidInput, match="at least 1 second"):
        parse_duration(-1, field="expires_in")
    assert parse_duration("365d", field="expires_in", maximum=365 * 86400) == 365 * 86400
    assert parse_duration("1m", field="expires_in", minimum=60) == 60
