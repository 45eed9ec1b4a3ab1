"""Programming-language file types of the scanner corpus (Python, JS/TS, Go, Java, notebooks,
minified bundles): filler code and the ways a value is written in each."""

from __future__ import annotations

import random

from tests.scanner_corpus_syntax import Assign, Lines, Syntax, service_name, token_url
from tests.scanner_corpus_values import (
    VERBS,
    WORDS,
    alnum,
    hexstr,
    ident,
    style_name,
    uuid4,
)


# ---------------------------------------------------------------- Python
def _py_filler(rng: random.Random) -> Lines:
    name, other = ident(rng), rng.choice(WORDS)
    pick = rng.randrange(5)
    if pick == 0:
        return [
            f"def {rng.choice(VERBS)}_{name}(self, {other}_id: int) -> dict[str, object]:",
            f'    """Returns the {other} for ``{other}_id``."""',
            f"    row = self._db.get({other}_id)",
            "    if row is None:",
            f'        raise LookupError(f"no {other} {{{other}_id}}")',
            f"    return {{'id': row.id, '{name}': row.{name}, 'count': len(row.items)}}",
            "",
        ]
    if pick == 1:
        return [
            f"class {other.capitalize()}{rng.choice(WORDS).capitalize()}:",
            f"    timeout = {rng.randint(1, 60)}",
            f"    retries = {rng.randint(1, 9)}",
            "",
            "    def __init__(self, client, *, cache=None):",
            "        self.client = client",
            "        self.cache = cache or {}",
            "",
        ]
    if pick == 2:
        return [
            f"for {other} in {name}s:",
            f"    total += {other}.amount * {other}.quantity",
            f"    seen.add({other}.id)",
            "",
        ]
    if pick == 3:
        return [
            f"def refresh_{other}_token(session) -> None:",
            "    # The token is rotated by the identity provider; we only re-read it.",
            "    token = session.current_token()",
            "    if token.expired:",
            "        session.renew(token)",
            "",
        ]
    return [f"import {rng.choice(('json', 'logging', 'os', 're', 'time'))}", ""]


def _py_assigns() -> tuple[Assign, ...]:
    return (
        lambda rng, w, v: [f'{style_name(w, "upper")} = "{v}"'],
        lambda rng, w, v: [f"    {style_name(w, 'snake')}: str = '{v}'"],
        lambda rng, w, v: [
            f"client = {rng.choice(WORDS).capitalize()}Client(",
            f'    {style_name(w, "snake")}="{v}",',
        ],
        lambda rng, w, v: [f'settings = {{"{style_name(w, "snake")}": "{v}", "debug": False}}'],
        lambda rng, w, v: [f'os.environ.setdefault("{style_name(w, "upper")}", "{v}")'],
    )


PYTHON = Syntax(
    "python",
    lambda rng: f"src/{service_name(rng)}/{ident(rng)}.py",
    _py_filler,
    _py_assigns(),
    head=lambda rng: ['"""Service helpers."""', "", "from __future__ import annotations", ""],
    mentions=(
        lambda rng, w, v: [f'headers = {{"Authorization": "Bearer {v}"}}'],
        lambda rng, w, v: [f'requests.get("{token_url(rng, w, v)[0]}")'],
    ),
    weight=4,
)


# ---------------------------------------------------------------- JavaScript / TypeScript
def _js_filler(rng: random.Random) -> Lines:
    name, other = ident(rng), rng.choice(WORDS)
    fn = style_name(tuple(name.split("_")), "camel")
    pick = rng.randrange(4)
    if pick == 0:
        return [
            f"export async function {fn}({other}Id) {{",
            f"  const res = await fetch(`/api/{other}s/${{{other}Id}}`);",
            "  if (!res.ok) throw new Error(`request failed: ${res.status}`);",
            "  return res.json();",
            "}",
            "",
        ]
    if pick == 1:
        return [
            f"const {other}Columns = [",
            f"  {{ key: '{other}', label: '{other.title()}', width: {rng.randint(40, 300)} }},",
            f"  {{ key: '{name}', label: 'Status', sortable: true }},",
            "];",
            "",
        ]
    if pick == 2:
        return [
            f"function tokenize{other.capitalize()}(text) {{",
            "  return text.split(/\\s+/).filter(Boolean).map((token) => token.toLowerCase());",
            "}",
            "",
        ]
    return [f"import {{ {fn} }} from './{other}';", ""]


