"""The ``random`` rotator: a new value drawn with ``secrets`` from the configured alphabet.

There is no source to change: the new value only has to be stored, so committing and rolling
back do nothing.
"""

from __future__ import annotations

import secrets

from coffer.domain.rotators import ALPHABETS, Alphabet, PendingRotation, RotatorConfig, RotatorKind
from coffer.domain.secret_value import SecretValue


def random_value(length: int, alphabet: Alphabet) -> SecretValue:
    """A new value of ``length`` characters, each drawn uniformly from ``alphabet`` by the
    operating system's cryptographic generator."""
    characters = ALPHABETS[alphabet]
    return SecretValue("".join(secrets.choice(characters) for _ in range(length)))


class NewValue:
    """A pending rotation with nothing to undo at a source."""

    __slots__ = ("_value",)

    def __init__(self, value: SecretValue) -> None:
        self._value = value

    @property
    def value(self) -> SecretValue:
        """The new value."""
        return self._value

    def commit(self) -> None:
        """Nothing to do: no source was changed."""

    def rollback(self) -> None:
        """Nothing to undo: no source was changed."""

    def __repr__(self) -> str:
        return f"NewValue({self._value!r})"


class RandomRotator:
    """Rotates a secret to a new random value."""

    @property
    def kind(self) -> RotatorKind:
        """``random``."""
        return RotatorKind.RANDOM

    def rotate(
        self, current: SecretValue, config: RotatorConfig, connection: SecretValue | None
    ) -> PendingRotation:
        """Returns a new value of ``config.length`` characters of ``config.alphabet``
        (``current`` and ``connection`` are not used). Never fails."""
        return NewValue(random_value(config.length, config.alphabet))
