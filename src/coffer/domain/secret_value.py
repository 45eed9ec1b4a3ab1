"""``SecretValue``: a plaintext that refuses to show itself by accident."""

from __future__ import annotations

import hmac


class SecretValue:
    """Wraps a plaintext secret so that ``repr``, ``str`` and f-strings print a mask.

    The plaintext is only available through ``reveal()`` (text) or ``reveal_bytes()``.
    Equality is constant-time so comparing two values leaks nothing through timing.
    """

    __slots__ = ("_value",)
    MASK = "********"

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Returns the plaintext; call only where it must leave the process."""
        return self._value

    def reveal_bytes(self) -> bytes:
        """Returns the plaintext as UTF-8 bytes."""
        return self._value.encode("utf-8")

    def __len__(self) -> int:
        return len(self._value.encode("utf-8"))

    def __repr__(self) -> str:
        return f"SecretValue({self.MASK!r})"

    def __str__(self) -> str:
        return self.MASK

    def __format__(self, format_spec: str) -> str:
        return self.MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretValue):
            return NotImplemented
        return hmac.compare_digest(self.reveal_bytes(), other.reveal_bytes())

    def __hash__(self) -> int:
        raise TypeError("SecretValue is not hashable")

    def __reduce__(self) -> str:
        raise TypeError("SecretValue cannot be pickled")
