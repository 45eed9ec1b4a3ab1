"""Import and export of secrets as .env, JSON and YAML text."""

from __future__ import annotations

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from coffer.domain.errors import InvalidInput
from coffer.domain.formats import (
    EXPORT_FORMATS,
    parse_dotenv,
    parse_json_secrets,
    parse_secrets_file,
    render,
    render_dotenv,
    render_json,
    render_yaml,
)
from coffer.domain.names import env_var_name

KEY_NAMES = st.from_regex(
    r"[A-Za-z_][A-Za-z0-9_.-]{0,12}(/[A-Za-z_][A-Za-z0-9_.-]{0,12}){0,2}", fullmatch=True
).filter(lambda key: ".." not in key)
VARIABLE_NAMES = st.from_regex(r"[A-Z_][A-Z0-9_]{0,15}", fullmatch=True)
# Characters that trip up quoting: quotes, escapes, comment and interpolation marks, every
# kind of line break, invisible and non-BMP characters.
AWKWARD = st.lists(
    st.sampled_from(
        [
            *" \t\n\r\x0b\x0c\x00\x1b\x7f\x85\u2028\u2029\ufeff\ufffe'\"`\\$#={}[]:,&*!|>%@-?",
            "é",
            "ß",
            "\U0001f511",
            "n",
            "a",
            "$$",
            "${A}",
            "\\n",
            "\\'",
            '\\"',
            "\r\n",
        ]
    ),
    max_size=30,
).map("".join)
VALUES = st.one_of(st.text(), AWKWARD)
TRICKY_STRINGS = [
    "",
    " leading and trailing ",
    "multi\nline\r\nvalue\r",
    "quote ' and \" both",
    "back\\slash \\n \\' \\\" \\\\",
    "dollar $HOME ${HOME} $${X}",
    "hash # not a comment",
    "a=b=c",
    "true",
    "5",
    "null",
    "~",
    "- item",
    "key: value",
    "unicode é ß \U0001f511",
    "\x00\x1b\x7f",
    "\x85\u2028\u2029",
    "\ufeffbom",
]


# --- .env import ------------------------------------------------------------------------------


def test_parse_dotenv_reads_comments_export_and_quotes() -> None:
    """Comments, blank lines, export prefixes and all three quoting styles are understood."""
    text = (
        "# database\n"
        "\n"
        "export DB_USER=app\n"
        "DB_PASSWORD='p@ss $word # not a comment'\n"
        'GREETING="hello\\nworld \\"quoted\\""\n'
        "PLAIN=value with spaces   # a comment\n"
        "EMPTY=\n"
        "db/host=localhost\n"
        "  INDENTED = yes\n"
    )
    assert parse_dotenv(text) == {
        "DB_USER": "app",
        "DB_PASSWORD": "p@ss $word # not a comment",
        "GREETING": 'hello\nworld "quoted"',
        "PLAIN": "value with spaces",
        "EMPTY": "",
        "db/host": "localhost",
        "INDENTED": "yes",
    }


def test_parse_dotenv_does_not_interpolate() -> None:
    """${VAR} in a .env value is kept as written, for coffer's own references."""
    assert parse_dotenv("A=1\nB=${A}-$A\n") == {"A": "1", "B": "${A}-$A"}


def test_parse_dotenv_reads_multiline_double_quoted_values() -> None:
    """A double-quoted value may span lines, as python-dotenv allows."""
    assert parse_dotenv('CERT="line1\nline2"\nNEXT=1\n') == {"CERT": "line1\nline2", "NEXT": "1"}


def test_parse_dotenv_key_without_value_names_key_and_line() -> None:
    """A bare key with no = is refused, naming the key and its line."""
    with pytest.raises(InvalidInput) as caught:
        parse_dotenv("A=1\n\n# comment\nLONELY\n")
    assert caught.value.field == "line 4"
    assert '"LONELY"' in caught.value.message
    assert "LONELY=" in caught.value.message


def test_parse_dotenv_invalid_key_names_the_line_and_rule() -> None:
    """A key that breaks the key name rule is refused with its line number."""
    with pytest.raises(InvalidInput) as caught:
        parse_dotenv("GOOD=1\n9BAD=2\n")
    assert caught.value.field == "key on line 2"
    assert 'segment "9BAD" must start with a letter or underscore' in caught.value.message


