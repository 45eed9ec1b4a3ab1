"""Key names, project and environment names, and their environment variable names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coffer.domain.errors import InvalidInput
from coffer.domain.names import (
    MAX_KEY_LENGTH,
    display_name,
    env_var_name,
    env_var_names,
    validate_key_name,
    validate_resource_name,
)

VALID_KEYS = [
    "DB_PASSWORD",
    "db/password",
    "a.b-c/_d",
    "_",
    "a",
    "A1/b2/c3",
    "api.v2-token",
    "a." + "b",
    "x" * MAX_KEY_LENGTH,
    "/".join(["abc"] * 64),
]

INVALID_KEYS = [
    ("", "must not be empty"),
    ("x" * 257, "is 257 characters long; the limit is 256"),
    (" a", "must not start or end with whitespace"),
    ("a ", "must not start or end with whitespace"),
    ("\ta", "must not start or end with whitespace"),
    ("a\x00b", "control character U+0000 at position 1"),
    ("a\tb", "control character U+0009 at position 1"),
    ("a\x7fb", "control character U+007F"),
    ("a\nb", "control character U+000A"),
    ("..", 'must not contain ".."'),
    ("a..b", 'must not contain ".."'),
    ("a/../b", 'must not contain ".."'),
    ("a//b", "must not have an empty segment"),
    ("/a", "must not have an empty segment"),
    ("a/", "must not have an empty segment"),
    ("/", "must not have an empty segment"),
    ("9abc", 'segment "9abc" must start with a letter or underscore'),
    ("é", 'segment "é" must start with a letter or underscore'),
    ("café", 'segment "café" must start with a letter or underscore'),
    ("db/9x", 'segment "9x" must start'),
    ("a b", 'segment "a b" must start'),
    ("a=b", 'segment "a=b" must start'),
    (".hidden", 'segment ".hidden" must start'),
    ("a/-b", 'segment "-b" must start'),
    ("a$b", 'segment "a$b" must start'),
    ("a\u200bb", 'segment "a\\u200bb" must start'),
]


@pytest.mark.parametrize("name", VALID_KEYS)
def test_valid_key_names_are_returned_unchanged(name: str) -> None:
    """A name that follows the key rule is accepted and returned as it was given."""
    assert validate_key_name(name) == name


@pytest.mark.parametrize(("name", "rule"), INVALID_KEYS)
def test_invalid_key_names_name_the_broken_rule(name: str, rule: str) -> None:
    """Each kind of bad key name is refused with a message stating the first rule it breaks."""
    with pytest.raises(InvalidInput) as caught:
        validate_key_name(name)
    assert rule in caught.value.message
    assert caught.value.field == "key"


def test_key_name_error_uses_the_given_field() -> None:
    """The caller's field name is carried on the error and leads the message."""
    with pytest.raises(InvalidInput) as caught:
        validate_key_name("", field="new_key")
    assert caught.value.field == "new_key"
    assert caught.value.message.startswith("new_key ")


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\r"])
def test_key_name_errors_never_echo_control_characters(char: str) -> None:
    """A control character is reported by code point and never copied into the message."""
    with pytest.raises(InvalidInput) as caught:
        validate_key_name(f"a{char}b")
    assert char not in caught.value.message
    assert f"U+{ord(char):04X}" in caught.value.message


def test_key_length_limit_counts_characters() -> None:
    """The 256 limit is on characters: 256 passes, 257 fails with the length in the message."""
    assert validate_key_name("a" * 256) == "a" * 256
    with pytest.raises(InvalidInput, match="257 characters"):
        validate_key_name("a" * 257)


@given(
    st.from_regex(
        r"[A-Za-z_][A-Za-z0-9_.-]{0,20}(/[A-Za-z_][A-Za-z0-9_.-]{0,20}){0,4}", fullmatch=True
    )
)
def test_every_name_of_the_documented_shape_is_valid(name: str) -> None:
    """Any name built from the documented segment pattern without ".." is accepted."""
    if ".." in name:
        with pytest.raises(InvalidInput, match=r'"\.\."'):
            validate_key_name(name)
    else:
        assert validate_key_name(name) == name


