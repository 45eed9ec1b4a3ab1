"""Realistic fake secrets generated from a rule's ``sample`` template.

A template is a small regex: literals, character classes, ``.``, ``\\d``/``\\w``, groups,
alternation and counted repeats (open repeats are capped at 8 extra). ``CHECKSUM`` in a template
is replaced by the checksum the rule's ``checksum`` format needs, so generated GitHub and coffer
tokens verify. Tests and the benchmark corpus use this; nothing in a scan does.
"""

from __future__ import annotations

import random  # seeded fakes for tests and benchmarks: reproducible, never secrets
import re
import string
from re import _constants as sre_constants  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from coffer.scanner.checksums import base62_crc32
from coffer.scanner.rules import Rule

_CHECKSUM = "CHECKSUM"
_OPEN_REPEAT_EXTRA = 8
_CATEGORIES = {
    sre_constants.CATEGORY_DIGIT: string.digits,
    sre_constants.CATEGORY_WORD: string.ascii_letters + string.digits + "_",
    sre_constants.CATEGORY_SPACE: " ",
}
_PRINTABLE = string.ascii_letters + string.digits + "+/=-_.!@#%^&*"


def generate(rule: Rule, rng: random.Random) -> str:
    """Returns a fake secret (with any context the template includes) that ``rule`` matches."""
    head, marker, tail = rule.sample.partition(_CHECKSUM)
    text = _render(sre_parse.parse(head), rng)
    if not marker:
        return text
    if rule.checksum == "github":
        text += base62_crc32(text[-30:])
    elif rule.checksum == "coffer":
        text += base62_crc32(text.rstrip("_"))  # coffer's CRC covers its whole body
    return text + _render(sre_parse.parse(tail), rng) if tail else text


def _render(parsed: Any, rng: random.Random) -> str:
    return "".join(_render_item(op, av, rng) for op, av in parsed)


def _render_item(op: Any, av: Any, rng: random.Random) -> str:
    if op is sre_constants.LITERAL:
        return chr(av)
    if op is sre_constants.ANY:
        return rng.choice(_PRINTABLE)
    if op is sre_constants.IN:
        return rng.choice(_class_chars(av))
    if op is sre_constants.CATEGORY:
        return rng.choice(_CATEGORIES[av])
    if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
        low, high, item = av
        if high is sre_constants.MAXREPEAT:
            high = low + _OPEN_REPEAT_EXTRA
        return "".join(_render(item, rng) for _ in range(rng.randint(low, high)))
    if op is sre_constants.SUBPATTERN:
        return _render(av[-1], rng)
    if op is sre_constants.BRANCH:
        return _render(rng.choice(av[1]), rng)
    if op is sre_constants.AT:
        return ""
    raise ValueError(f"sample templates cannot use {op}")


def _class_chars(items: Any) -> str:
    chars: list[str] = []
    for op, av in items:
        if op is sre_constants.LITERAL:
            chars.append(chr(av))
        elif op is sre_constants.RANGE:
            chars.extend(chr(c) for c in range(av[0], av[1] + 1))
        elif op is sre_constants.CATEGORY:
            chars.extend(_CATEGORIES[av])
        else:
            raise ValueError(f"sample templates cannot use {op} in a class")
    return "".join(chars)


def sample_secret(rule: Rule, text: str) -> str | None:
    """Returns the part of generated ``text`` that ``rule`` reports as the secret, or None when
    the rule does not match it."""
    match = re.search(rule.regex.encode("utf-8"), text.encode("utf-8"))
    return match.group(rule.secret_group).decode("utf-8") if match else None
