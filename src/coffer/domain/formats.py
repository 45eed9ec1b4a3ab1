"""Import and export of secrets as ``.env``, JSON and YAML text.

Everything here works on strings in memory; reading and writing files is the caller's business.

Import (``parse_secrets_file``) accepts ``.env`` and JSON and returns ``{key name: value}`` with
every key checked by ``validate_key_name``. ``.env`` text is parsed by python-dotenv without
interpolation (coffer expands its own ``${...}`` references at read time). JSON is an object
whose nested objects become folders (``{"db": {"password": "x"}}`` gives ``db/password``).

Export (``render``) writes ``.env`` (keys become environment variable names, see
``coffer.domain.names.env_var_name``), JSON or YAML (original key names). Every export is sorted,
and reading it back gives exactly the values that were written (for ``.env``: under the
variable names), whatever the characters in the values.

Messages name the line, key or format that is wrong; they never contain a value.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import NoReturn

import yaml
from dotenv.parser import Binding, parse_stream

from coffer.domain.errors import InvalidInput
from coffer.domain.names import display_name, env_var_names, validate_key_name

IMPORT_FORMATS = ("dotenv", "json")
EXPORT_FORMATS = ("dotenv", "json", "yaml")

_NEWLINE = re.compile(r"\r\n|\n|\r")
# Characters that a single-quoted python-dotenv value cannot hold as themselves: the quote ends
# the value, a backslash escapes "\\" and "'", and a line break would make the file multi-line.
_NOT_SINGLE_QUOTABLE = re.compile(r"['\\\r\n]")
# Inside double quotes python-dotenv decodes \\, \", \n and \r (among others); every other
# character stands for itself, so escaping these four makes any string round-trip on one line.
_DOUBLE_QUOTE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}


# --- .env -------------------------------------------------------------------------------------


def _binding_line(binding: Binding) -> int:
    """Returns the 1-based line where the binding's text starts, past leading blank lines."""
    text = binding.original.string
    leading = text[: len(text) - len(text.lstrip())]
    return binding.original.line + len(_NEWLINE.findall(leading))


def parse_dotenv(text: str) -> dict[str, str]:
    """Returns the ``KEY=value`` assignments of ``.env`` text, in file order.

    The syntax is python-dotenv's: comments, blank lines, an ``export`` prefix, unquoted,
    single-quoted and double-quoted (multi-line, with backslash escapes) values. ``$`` is never
    interpolated. A key set twice keeps its last value. Raises InvalidInput with
    ``field="line N"`` for a line python-dotenv cannot parse (an unclosed quote, say) and for a
    key with no ``=`` and no value, and with ``field="key on line N"`` for a key that breaks
    the key name rule.
    """
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        line = _binding_line(binding)
        if binding.error:
            raise InvalidInput(
                f"line {line} is not a KEY=value assignment, a comment or a blank line "
                "(is a quote left open?)",
                field=f"line {line}",
            )
        if binding.key is None:
            continue
        key = validate_key_name(binding.key, field=f"key on line {line}")
        if binding.value is None:
            raise InvalidInput(
                f"key {display_name(key)} on line {line} has no value; every line must be "
                f"KEY=value (write {key}= for an empty value)",
                field=f"line {line}",
            )
        values[key] = binding.value
    return values


def _quote_dotenv_value(value: str) -> str:
    """Returns ``value`` quoted so that python-dotenv reads back exactly ``value``.

    Single quotes when nothing in the value needs escaping (these also stop a shell that sources
    the file from expanding ``$``), otherwise double quotes with ``\\``, ``"``, newline and
    carriage return escaped.
    """
    if _NOT_SINGLE_QUOTABLE.search(value) is None:
        return f"'{value}'"
    escaped = "".join(_DOUBLE_QUOTE_ESCAPES.get(char, char) for char in value)
    return f'"{escaped}"'


def render_dotenv(values: Mapping[str, str]) -> str:
    """Returns ``.env`` text with one ``NAME=value`` line per secret, sorted by ``NAME``.

    ``NAME`` is ``env_var_name(key)``; values are quoted so that
    ``parse_dotenv(render_dotenv(values))`` equals ``{env_var_name(k): v}`` exactly, for any
    text. Raises InvalidInput(field="key") for a key that breaks the key name rule or when two
    keys map to the same variable name.
    """
    for key in values:
        validate_key_name(key)
    names = env_var_names(values)
    lines = sorted(f"{names[key]}={_quote_dotenv_value(value)}\n" for key, value in values.items())
    return "".join(lines)


# --- JSON -------------------------------------------------------------------------------------


class _JsonNumberText(str):
    """A JSON number kept as the text it was written with (so ``1.50`` stays ``1.50``)."""

    __slots__ = ()


def _reject_constant(name: str) -> NoReturn:
    raise InvalidInput(
        f"file uses {name}, which is not JSON; write the value as a string", field="file"
    )


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for name, item in pairs:
        if name in result:
            raise InvalidInput(
                f"file has the name {display_name(name)} twice in one JSON object", field="file"
            )
        result[name] = item
    return result


def _describe(item: object) -> str:
    if item is None:
        return "null"
    if isinstance(item, list):
        return "an array"
    return f"a {type(item).__name__}"


