"""What a rule's regex can span: whether any match can contain a newline.

The engine confirms a single-line rule only on the lines where one of its keywords occurs,
which is much faster than running ``re`` over a whole large buffer. The analysis walks Python's
own parse of the pattern and answers ``True`` (may span lines) whenever it is not sure.
"""

from __future__ import annotations

from re import _constants as c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

_NEWLINE = ord("\n")
_CATEGORIES_WITH_NEWLINE = frozenset(
    {c.CATEGORY_SPACE, c.CATEGORY_NOT_DIGIT, c.CATEGORY_NOT_WORD, c.CATEGORY_LINEBREAK}
)


def can_match_newline(regex: str) -> bool:
    """True when some match of ``regex`` may contain ``\\n`` (or when that cannot be ruled out)."""
    parsed = sre_parse.parse(regex)
    dotall = bool(parsed.state.flags & c.SRE_FLAG_DOTALL)
    return _any_newline(parsed, dotall)


def _any_newline(items: Any, dotall: bool) -> bool:
    return any(_item_newline(op, av, dotall) for op, av in items)


def _item_newline(op: Any, av: Any, dotall: bool) -> bool:
    if op is c.LITERAL:
        return bool(av == _NEWLINE)
    if op is c.NOT_LITERAL:
        return bool(av != _NEWLINE)
    if op is c.ANY:
        return dotall
    if op is c.IN:
        return _class_has_newline(av)
    if op is c.CATEGORY:
        return av in _CATEGORIES_WITH_NEWLINE
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
        return _any_newline(av[2], dotall)
    if op is c.SUBPATTERN:
        add_flags = av[1]
        return _any_newline(av[-1], dotall or bool(add_flags & c.SRE_FLAG_DOTALL))
    if op is c.BRANCH:
        return any(_any_newline(branch, dotall) for branch in av[1])
    # An anchor spans nothing; anything unusual may span lines as far as we know.
    return op is not c.AT


def _class_has_newline(items: Any) -> bool:
    negate = bool(items) and items[0][0] is c.NEGATE
    hit = False
    for op, av in items[1:] if negate else items:
        if (
            (op is c.LITERAL and av == _NEWLINE)
            or (op is c.RANGE and av[0] <= _NEWLINE <= av[1])
            or (op is c.CATEGORY and av in _CATEGORIES_WITH_NEWLINE)
        ):
            hit = True
        elif op not in (c.LITERAL, c.RANGE, c.CATEGORY):
            return True
    return not hit if negate else hit
