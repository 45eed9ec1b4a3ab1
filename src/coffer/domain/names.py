"""Rules for the names of secrets, projects and environments, and their environment variables.

A **key name** (the name of a secret) is one or more segments joined by ``/``, so keys can be
grouped in folders (``db/password``). Each segment matches ``[A-Za-z_][A-Za-z0-9_.-]*``; the
whole name is at most ``MAX_KEY_LENGTH`` characters and never contains ``..``.

A **resource name** (a project or an environment) matches ``[A-Za-z0-9][A-Za-z0-9_-]{0,63}``.
It has no ``.`` and no ``/``, which keeps the references ``${ENV.KEY}`` and
``${PROJECT.ENV.KEY}`` unambiguous (see ``coffer.domain.references``).

A key becomes an **environment variable** (for ``.env`` export and ``coffer run``) by replacing
``/``, ``.`` and ``-`` with ``_`` and upper-casing ASCII letters: ``db/password`` becomes
``DB_PASSWORD`` and ``api.v2-token`` becomes ``API_V2_TOKEN``.

Every check raises ``InvalidInput`` whose ``field`` is the one given and whose message states the
rule that broke. Messages never echo a control character raw: they give its code point.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from coffer.domain.errors import InvalidInput

MAX_KEY_LENGTH = 256
MAX_RESOURCE_NAME_LENGTH = 64

_KEY_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_RESOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_PLAIN_VARIABLE = re.compile(r"[A-Z0-9_]+")
_ENV_VAR_TRANSLATION = str.maketrans(
    {"/": "_", ".": "_", "-": "_"}
    | {chr(code): chr(code - 32) for code in range(ord("a"), ord("z") + 1)}
)


def display_name(text: str) -> str:
    """Returns ``text`` in double quotes, safe to put in a message.

    Printable characters are kept (so ``"é"`` reads as itself); any other character (control,
    format, line or paragraph separator) is written as ``\\uXXXX`` (or ``\\UXXXXXXXX``), and
    ``"`` and ``\\`` are escaped with a backslash.
    """
    parts: list[str] = []
    for char in text:
        if char in '"\\':
            parts.append("\\" + char)
        elif char.isprintable():
            parts.append(char)
        elif ord(char) <= 0xFFFF:
            parts.append(f"\\u{ord(char):04x}")
        else:
            parts.append(f"\\U{ord(char):08x}")
    return '"' + "".join(parts) + '"'


def _code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


def _first_control_character(text: str) -> tuple[int, str] | None:
    for position, char in enumerate(text):
        if unicodedata.category(char) == "Cc":
            return position, char
    return None


def _check_common(name: str, *, field: str, limit: int) -> None:
    """Raises InvalidInput for the rules shared by every kind of name, in the documented order."""
    if not name:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(name) > limit:
        raise InvalidInput(
            f"{field} is {len(name)} characters long; the limit is {limit}", field=field
        )
    if name != name.strip():
        raise InvalidInput(f"{field} must not start or end with whitespace", field=field)
    found = _first_control_character(name)
    if found is not None:
        position, char = found
        raise InvalidInput(
            f"{field} must not contain control characters; "
            f"found control character {_code_point(char)} at position {position}",
            field=field,
        )


def validate_key_name(name: str, *, field: str = "key") -> str:
    """Returns ``name`` unchanged when it is a valid key name.

    Raises InvalidInput(field=field) naming the first rule that breaks, checked in this order:
    empty; longer than ``MAX_KEY_LENGTH`` characters; leading or trailing whitespace; a control
    character (NUL included, reported by code point); ``..`` anywhere; an empty segment (leading
    ``/``, trailing ``/`` or ``//``); a segment that does not match ``[A-Za-z_][A-Za-z0-9_.-]*``
    (which also rejects non-ASCII letters).
    """
    _check_common(name, field=field, limit=MAX_KEY_LENGTH)
    if ".." in name:
        raise InvalidInput(f'{field} must not contain ".."', field=field)
    segments = name.split("/")
    if "" in segments:
        raise InvalidInput(
            f'{field} must not have an empty segment (a leading "/", a trailing "/" or "//")',
            field=field,
        )
    for segment in segments:
        if _KEY_SEGMENT.fullmatch(segment) is None:
            raise InvalidInput(
                f"{field} is invalid: segment {display_name(segment)} must start with a letter "
                'or underscore and contain only letters, digits, "_", "." and "-"',
                field=field,
            )
    return name


def is_valid_key_name(name: str) -> bool:
    """Returns True when ``validate_key_name`` would accept ``name``; never raises."""
    try:
        validate_key_name(name)
    except InvalidInput:
        return False
    return True


def validate_resource_name(name: str, *, field: str) -> str:
    """Returns ``name`` unchanged when it is a valid project or environment name.

    Raises InvalidInput(field=field) naming the first rule that breaks, checked in this order:
    empty; longer than 64 characters; leading or trailing whitespace; a control character
    (reported by code point); not matching ``[A-Za-z0-9][A-Za-z0-9_-]{0,63}``.
    """
    _check_common(name, field=field, limit=MAX_RESOURCE_NAME_LENGTH)
    if _RESOURCE_NAME.fullmatch(name) is None:
        raise InvalidInput(
            f"{field} {display_name(name)} must start with a letter or digit and contain only "
            'letters, digits, "_" and "-" (no "." and no "/")',
            field=field,
        )
    return name


def is_valid_resource_name(name: str) -> bool:
    """Returns True when ``validate_resource_name`` would accept ``name``; never raises."""
    try:
        validate_resource_name(name, field="name")
    except InvalidInput:
        return False
    return True


def env_var_name(key: str) -> str:
    """Returns the environment variable name of ``key``.

    The rule: ``/``, ``.`` and ``-`` become ``_`` and ASCII letters are upper-cased; nothing
    else changes. For a valid key name the result matches ``[A-Z_][A-Z0-9_]*``. The key is not
    validated here.
    """
    return key.translate(_ENV_VAR_TRANSLATION)


def _display_variable(variable: str) -> str:
    return variable if _PLAIN_VARIABLE.fullmatch(variable) else display_name(variable)


def env_var_names(keys: Iterable[str]) -> dict[str, str]:
    """Returns a mapping of each key to its environment variable name (see ``env_var_name``).

    Keys are processed in sorted order, so the result and any error are deterministic. Raises
    InvalidInput(field="key") naming both keys and the variable when two keys map to the same
    variable name (``db/password`` and ``DB_PASSWORD`` both map to ``DB_PASSWORD``).
    """
    names: dict[str, str] = {}
    owners: dict[str, str] = {}
    for key in sorted(set(keys)):
        variable = env_var_name(key)
        if variable in owners:
            raise InvalidInput(
                f"keys {display_name(owners[variable])} and {display_name(key)} both map to "
                f"environment variable {_display_variable(variable)}",
                field="key",
            )
        owners[variable] = key
        names[key] = variable
    return names