JAVASCRIPT = Syntax(
    "javascript",
    lambda rng: f"web/src/{rng.choice(WORDS)}/{ident(rng)}.{rng.choice(('js', 'ts', 'tsx'))}",
    _js_filler,
    (
        lambda rng, w, v: [f"const {style_name(w, 'camel')} = '{v}';"],
        lambda rng, w, v: [f'export const {style_name(w, "upper")} = "{v}";'],
        lambda rng, w, v: ["const config = {", f'  {style_name(w, "camel")}: "{v}",'],
        lambda rng, w, v: [f"  {style_name(w, 'camel')}: `{v}`,"],
    ),
    head=lambda rng: ["'use strict';", ""],
    mentions=(
        lambda rng, w, v: [f"  headers: {{ Authorization: `Bearer {v}` }},"],
        lambda rng, w, v: [f"fetch('{token_url(rng, w, v)[0]}');"],
    ),
    comment="//",
    weight=3,
)


# ---------------------------------------------------------------- Go
def _go_filler(rng: random.Random) -> Lines:
    other = rng.choice(WORDS)
    pick = rng.randrange(3)
    if pick == 0:
        return [
            f"func (s *Service) {rng.choice(VERBS).capitalize()}{other.capitalize()}"
            f"(ctx context.Context, id int64) (*{other.capitalize()}, error) {{",
            f"\trow, err := s.db.QueryRowContext(ctx, query{other.capitalize()}, id)",
            "\tif err != nil {",
            f'\t\treturn nil, fmt.Errorf("load {other} %d: %w", id, err)',
            "\t}",
            f"\treturn scan{other.capitalize()}(row)",
            "}",
            "",
        ]
    if pick == 1:
        return [
            f"type {other.capitalize()} struct {{",
            '\tID        int64     `json:"id"`',
            f'\tName      string    `json:"{other}_name"`',
            '\tCreatedAt time.Time `json:"created_at"`',
            "}",
            "",
        ]
    return [
        "\t// Token buckets refill once a second.",
        f"\tlimit := rate.Limit({rng.randint(5, 500)})",
        "",
    ]


GO = Syntax(
    "go",
    lambda rng: f"internal/{rng.choice(WORDS)}/{ident(rng)}.go",
    _go_filler,
    (
        lambda rng, w, v: [f'const {style_name(w, "camel")} = "{v}"'],
        lambda rng, w, v: [f'\t{style_name(w, "camel")} := "{v}"'],
        lambda rng, w, v: [f'\t{style_name(w, "pascal")}: "{v}",'],
    ),
    head=lambda rng: [f"package {rng.choice(WORDS)}", "", 'import "fmt"', ""],
    mentions=(lambda rng, w, v: [f'\treq.Header.Set("Authorization", "Bearer {v}")'],),
    comment="//",
    weight=2,
)


# ---------------------------------------------------------------- Java
def _java_filler(rng: random.Random) -> Lines:
    other = rng.choice(WORDS)
    return [
        f"    public {other.capitalize()} {rng.choice(VERBS)}{other.capitalize()}(long id) {{",
        f"        {other.capitalize()} found = repository.findById(id).orElseThrow();",
        f'        log.debug("loaded {other} {{}}", id);',
        "        return found;",
        "    }",
        "",
    ]