@given(st.text(max_size=40))
def test_accepted_names_always_match_the_documented_rule(name: str) -> None:
    """Whatever text is given, it is accepted only if it matches the documented key rule."""
    rule = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*(/[A-Za-z_][A-Za-z0-9_.-]*)*")
    expected = rule.fullmatch(name) is not None and ".." not in name
    try:
        validate_key_name(name)
    except InvalidInput:
        accepted = False
    else:
        accepted = True
    assert accepted == expected


VALID_RESOURCES = ["prod", "Prod-2", "dev_eu", "1st", "a", "A" * 64]

INVALID_RESOURCES = [
    ("", "must not be empty"),
    ("a" * 65, "is 65 characters long; the limit is 64"),
    (" prod", "must not start or end with whitespace"),
    ("prod\n", "must not start or end with whitespace"),
    ("pr\x00od", "control character U+0000"),
    ("prod.eu", 'must start with a letter or digit and contain only letters, digits, "_" and "-"'),
    ("prod/eu", 'no "." and no "/"'),
    ("-prod", "must start with a letter or digit"),
    ("_prod", "must start with a letter or digit"),
    ("prød", "must start with a letter or digit"),
]


@pytest.mark.parametrize("name", VALID_RESOURCES)
def test_valid_resource_names_are_returned_unchanged(name: str) -> None:
    """A project or environment name that follows the rule is accepted as it was given."""
    assert validate_resource_name(name, field="project") == name


@pytest.mark.parametrize(("name", "rule"), INVALID_RESOURCES)
def test_invalid_resource_names_name_the_broken_rule(name: str, rule: str) -> None:
    """Each kind of bad project or environment name is refused, naming the field and the rule."""
    with pytest.raises(InvalidInput) as caught:
        validate_resource_name(name, field="environment")
    assert rule in caught.value.message
    assert caught.value.field == "environment"
    assert caught.value.message.startswith("environment ")


@pytest.mark.parametrize(
    ("key", "variable"),
    [
        ("db/password", "DB_PASSWORD"),
        ("api.v2-token", "API_V2_TOKEN"),
        ("DB_PASSWORD", "DB_PASSWORD"),
        ("_private/x", "_PRIVATE_X"),
        ("a1.b2", "A1_B2"),
    ],
)
def test_env_var_name_follows_the_documented_rule(key: str, variable: str) -> None:
    """Slashes, dots and dashes become underscores and ASCII letters are upper-cased."""
    assert env_var_name(key) == variable


@given(
    st.from_regex(
        r"[A-Za-z_][A-Za-z0-9_.-]{0,20}(/[A-Za-z_][A-Za-z0-9_.-]{0,20}){0,3}", fullmatch=True
    )
)
def test_env_var_names_of_valid_keys_are_posix_names(key: str) -> None:
    """Every valid key gives a portable variable name: upper-case letters, digits, underscores."""
    assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", env_var_name(key))


def test_env_var_names_maps_every_key() -> None:
    """Distinct variable names give a mapping from each key to its variable."""
    assert env_var_names(["db/password", "api.v2-token"]) == {
        "db/password": "DB_PASSWORD",
        "api.v2-token": "API_V2_TOKEN",
    }


def test_env_var_names_collision_names_both_keys_and_the_variable() -> None:
    """Two keys that map to one variable are refused with both keys and the variable named."""
    with pytest.raises(InvalidInput) as caught:
        env_var_names(["db/password", "DB_PASSWORD"])
    message = caught.value.message
    assert '"db/password"' in message
    assert '"DB_PASSWORD"' in message
    assert message.endswith("both map to environment variable DB_PASSWORD")
    assert caught.value.field == "key"


def test_env_var_names_collision_error_is_deterministic() -> None:
    """The collision message is the same whatever order the keys come in."""
    messages = set()
    for keys in (["a-b", "a.b", "A_B"], ["A_B", "a.b", "a-b"], ["a.b", "A_B", "a-b"]):
        with pytest.raises(InvalidInput) as caught:
            env_var_names(keys)
        messages.add(caught.value.message)
    assert messages == {'keys "A_B" and "a-b" both map to environment variable A_B'}


def test_display_name_escapes_invisible_characters() -> None:
    """Names put in messages keep printable text but escape quotes and invisible characters."""
    assert display_name("é/x") == '"é/x"'
    assert display_name('a"b\\c\x00\u2028') == '"a\\"b\\\\c\\u0000\\u2028"'