def test_parse_dotenv_unparsable_line_is_refused_without_echoing_it() -> None:
    """A line python-dotenv cannot parse is an error, and its text (maybe a value) is not shown."""
    with pytest.raises(InvalidInput) as caught:
        parse_dotenv('A=1\nB="s3cret-unclosed\n')
    assert caught.value.field == "line 2"
    assert "s3cret" not in caught.value.message


def test_parse_dotenv_last_assignment_wins() -> None:
    """A key set twice keeps its last value, as a shell would."""
    assert parse_dotenv("A=1\nA=2\n") == {"A": "2"}


# --- .env export ------------------------------------------------------------------------------


def test_render_dotenv_sorts_by_variable_and_quotes() -> None:
    """Lines are NAME=value sorted by variable name, single-quoted when nothing needs escaping."""
    text = render_dotenv({"db/password": "p$ss", "api.v2-token": "it's\n"})
    assert text == "API_V2_TOKEN=\"it's\\n\"\nDB_PASSWORD='p$ss'\n"


def test_render_dotenv_refuses_colliding_keys() -> None:
    """Two keys with one variable name cannot be exported to .env."""
    with pytest.raises(InvalidInput, match="both map to environment variable DB_PASSWORD"):
        render_dotenv({"db/password": "a", "DB_PASSWORD": "b"})


def test_render_dotenv_refuses_invalid_keys() -> None:
    """A key that is not a valid key name would corrupt the file, so it is refused."""
    with pytest.raises(InvalidInput) as caught:
        render_dotenv({"A=B\nC": "x"})
    assert caught.value.field == "key"


@pytest.mark.parametrize("value", TRICKY_STRINGS)
def test_dotenv_round_trips_tricky_values(value: str) -> None:
    """Each awkward value is read back exactly as it was exported."""
    assert parse_dotenv(render_dotenv({"K": value})) == {"K": value}


@settings(max_examples=300)
@given(st.dictionaries(VARIABLE_NAMES, VALUES, max_size=6))
def test_dotenv_round_trips_any_text(values: dict[str, str]) -> None:
    """Any text values come back exactly from the exported .env."""
    assert parse_dotenv(render_dotenv(values)) == values


@given(st.dictionaries(KEY_NAMES, VALUES, max_size=6))
def test_dotenv_round_trips_under_variable_names(values: dict[str, str]) -> None:
    """Folder and dotted keys come back under their environment variable names."""
    variables = [env_var_name(key) for key in values]
    if len(set(variables)) < len(variables):
        with pytest.raises(InvalidInput, match="both map to environment variable"):
            render_dotenv(values)
        return
    expected = {env_var_name(key): value for key, value in values.items()}
    assert parse_dotenv(render_dotenv(values)) == expected


# --- JSON -------------------------------------------------------------------------------------


def test_parse_json_flattens_nested_objects_into_folders() -> None:
    """Nested objects become folder keys joined with a slash."""
    text = '{"db": {"password": "x", "replica": {"host": "r"}}, "API_KEY": "k"}'
    assert parse_json_secrets(text) == {
        "db/password": "x",
        "db/replica/host": "r",
        "API_KEY": "k",
    }


def test_parse_json_keeps_number_text_and_booleans() -> None:
    """Numbers keep the text they were written with; booleans become true and false."""
    text = '{"PORT": 5, "RATIO": 1.50, "BIG": 1e400, "ON": true, "OFF": false}'
    assert parse_json_secrets(text) == {
        "PORT": "5",
        "RATIO": "1.50",
        "BIG": "1e400",
        "ON": "true",
        "OFF": "false",
    }


@pytest.mark.parametrize(
    ("text", "field", "rule"),
    [
        ('{"db": {"password": null}}', 'key "db/password"', "has null"),
        ('{"HOSTS": ["a", "b"]}', 'key "HOSTS"', "has an array"),
        ("[1, 2]", "file", "must hold a JSON object"),
        ('"just a string"', "file", "must hold a JSON object"),
        ('{"A": NaN}', "file", "NaN"),
        ('{"A": "1", "A": "2"}', "file", 'the name "A" twice'),
        ('{"9bad": "x"}', 'key "9bad"', 'segment "9bad" must start'),
        ('{"db": {"": "x"}}', 'key "db/"', "empty segment"),
        ('{"db/password": "a", "db": {"password": "b"}}', 'key "db/password"', "appears twice"),
    ],
)
def test_parse_json_refuses_what_is_not_a_secret_map(text: str, field: str, rule: str) -> None:
    """Values and shapes that cannot be secrets are refused, naming the key and the rule."""
    with pytest.raises(InvalidInput) as caught:
        parse_json_secrets(text)
    assert caught.value.field == field
    assert rule in caught.value.message