JAVA = Syntax(
    "java",
    lambda rng: (
        f"src/main/java/com/acme/{rng.choice(WORDS)}/{rng.choice(WORDS).capitalize()}"
        f"{rng.choice(('Service', 'Client', 'Config', 'Repository'))}.java"
    ),
    _java_filler,
    (
        lambda rng, w, v: [f'    private static final String {style_name(w, "upper")} = "{v}";'],
        lambda rng, w, v: [f'        String {style_name(w, "camel")} = "{v}";'],
        lambda rng, w, v: [f'        props.setProperty("{style_name(w, "dotted")}", "{v}");'],
    ),
    head=lambda rng: ["package com.acme;", "", "public class Main {", ""],
    tail=lambda rng: ["}"],
    mentions=(
        lambda rng, w, v: [f'        conn.setRequestProperty("Authorization", "Bearer {v}");'],
    ),
    comment="//",
    lines_ok=False,
    weight=2,
)


# ---------------------------------------------------------------- Jupyter notebook
def _nb_filler(rng: random.Random) -> Lines:
    return [
        "  {",
        '   "cell_type": "code",',
        '   "metadata": {},',
        '   "source": [',
        f'    "df = pd.read_csv(\\"{rng.choice(WORDS)}.csv\\")\\n",',
        f'    "df.groupby(\\"{rng.choice(WORDS)}\\").sum()"',
        "   ]",
        "  },",
    ]


NOTEBOOK = Syntax(
    "notebook",
    lambda rng: f"notebooks/{ident(rng)}.ipynb",
    _nb_filler,
    (
        lambda rng, w, v: [f'    "{style_name(w, "snake")} = \\"{v}\\"\\n",'],
        lambda rng, w, v: [f"    \"{style_name(w, 'upper')} = '{v}'\\n\","],
    ),
    head=lambda rng: ["{", ' "cells": [', '  {"cell_type": "code", "metadata": {}, "source": ['],
    tail=lambda rng: ["  ]}", " ],", ' "nbformat": 4,', ' "nbformat_minor": 5', "}"],
    lines_ok=False,
    weight=1,
)


# ---------------------------------------------------------------- minified JavaScript
def minified_line(rng: random.Random, length: int) -> str:
    """A line of bundler output: short names, hashed chunk names, CSS-in-JS class hashes."""
    parts: list[str] = []
    size = 0
    while size < length:
        a, b = alnum(rng, 1).lower(), alnum(rng, 2)
        pick = rng.randrange(5)
        if pick == 0:
            part = f"function {a}{b}(e,t){{return e.{rng.choice(WORDS)}(t)||null}}"
        elif pick == 1:
            part = f'{a}.p+"static/js/{rng.randint(1, 999)}.{hexstr(rng, 8)}.chunk.js"'
        elif pick == 2:
            part = f'var {a}{b}="css-{alnum(rng, 7).lower()}",{b}{a}="{uuid4(rng)}"'
        elif pick == 3:
            part = (
                f"{a}[{rng.randint(0, 99)}]=function(e){{e.exports={{{b}:{rng.randint(0, 9999)}}}}}"
            )
        else:
            part = f'{a}{b}.{rng.choice(WORDS)}=function(){{return"{rng.choice(WORDS)}"}}'
        parts.append(part)
        size += len(part) + 1
    return ";".join(parts) + ";"


MINIFIED = Syntax(
    "minified",
    lambda rng: f"web/dist/static/js/main.{hexstr(rng, 8)}.min.js",
    lambda rng: [minified_line(rng, rng.randint(2000, 8000))],
    (
        lambda rng, w, v: [
            f'{minified_line(rng, 400)}var {style_name(w, "camel")}="{v}";{minified_line(rng, 400)}'
        ],
    ),
    comment="//",
    lines_ok=False,
    weight=1,
)


CODE_SYNTAXES = (PYTHON, JAVASCRIPT, GO, JAVA, NOTEBOOK, MINIFIED)
