"""Rotators: how a secret is rotated at its source, and the contract every kind keeps.

A rotator is configured per secret (``RotatorConfig``, parsed from a request by
``parse_rotator_config``):

* ``random``: a new random value of ``length`` characters (16 to 256, default 32) from an
  ``alphabet``: ``alnum`` (letters and digits, the default), ``hex`` (lowercase), ``base64url``
  (letters, digits, ``-`` and ``_``) or ``ascii`` (printable ASCII without space).
* ``postgresql``: a new random password (``length`` letters and digits) for the PostgreSQL
  ``role``, set through the admin connection URL held by the vault secret ``connection``
  (``project/environment/KEY``). The configuration names that secret; it never holds a
  credential.

The contract (``Rotator``): ``rotate(current, config, connection)`` changes the credential at
its source and returns a ``PendingRotation`` holding the new value; the old value keeps
working when it raises (``RotationFailed``, saying why without any credential). The caller
then stores the new value in the vault and calls ``commit()``, or, when storing fails,
``rollback()``, which puts the old credential back at the source.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from coffer.domain.errors import InvalidInput
from coffer.domain.names import is_valid_key_name, is_valid_resource_name
from coffer.domain.references import SecretRef
from coffer.domain.secret_value import SecretValue

MIN_LENGTH = 16
MAX_LENGTH = 256
DEFAULT_LENGTH = 32
# A PostgreSQL identifier as written without quotes (NAMEDATALEN - 1 = 63 bytes at most).
# It is always sent quoted (psycopg.sql.Identifier) all the same.
_ROLE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


class RotatorKind(StrEnum):
    """The kinds of rotators."""

    RANDOM = "random"
    POSTGRESQL = "postgresql"


class Alphabet(StrEnum):
    """The characters a random value is drawn from."""

    ALNUM = "alnum"
    HEX = "hex"
    BASE64URL = "base64url"
    ASCII = "ascii"


ALPHABETS: Mapping[Alphabet, str] = {
    Alphabet.ALNUM: string.ascii_letters + string.digits,
    Alphabet.HEX: "0123456789abcdef",
    Alphabet.BASE64URL: string.ascii_letters + string.digits + "-_",
    Alphabet.ASCII: "".join(chr(code) for code in range(33, 127)),
}

# The fields each kind takes (besides ``kind``).
_FIELDS: Mapping[RotatorKind, frozenset[str]] = {
    RotatorKind.RANDOM: frozenset({"length", "alphabet"}),
    RotatorKind.POSTGRESQL: frozenset({"length", "role", "connection"}),
}


@dataclass(frozen=True)
class RotatorConfig:
    """A validated rotator configuration (parameters only, never a credential)."""

    kind: RotatorKind
    length: int = DEFAULT_LENGTH
    alphabet: Alphabet = Alphabet.ALNUM
    role: str | None = None
    connection: SecretRef | None = None

    def to_json(self) -> dict[str, str | int]:
        """The parameters as stored and shown (``connection`` as ``project/env/KEY``)."""
        if self.kind is RotatorKind.RANDOM:
            return {"length": self.length, "alphabet": self.alphabet.value}
        assert self.role is not None and self.connection is not None
        return {
            "role": self.role,
            "connection": connection_text(self.connection),
            "length": self.length,
        }

    @classmethod
    def from_json(cls, kind: str, stored: Mapping[str, object]) -> RotatorConfig:
        """The configuration stored by ``to_json`` (validated again)."""
        return parse_rotator_config({"kind": kind, **stored})


def connection_text(ref: SecretRef) -> str:
    """``project/environment/KEY`` of a vault secret."""
    return f"{ref.project}/{ref.environment}/{ref.key}"


def parse_connection(value: object, *, field: str = "connection") -> SecretRef:
    """Returns the vault secret named ``project/environment/KEY`` (the key may hold ``/``).
    Raises InvalidInput naming ``field`` otherwise (the text is not echoed: someone may
    have pasted a credential)."""
    if isinstance(value, str):
        parts = value.split("/", 2)
        if (
            len(parts) == 3
            and is_valid_resource_name(parts[0])
            and is_valid_resource_name(parts[1])
            and is_valid_key_name(parts[2])
        ):
            return SecretRef(parts[0], parts[1], parts[2])
    raise InvalidInput(
        f"{field} must name the vault secret holding the admin connection URL as "
        "project/environment/KEY (for example ops/production/PG_ADMIN_URL), never the URL "
        "itself",
        field=field,
    )


def _length(value: object) -> int:
    if value is None:
        return DEFAULT_LENGTH
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(
            f"length must be an integer from {MIN_LENGTH} to {MAX_LENGTH}", field="length"
        )
    if not MIN_LENGTH <= value <= MAX_LENGTH:
        raise InvalidInput(
            f"length must be from {MIN_LENGTH} to {MAX_LENGTH} characters, not {value}",
            field="length",
        )
    return value


def _alphabet(value: object) -> Alphabet:
    if value is None:
        return Alphabet.ALNUM
    names = ", ".join(a.value for a in Alphabet)
    if not isinstance(value, str) or value not in {a.value for a in Alphabet}:
        raise InvalidInput(f"alphabet must be one of {names}", field="alphabet")
    return Alphabet(value)


def parse_role(value: object) -> str:
    """Returns ``value`` when it is a PostgreSQL role name written as a plain identifier (a
    letter or ``_``, then letters, digits, ``_`` or ``$``; at most 63 characters; not a
    reserved ``pg_`` role). Raises InvalidInput naming ``role`` otherwise."""
    if not isinstance(value, str) or not _ROLE.fullmatch(value):
        raise InvalidInput(
            "role must be a PostgreSQL identifier: a letter or _ followed by letters, digits, "
            "_ or $, at most 63 characters",
            field="role",
        )
    if value.lower().startswith("pg_"):
        raise InvalidInput("role must not be a reserved pg_ role", field="role")
    return value


def parse_rotator_config(body: Mapping[str, object]) -> RotatorConfig:
    """Returns the configuration ``body`` describes: ``kind`` (``random`` or ``postgresql``)
    and that kind's fields (see the module docstring). Raises InvalidInput naming the field
    and its rule: an unknown kind, a length outside 16..256, an unknown alphabet, a role that
    is not a plain identifier, a connection that is not ``project/environment/KEY``, a field
    the kind does not take."""
    kind_text = body.get("kind")
    kinds = ", ".join(k.value for k in RotatorKind)
    if not isinstance(kind_text, str) or kind_text not in {k.value for k in RotatorKind}:
        raise InvalidInput(f"kind must be one of {kinds}", field="kind")
    kind = RotatorKind(kind_text)
    given = {name for name, value in body.items() if name != "kind" and value is not None}
    foreign = sorted(given - _FIELDS[kind])
    if foreign:
        raise InvalidInput(
            f"{foreign[0]} does not apply to a {kind.value} rotator", field=foreign[0]
        )
    length = _length(body.get("length"))
    if kind is RotatorKind.RANDOM:
        return RotatorConfig(kind=kind, length=length, alphabet=_alphabet(body.get("alphabet")))
    if body.get("role") is None:
        raise InvalidInput("role is required for a postgresql rotator", field="role")
    if body.get("connection") is None:
        raise InvalidInput("connection is required for a postgresql rotator", field="connection")
    return RotatorConfig(
        kind=kind,
        length=length,
        role=parse_role(body.get("role")),
        connection=parse_connection(body.get("connection")),
    )


class PendingRotation(Protocol):
    """A credential changed at its source whose new value is not stored in the vault yet."""

    @property
    def value(self) -> SecretValue:
        """The new value."""
        ...

    def commit(self) -> None:
        """Called once the new value is stored in the vault."""
        ...

    def rollback(self) -> None:
        """Called when storing the new value failed: puts the old credential back at the
        source. Raises RotationFailed when it cannot (the message says the source now holds
        a value the vault does not)."""
        ...


class Rotator(Protocol):
    """One kind of rotator (see the module docstring for the contract)."""

    @property
    def kind(self) -> RotatorKind:
        """The kind this rotator implements."""
        ...

    def rotate(
        self, current: SecretValue, config: RotatorConfig, connection: SecretValue | None
    ) -> PendingRotation:
        """Changes the credential whose value is ``current`` at its source (``connection``
        is the value of ``config.connection``, None for kinds without one) and returns the
        pending rotation. Raises RotationFailed saying why, with the old value still
        working and nothing changed."""
        ...
