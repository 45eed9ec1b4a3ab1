"""The file types of the scanner corpus: where files go, their filler, and how a value is
written in each (assignments, headers, URLs, command lines). This module holds ``Syntax`` and
the configuration and text formats; ``tests.scanner_corpus_code`` the programming languages.

A ``Syntax`` turns ``(name words, value)`` into the lines people write in that kind of file.
Filler is ordinary code or text with no credential in it; it may use words such as ``token``
or ``key`` the way code does, so a scanner that reports every keyword is caught out.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.scanner_corpus_values import (
    HOSTS,
    SENTENCES,
    VERBS,
    WORDS,
    ident,
    style_name,
)

Lines = list[str]
Assign = Callable[[random.Random, tuple[str, ...], str], Lines]


@dataclass(frozen=True)
class Syntax:
    """One kind of file: ``path`` picks a relative path, ``filler`` a block of ordinary lines,
    ``assigns`` the ways a named value is written (each returns lines, one of which holds the
    value), ``head``/``tail`` wrap the file, ``mentions`` write a bare value in a way
    that needs no name (headers, URLs, command lines). Generic secrets go only where
    ``generic_ok``: a CSV row does not say which column a value belongs to."""

    name: str
    path: Callable[[random.Random], str]
    filler: Callable[[random.Random], Lines]
    assigns: tuple[Assign, ...]
    head: Callable[[random.Random], Lines] = lambda rng: []
    tail: Callable[[random.Random], Lines] = lambda rng: []
    mentions: tuple[Assign, ...] = ()
    comment: str = "#"
    lines_ok: bool = True  # a raw line (a sample with its own context) fits in this file
    generic_ok: bool = True  # a name and its value are written as a key = value pair
    weight: int = 1
    extra: dict[str, str] = field(default_factory=dict)


def service_name(rng: random.Random) -> str:
    return rng.choice(("billing", "orders", "gateway", "search", "auth", "notify", "reports"))


def bearer_lines(rng: random.Random, words: tuple[str, ...], value: str) -> Lines:
    return [f'  -H "Authorization: Bearer {value}" \\']


def token_url(rng: random.Random, words: tuple[str, ...], value: str) -> Lines:
    host = rng.choice(HOSTS)
    return [f"https://{host}/v1/{rng.choice(WORDS)}?access_token={value}&page=2"]


# ---------------------------------------------------------------- YAML (Kubernetes, CI, compose)
def _yaml_filler(rng: random.Random) -> Lines:
    other = rng.choice(WORDS)
    pick = rng.randrange(3)
    if pick == 0:
        return [
            f"  - name: {other}",
            f"    image: registry.acme.io/{other}:{rng.randint(1, 9)}.{rng.randint(0, 30)}",
            "    ports:",
            f"      - containerPort: {rng.choice((80, 8080, 8000, 9090))}",
            "    resources:",
            f"      limits: {{cpu: {rng.randint(1, 4)}00m, memory: {rng.randint(1, 8)}Gi}}",
        ]
    if pick == 1:
        return [
            f"  {other}_timeout: {rng.randint(1, 120)}",
            f"  {other}_enabled: {rng.choice(('true', 'false'))}",
            f"  log_level: {rng.choice(('info', 'debug', 'warning'))}",
        ]
    return [f"  # {rng.choice(SENTENCES)}"]


YAML = Syntax(
    "yaml",
    lambda rng: rng.choice(
        (
            f"deploy/k8s/{service_name(rng)}-{rng.choice(('deployment', 'config', 'values'))}.yaml",
            f".github/workflows/{rng.choice(VERBS)}.yml",
            f"config/{rng.choice(('dev', 'staging', 'prod'))}/{service_name(rng)}.yaml",
            f"charts/{service_name(rng)}/values.yaml",
        )
    ),
    _yaml_filler,
    (
        lambda rng, w, v: [f"  {style_name(w, 'snake')}: {v}"],
        lambda rng, w, v: [f'  {style_name(w, "upper")}: "{v}"'],
        lambda rng, w, v: [f"    {style_name(w, 'camel')}: '{v}'"],
    ),
    head=lambda rng: ["apiVersion: v1", "kind: ConfigMap", "data:"],
    mentions=(
        lambda rng, w, v: [f"  - name: {style_name(w, 'upper')}", f'    value: "{v}"'],
        lambda rng, w, v: [f"  webhook_url: {token_url(rng, w, v)[0]}"],
    ),
    weight=3,
)


# ---------------------------------------------------------------- JSON
def _json_filler(rng: random.Random) -> Lines:
    other = rng.choice(WORDS)
    pick = rng.randrange(3)
    if pick == 0:
        return [f'  "{other}Timeout": {rng.randint(1, 500)},', f'  "{other}Enabled": true,']
    if pick == 1:
        return [f'  "{other}": {{"id": {rng.randint(1, 99999)}, "name": "{ident(rng)}"}},']
    return [f'  "{other}Hosts": ["{rng.choice(HOSTS)}", "{rng.choice(HOSTS)}"],']


JSON = Syntax(
    "json",
    lambda rng: (
        f"config/{service_name(rng)}.{rng.choice(('settings', 'config', 'credentials'))}.json"
    ),
    _json_filler,
    (
        lambda rng, w, v: [f'  "{style_name(w, "camel")}": "{v}",'],
        lambda rng, w, v: [f'  "{style_name(w, "snake")}": "{v}",'],
        lambda rng, w, v: [f'  "env": [{{"name": "{style_name(w, "upper")}", "value": "{v}"}}],'],
    ),
    head=lambda rng: ["{"],
    tail=lambda rng: ['  "version": 1', "}"],
    mentions=(lambda rng, w, v: [f'  "endpoint": "{token_url(rng, w, v)[0]}",'],),
    lines_ok=False,
    weight=3,
)


# ---------------------------------------------------------------- .env
def _env_filler(rng: random.Random) -> Lines:
    other = rng.choice(WORDS).upper()
    return [
        f"{other}_HOST={rng.choice(HOSTS)}",
        f"{other}_PORT={rng.randint(1024, 65000)}",
        f"{other}_POOL_SIZE={rng.randint(1, 50)}",
    ]


ENV = Syntax(
    "env",
    lambda rng: rng.choice(
        (
            f"{service_name(rng)}/.env",
            f"{service_name(rng)}/.env.production",
            f"deploy/{service_name(rng)}.env",
        )
    ),
    _env_filler,
    (
        lambda rng, w, v: [f"{style_name(w, 'upper')}={v}"],
        lambda rng, w, v: [f'{style_name(w, "upper")}="{v}"'],
        lambda rng, w, v: [f"export {style_name(w, 'upper')}='{v}'"],
    ),
    weight=2,
)


# ---------------------------------------------------------------- Terraform
def _tf_filler(rng: random.Random) -> Lines:
    other = rng.choice(WORDS)
    return [
        f'resource "aws_s3_bucket" "{other}" {{',
        f'  bucket = "acme-{other}-{rng.randint(1, 999)}"',
        f'  tags   = {{ team = "{service_name(rng)}", env = "prod" }}',
        "}",
        "",
    ]


TERRAFORM = Syntax(
    "terraform",
    lambda rng: (
        f"infra/{rng.choice(('main', 'providers', 'variables', 'db', 'network'))}"
        f"{rng.randint(1, 99)}.{rng.choice(('tf', 'tfvars'))}"
    ),
    _tf_filler,
    (
        lambda rng, w, v: [f'  {style_name(w, "snake")} = "{v}"'],
        lambda rng, w, v: [f'{style_name(w, "snake")} = "{v}"'],
    ),
    weight=1,
)


# ---------------------------------------------------------------- Dockerfile
def _docker_filler(rng: random.Random) -> Lines:
    return [
        f"RUN apt-get update && apt-get install -y --no-install-recommends {rng.choice(WORDS)}",
        f"COPY {rng.choice(WORDS)}/ /app/{rng.choice(WORDS)}/",
        f"EXPOSE {rng.choice((80, 8080, 3000))}",
    ]


DOCKERFILE = Syntax(
    "dockerfile",
    lambda rng: f"{service_name(rng)}{rng.randint(1, 99)}/Dockerfile",
    _docker_filler,
    (
        lambda rng, w, v: [f"ENV {style_name(w, 'upper')}={v}"],
        lambda rng, w, v: [f'ARG {style_name(w, "upper")}="{v}"'],
    ),
    head=lambda rng: ["FROM python:3.12-slim", "WORKDIR /app"],
    mentions=(lambda rng, w, v: [f"RUN curl -fsSL {token_url(rng, w, v)[0]} -o /tmp/x.tgz"],),
    weight=1,
)


# ---------------------------------------------------------------- shell
def _sh_filler(rng: random.Random) -> Lines:
    other = rng.choice(WORDS)
    return [
        f'if [ ! -d "$WORKDIR/{other}" ]; then',
        f'  mkdir -p "$WORKDIR/{other}"',
        "fi",
        f'echo "{rng.choice(SENTENCES)}"',
        "",
    ]


SHELL = Syntax(
    "shell",
    lambda rng: f"scripts/{rng.choice(VERBS)}-{rng.choice(WORDS)}.sh",
    _sh_filler,
    (
        lambda rng, w, v: [f'export {style_name(w, "upper")}="{v}"'],
        lambda rng, w, v: [f"{style_name(w, 'upper')}='{v}'"],
        lambda rng, w, v: [f"deploy --{style_name(w, 'kebab')}={v} --region eu-west-1"],
    ),
    head=lambda rng: ["#!/usr/bin/env bash", "set -euo pipefail", ""],
    mentions=(
        lambda rng, w, v: [
            f"curl -sS {rng.choice(HOSTS)}/v1/{rng.choice(WORDS)} \\",
            *bearer_lines(rng, w, v),
        ],
        lambda rng, w, v: [f'curl "{token_url(rng, w, v)[0]}"'],
    ),
    weight=2,
)


# ---------------------------------------------------------------- INI / properties
def _ini_filler(rng: random.Random) -> Lines:
    other = rng.choice(WORDS)
    return [f"[{other}]", f"host = {rng.choice(HOSTS)}", f"port = {rng.randint(1000, 9999)}", ""]


INI = Syntax(
    "ini",
    lambda rng: rng.choice(
        (
            f"config/{service_name(rng)}.ini",
            f"config/{service_name(rng)}.cfg",
            f"src/main/resources/application-{rng.choice(('dev', 'prod'))}.properties",
        )
    ),
    _ini_filler,
    (
        lambda rng, w, v: [f"{style_name(w, 'snake')} = {v}"],
        lambda rng, w, v: [f"spring.{rng.choice(WORDS)}.{style_name(w, 'dotted')}={v}"],
        lambda rng, w, v: [f"{style_name(w, 'kebab')}: {v}"],
    ),
    comment=";",
    weight=2,
)


# ---------------------------------------------------------------- XML
def _xml_filler(rng: random.Random) -> Lines:
    other = rng.choice(WORDS)
    return [
        f'  <bean id="{other}Service" class="com.acme.{other.capitalize()}Service">',
        f'    <property name="timeout" value="{rng.randint(1, 99)}"/>',
        "  </bean>",
    ]


XML = Syntax(
    "xml",
    lambda rng: rng.choice(
        (f"config/{service_name(rng)}-context.xml", f"{service_name(rng)}/web.config")
    ),
    _xml_filler,
    (
        lambda rng, w, v: [f"    <{style_name(w, 'camel')}>{v}</{style_name(w, 'camel')}>"],
        lambda rng, w, v: [f'    <add key="{style_name(w, "pascal")}" value="{v}" />'],
        lambda rng, w, v: [f'    <property name="{style_name(w, "camel")}" value="{v}"/>'],
    ),
    head=lambda rng: ['<?xml version="1.0" encoding="UTF-8"?>', "<configuration>"],
    tail=lambda rng: ["</configuration>"],
    comment="<!--",
    lines_ok=False,
    weight=1,
)


# ---------------------------------------------------------------- Markdown
def _md_filler(rng: random.Random) -> Lines:
    return [
        f"## {rng.choice(WORDS).capitalize()}",
        "",
        rng.choice(SENTENCES),
        rng.choice(SENTENCES),
        "",
    ]


MARKDOWN = Syntax(
    "markdown",
    lambda rng: rng.choice((f"docs/{ident(rng)}.md", f"{service_name(rng)}/README.md")),
    _md_filler,
    (
        lambda rng, w, v: ["```sh", f"export {style_name(w, 'upper')}={v}", "```"],
        lambda rng, w, v: [f"Set `{style_name(w, 'snake')}: {v}` in the service's settings."],
    ),
    head=lambda rng: [f"# {rng.choice(WORDS).capitalize()} service", ""],
    mentions=(lambda rng, w, v: [f"The staging key is `{v}` (ask ops to rotate it)."],),
    weight=2,
)


# ---------------------------------------------------------------- CSV
def _csv_filler(rng: random.Random) -> Lines:
    return [
        f"{rng.randint(1, 10**6)},{rng.choice(WORDS)},{rng.choice(WORDS)}@acme.io,"
        f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d},{rng.choice(('EUR', 'USD', 'GBP'))}"
        for _ in range(rng.randint(3, 12))
    ]


CSV = Syntax(
    "csv",
    lambda rng: f"data/{rng.choice(WORDS)}-{rng.randint(2019, 2025)}.csv",
    _csv_filler,
    (lambda rng, w, v: [f"{rng.randint(1, 10**6)},{style_name(w, 'snake')},{v},active"],),
    head=lambda rng: ["id,name,email,amount,currency"],
    lines_ok=False,
    generic_ok=False,  # a CSV row is not a key = value pair; only provider tokens go here
    weight=1,
)


CONFIG_SYNTAXES = (YAML, JSON, ENV, TERRAFORM, DOCKERFILE, SHELL, INI, XML, MARKDOWN, CSV)
