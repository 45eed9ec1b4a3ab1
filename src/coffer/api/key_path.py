"""A URL convertor for secret keys: the rest of the path, newlines and all.

Starlette's ``path`` convertor stops at a newline, so a key holding one would fall through to a
bare 404; with this one it reaches the route and is refused with 400 naming the rule.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class SecretKeyConvertor(Convertor[str]):
    """Matches one or more characters of any kind, "/" included."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        """Returns the path text unchanged (validation is the service's job)."""
        return value

    def to_string(self, value: str) -> str:
        """Returns the key as it goes into a URL."""
        return value


def register_secret_key_convertor() -> None:
    """Makes ``{name:secretkey}`` available to route paths; safe to call more than once."""
    register_url_convertor("secretkey", SecretKeyConvertor())