def test_parse_json_malformed_gives_the_position() -> None:
    """Malformed JSON is refused with the line and column of the problem."""
    with pytest.raises(InvalidInput) as caught:
        parse_json_secrets('{\n  "A": "1",\n  "B": \n}')
    assert caught.value.field == "file"
    assert "line 4 column 1" in caught.value.message


def test_parse_json_malformed_does_not_echo_values() -> None:
    """The error for broken JSON does not quote the document, which holds secret values."""
    with pytest.raises(InvalidInput) as caught:
        parse_json_secrets('{"A": "hunter2" "B": "x"}')
    assert "hunter2" not in caught.value.message


@given(st.dictionaries(KEY_NAMES, VALUES, max_size=6))
def test_json_round_trips(values: dict[str, str]) -> None:
    """Exported JSON loads back to the same keys and values."""
    text = render_json(values)
    assert json.loads(text) == values
    assert text.endswith("\n")


@given(st.dictionaries(VARIABLE_NAMES, VALUES, max_size=6))
def test_json_export_imports_back(values: dict[str, str]) -> None:
    """Exported JSON of flat keys is imported back unchanged."""
    assert parse_json_secrets(render_json(values)) == values


def test_render_json_is_sorted_and_indented() -> None:
    """JSON export is sorted by key, indented by two spaces, with original key names."""
    assert render_json({"b/x": "2", "a": "é"}) == '{\n  "a": "é",\n  "b/x": "2"\n}\n'


# --- YAML -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", TRICKY_STRINGS)
def test_yaml_round_trips_tricky_values(value: str) -> None:
    """Awkward values, even ones YAML would read as bool, number or null, stay strings."""
    assert yaml.safe_load(render_yaml({"k": value})) == {"k": value}


@settings(max_examples=300)
@given(st.dictionaries(st.one_of(KEY_NAMES, st.sampled_from(["true", "null", "on", "5"])), VALUES))
def test_yaml_round_trips(values: dict[str, str]) -> None:
    """Exported YAML loads back, with yaml.safe_load, to the same strings."""
    assert yaml.safe_load(render_yaml(values)) == (values or {})


def test_render_yaml_is_sorted_with_original_keys() -> None:
    """YAML export keeps key names and sorts them."""
    assert render_yaml({"db/password": "x", "API": "5"}) == "API: '5'\ndb/password: x\n"


# --- dispatch ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "filename", "fmt", "expected"),
    [
        ('{"A": "1"}', None, None, {"A": "1"}),
        ('  \n {"A": "1"}', "secrets.env", None, {"A": "1"}),
        ('\ufeff{"A": "1"}', None, None, {"A": "1"}),
        ('"A"', "secrets.JSON", None, "json"),
        ("A=1\n", None, None, {"A": "1"}),
        ("A=1\n", "prod.env", None, {"A": "1"}),
        ("A=1\n", "prod.json", "dotenv", {"A": "1"}),
        ('{"A": "1"}', None, "json", {"A": "1"}),
    ],
)
def test_parse_secrets_file_picks_the_format(
    text: str, filename: str | None, fmt: str | None, expected: dict[str, str] | str
) -> None:
    """The format comes from fmt, else the .json suffix or a leading brace, else .env."""
    if expected == "json":
        with pytest.raises(InvalidInput, match="JSON object"):
            parse_secrets_file(text, filename=filename, fmt=fmt)
        return
    assert parse_secrets_file(text, filename=filename, fmt=fmt) == expected


def test_parse_secrets_file_refuses_unknown_format() -> None:
    """An import format other than dotenv or json is refused on the format field."""
    with pytest.raises(InvalidInput) as caught:
        parse_secrets_file("A: 1", filename=None, fmt="yaml")
    assert caught.value.field == "format"
    assert "dotenv, json" in caught.value.message


def test_render_dispatches_to_each_export_format() -> None:
    """render gives the same text as the renderer of each named format."""
    values = {"db/password": "x"}
    assert EXPORT_FORMATS == ("dotenv", "json", "yaml")
    assert render(values, "dotenv") == render_dotenv(values)
    assert render(values, "json") == render_json(values)
    assert render(values, "yaml") == render_yaml(values)


def test_render_refuses_unknown_format() -> None:
    """An export format outside EXPORT_FORMATS is refused on the format field."""
    with pytest.raises(InvalidInput) as caught:
        render({"A": "1"}, "toml")
    assert caught.value.field == "format"
    assert '"toml"' in caught.value.message
