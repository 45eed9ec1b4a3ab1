"""Text from scanned files (paths, names) made safe to print or to write on one line."""

from __future__ import annotations


def escape_unprintable(text: str) -> str:
    """Returns ``text`` with every unprintable character (controls such as ESC or a newline,
    line and paragraph separators, format characters) written as its Python escape (``\\x1b``,
    ``\\n``, ``\\u2028``), so it can neither drive a terminal nor break a line-based format."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
