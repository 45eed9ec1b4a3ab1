"""A JSON column whose stored text is exactly the text coffer wrote.

PostgreSQL's ``json`` type (not ``jsonb``) and SQLite's text keep the characters they are
given, so audit metadata written as canonical JSON can be hashed as stored, without parsing
and re-encoding every entry. Binds accept a ready JSON text (or an object, encoded
canonically); results come back parsed, unless a query selects ``json_text(column)``.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode


def canonical_json(value: Any) -> str:
    """Returns compact, key-sorted, ASCII-only JSON of ``value``."""
    return _encode(value)


class json_text(FunctionElement[str]):  # noqa: N801 - reads as a SQL function
    """``json_text(column)``: the stored JSON text of a column, unparsed."""

    inherit_cache = True
    type = sa.Text()


@compiles(json_text)
def _json_text_default(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(json_text, "postgresql")
def _json_text_postgresql(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TEXT)"


class CanonicalJSON(sa.types.TypeDecorator[Any]):
    """A ``JSON`` column written as canonical JSON text (see module docstring)."""

    impl = sa.JSON
    cache_ok = True

    def bind_processor(self, dialect: sa.Dialect) -> Any:
        def process(value: Any) -> str | None:
            if value is None or isinstance(value, str):
                return value
            return canonical_json(value)

        return process

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Any:
        def process(value: Any) -> Any:
            return json.loads(value) if isinstance(value, str) else value

        return process