def _flatten(obj: Mapping[str, object], prefix: str) -> Iterator[tuple[str, str]]:
    """Yields ``(folder/key, text)`` for each leaf of a decoded JSON object."""
    for name, item in obj.items():
        path = f"{prefix}{name}"
        if isinstance(item, dict):
            yield from _flatten(item, f"{path}/")
        elif isinstance(item, str):
            yield path, str(item)
        elif isinstance(item, bool):
            yield path, "true" if item else "false"
        else:
            raise InvalidInput(
                f"key {display_name(path)} has {_describe(item)}; a value must be a string, "
                "a number, a boolean or an object (a folder)",
                field=f"key {display_name(path)}",
            )


def parse_json_secrets(text: str) -> dict[str, str]:
    """Returns the secrets of a JSON object of key names to values.

    Nested objects become folders: ``{"db": {"password": "x"}}`` gives ``{"db/password": "x"}``.
    Strings are kept; numbers keep the text they were written with (``5``, ``1.50``) and
    booleans become ``"true"`` / ``"false"``. Raises InvalidInput with ``field="file"`` for text
    that is not JSON (giving line and column), a top level that is not an object, NaN or
    Infinity, or a name repeated in one object; and with ``field="key ..."`` for a null or array
    value, a flattened key that breaks the key name rule, or two entries that flatten to the
    same key (``"db/password"`` next to ``"db": {"password": ...}``).
    """
    try:
        decoded: object = json.loads(
            text.removeprefix("\ufeff"),
            parse_int=_JsonNumberText,
            parse_float=_JsonNumberText,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"file is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
            field="file",
        ) from None
    if not isinstance(decoded, dict):
        raise InvalidInput(
            f"file must hold a JSON object of key names to values; it holds {_describe(decoded)}",
            field="file",
        )
    values: dict[str, str] = {}
    for path, value in _flatten(decoded, ""):
        field = f"key {display_name(path)}"
        validate_key_name(path, field=field)
        if path in values:
            raise InvalidInput(
                f"{field} appears twice: once as a name with a slash and once through a nested "
                "object",
                field=field,
            )
        values[path] = value
    return values


def render_json(values: Mapping[str, str]) -> str:
    """Returns a JSON object of the original key names to values, sorted, indented by 2.

    Non-ASCII characters are written as themselves; the text ends with a newline.
    ``json.loads`` of the result equals ``dict(values)``.
    """
    return json.dumps(dict(values), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- YAML -------------------------------------------------------------------------------------

# PyYAML writes these line breaks raw inside single-quoted or plain scalars when allow_unicode
# is on, and reading them back folds them into spaces; in double quotes they are escaped.
_YAML_LINE_BREAKS = re.compile("[\x85\u2028\u2029]")


class _SecretsYamlDumper(yaml.SafeDumper):
    """A safe dumper that double-quotes strings holding NEL, LS or PS so they round-trip."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = '"' if _YAML_LINE_BREAKS.search(data) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_SecretsYamlDumper.add_representer(str, _represent_str)


def render_yaml(values: Mapping[str, str]) -> str:
    """Returns a YAML mapping of the original key names to values, sorted by key.

    Every value is a string in the YAML too: ``"true"`` and ``"5"`` are quoted, so
    ``yaml.safe_load`` of the result equals ``dict(values)`` for any text.
    """
    return yaml.dump(
        {str(key): str(value) for key, value in values.items()},
        Dumper=_SecretsYamlDumper,
        sort_keys=True,
        allow_unicode=True,
        default_flow_style=False,
    )


# --- dispatch ---------------------------------------------------------------------------------


def parse_secrets_file(
    text: str, *, filename: str | None, fmt: str | None = None
) -> dict[str, str]:
    """Returns the secrets in ``text``, read as ``fmt`` (``"dotenv"`` or ``"json"``).

    When ``fmt`` is None the format is JSON if ``filename`` ends with ``.json`` (any case) or the
    text starts with ``{`` (after whitespace and a byte order mark), else ``.env``. Raises
    InvalidInput(field="format") for any other ``fmt``, and whatever the chosen parser raises.
    """
    if fmt is None:
        looks_like_json = text.removeprefix("\ufeff").lstrip().startswith("{")
        named_json = filename is not None and filename.lower().endswith(".json")
        fmt = "json" if named_json or looks_like_json else "dotenv"
    if fmt == "json":
        return parse_json_secrets(text)
    if fmt == "dotenv":
        return parse_dotenv(text)
    raise InvalidInput(
        f"format {display_name(fmt)} cannot be imported; use one of: {', '.join(IMPORT_FORMATS)}",
        field="format",
    )


_RENDERERS: dict[str, Callable[[Mapping[str, str]], str]] = {
    "dotenv": render_dotenv,
    "json": render_json,
    "yaml": render_yaml,
}


def render(values: Mapping[str, str], fmt: str) -> str:
    """Returns ``values`` written as ``fmt``, one of ``EXPORT_FORMATS``.

    Raises InvalidInput(field="format") for any other format, and whatever the renderer raises.
    """
    renderer = _RENDERERS.get(fmt)
    if renderer is None:
        raise InvalidInput(
            f"format {display_name(fmt)} cannot be exported; use one of: "
            f"{', '.join(EXPORT_FORMATS)}",
            field="format",
        )
    return renderer(values)
