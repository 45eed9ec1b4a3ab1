"""The false-positive filters: what they drop, what they keep, and that no input makes them
backtrack for ever."""

from __future__ import annotations

import random
import string

import pytest

from coffer.scanner.engine import Engine
from coffer.scanner.filters import reject_reason
from coffer.scanner.rules import builtin_rules

RULES = builtin_rules()
ENGINE = Engine(RULES)
GENERIC = RULES.by_id("generic-secret")


@pytest.mark.parametrize(
    "value",
    [
        "a.b" + "()" * 60 + "(x",
        "a.b" + "(a)" * 60 + "!",
        "pass" * 50 + "x",
        "test-" * 40 + "x!",
        "${" * 80,
        "{a" * 90 + "}",
        "/a" * 90 + "B",
    ],
)
def test_filters_finish_on_inputs_built_to_backtrack(value: str) -> None:
    """Inputs that make a nested or ambiguous pattern backtrack exponentially complete (the
    test's timeout is the bound; an exponential filter would run for hours)."""
    reject_reason(GENERIC, value, "app.py", quoted=True)
    reject_reason(GENERIC, value, "app.env", quoted=False)


@pytest.mark.parametrize(
    ("line", "path", "found"),
    [
        ('password = "hT9kq2LmZ8wP1xVb"\n', "settings.py", True),
        ("password = read_password_from(vault2)\n", "settings.py", False),
        ("password: str = Field(max_length=4096)\n", "models.py", False),
        ("DB_PASSWORD=hT9kq2LmZ8wP1xVb\n", ".env", True),
        ("export API_TOKEN=hT9kq2LmZ8wP1xVb\n", "deploy.sh", True),
        ("db_password: hT9kq2LmZ8wP1xVb\n", "values.yaml", True),
    ],
)
def test_unquoted_values_count_only_outside_programming_languages(
    line: str, path: str, found: bool
) -> None:
    """In source code a hard-coded secret is a string literal, so an unquoted value there is an
    expression; configuration formats leave values bare and are still reported."""
    assert bool(ENGINE.scan(line.encode(), path)) is found


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("NextPageToken", "identifier"),
        ("AWSAccessKeyId", "identifier"),
        ("https://api.vendor.io/v1/items", "url or arn"),
        ("arn:aws:secretsmanager:us-east-1:1:secret:x", "url or arn"),
        ("2016-09-24T16:18:07Z", "timestamp"),
        ("{html.escape(token)}", "template or pattern"),
        ("[A-Za-z0-9/+]{40}", "template or pattern"),
        ("db/password", "file path"),
        ("--password-stdin", "file path"),
        ("REPLACE-WITH-A-PASSWORD", "placeholder"),
    ],
)
def test_generic_values_that_are_not_secrets_are_dropped_with_a_reason(
    value: str, reason: str
) -> None:
    """Each kind of non-secret value is dropped, and the reason names why."""
    assert reject_reason(GENERIC, value, "config.yaml", quoted=True) == reason


def test_random_secrets_survive_the_generic_filters() -> None:
    """At least 99.5% of random 12-40 character keys of letters, digits and symbols are kept
    (the filters drop shapes, not randomness)."""
    rng = random.Random(42)
    alphabet = string.ascii_letters + string.digits + "+/_-!@#%"
    values = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(12, 40))) for _ in range(4000)
    ]
    dropped = [v for v in values if reject_reason(GENERIC, v, "config.yaml", quoted=True)]
    assert len(dropped) <= len(values) * 0.005, dropped[:10]


def test_a_password_with_regex_like_symbols_is_still_a_secret() -> None:
    """Only real pattern syntax counts as a pattern: symbols such as ']?' in a random password
    do not make it one."""
    assert reject_reason(GENERIC, "T7TTs~_%]?^58yr", "gateway.json", quoted=True) is None
