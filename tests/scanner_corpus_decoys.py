"""Decoys for the scanner corpus: text that looks like a credential and is not one.

Each maker returns the lines of one decoy written in a file type's syntax; every line of it is
a decoy line (a finding on any of them is a false positive). ``lockfile`` writes whole
lockfiles whose hash lines are decoys.
"""

from __future__ import annotations

import base64
import random
import textwrap
from collections.abc import Callable

from coffer.scanner.checksums import VERIFIERS
from coffer.scanner.rules import Rule
from coffer.scanner.samples import generate, sample_secret
from tests.scanner_corpus_syntax import Syntax
from tests.scanner_corpus_values import (
    GENERIC_NAMES,
    WORDS,
    alnum,
    b64,
    hexstr,
    uuid4,
)

Lines = list[str]

# Published in vendors' documentation as examples (AWS, jwt.io, Stripe's API reference, Slack).
DOC_EXAMPLES = (
    (("aws", "access", "key", "id"), "AKIAIOSFODNN7EXAMPLE"),
    (("aws", "secret", "access", "key"), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    (
        ("id", "token"),
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwi"
        "aWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    ),
    (("stripe", "secret", "key"), "sk_test_4eC39HqLyjWDarjtT1zdp7dc"),
    (("stripe", "publishable", "key"), "pk_test_TYooMQauvdEDq54NiTphI7jx"),
    (("slack", "bot", "token"), "xoxb-not-a-real-token-this-will-not-work"),
)
PLACEHOLDERS = (
    "your-api-key-here", "<TOKEN>", "<your-secret>", "xxxxxxxxxxxxxxxxxxxx", "changeme",
    "CHANGE_ME", "${SECRET}", "${DB_PASSWORD}", "REPLACE_ME_WITH_REAL_KEY", "********",
    "<insert token>", "YOUR_TOKEN_HERE", "TODO-set-me", "...", "{{ api_key }}", "%(password)s",
)  # fmt: skip
FIXTURES = (
    "test123", "test-key", "dummy-token", "password123", "s3cr3t", "P@ssw0rd!", "testtesttest",
    "fake_api_key_for_tests", "mock-client-secret", "secret", "hunter2", "letmein123",
    "test-token-1234", "admin123", "passw0rd", "example-secret",
)  # fmt: skip
ENV_LOOKUPS: dict[str, tuple[str, ...]] = {
    "python": (
        'api_key = os.environ["API_KEY"]',
        'password = os.getenv("DB_PASSWORD", "")',
        'token = os.environ.get("GITHUB_TOKEN")',
        "client_secret = env.str('CLIENT_SECRET')",
    ),
    "javascript": (
        "const token = process.env.TOKEN;",
        "  apiKey: process.env.STRIPE_API_KEY,",
        "const secret = process.env['JWT_SECRET'] || '';",
        "  password: import.meta.env.VITE_DB_PASSWORD,",
    ),
    "go": ('\tapiKey := os.Getenv("API_KEY")', '\tpassword, ok := os.LookupEnv("DB_PASSWORD")'),
    "java": (
        '        String password = System.getenv("DB_PASSWORD");',
        '    @Value("${app.jwt.secret}") private String jwtSecret;',
    ),
    "yaml": (
        "  password: ${{ secrets.DB_PASSWORD }}",
        "  GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
        "  api_key: {{ .Values.apiKey }}",
        "  client_secret: ${CLIENT_SECRET}",
        "  token: !ENV ${SERVICE_TOKEN}",
    ),
    "json": ('  "password": "${DB_PASSWORD}",', '  "apiKey": "{{API_KEY}}",'),
    "env": ("DATABASE_PASSWORD=${POSTGRES_PASSWORD}", "API_TOKEN=$(cat /run/secrets/api_token)"),
    "terraform": (
        "  password = var.db_password",
        '  token    = data.vault_generic_secret.ci.data["token"]',
    ),
    "dockerfile": ("ARG NPM_TOKEN", "ENV API_KEY=${API_KEY}"),
    "shell": (
        'export API_TOKEN="${API_TOKEN:?set it first}"',
        'PASSWORD="$(vault kv get -field=password secret/db)"',
    ),
    "ini": ("password = %(DB_PASSWORD)s", "spring.datasource.password=${DB_PASSWORD}"),
    "xml": (
        '    <add key="ApiKey" value="%API_KEY%" />',
        "    <password>${db.password}</password>",
    ),
    "markdown": ("Run `export API_TOKEN=$(coffer get api/token)` before the script.",),
}
CODE_REFERENCES: dict[str, tuple[str, ...]] = {
    "python": (
        "password = get_password()",
        "token = self.token",
        "api_key = settings.API_KEY",
        'secret = config.get("secret")',
        'access_token = response.json()["access_token"]',
        "password = hashlib.sha256(raw).hexdigest()",
        "client_secret = credentials.client_secret",
    ),
    "javascript": (
        "const token = req.headers.authorization;",
        "  apiKey: this.apiKey,",
        "const password = await promptPassword(user);",
        "const secretKey = keyring.getSecretKey(accountName);",
    ),
    "go": ("\tpassword := cfg.Database.Password", "\ttoken, err := auth.TokenSource(ctx).Token()"),
    "java": (
        '        String secret = props.getProperty("app.secret");',
        "        char[] password = console.readPassword();",
    ),
    "yaml": ("  password_file: /run/secrets/db_password", "  token_path: /var/run/secrets/token"),
    "terraform": (
        "  password = random_password.db.result",
        "  secret_key = aws_iam_access_key.ci.secret",
    ),
}


def _pem(label: str, rng: random.Random, n_bytes: int) -> Lines:
    body = base64.b64encode(rng.randbytes(n_bytes)).decode("ascii")
    return [f"-----BEGIN {label}-----", *textwrap.wrap(body, 64), f"-----END {label}-----"]


def _assign(syntax: Syntax, rng: random.Random, words: tuple[str, ...], value: str) -> Lines:
    return rng.choice(syntax.assigns)(rng, words, value)


def doc_example(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    words, value = rng.choice(DOC_EXAMPLES)
    return _assign(syntax, rng, words, value)


def placeholder(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    if rng.random() < 0.5:
        return _assign(syntax, rng, rng.choice(GENERIC_NAMES), rng.choice(PLACEHOLDERS))
    # A provider's format with its random part written as x: ghp_xxxx..., AKIAXXXX...
    rule = rng.choice(rules)
    secret = sample_secret(rule, generate(rule, rng)) or ""
    keep = min(len(secret) // 3, 8)
    value = secret[:keep] + "".join(
        ("X" if c.isupper() else "x") if c.isalnum() else c for c in secret[keep:]
    )
    return _assign(syntax, rng, tuple(rule.id.split("-")[:3]), value)


def env_lookup(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    return [rng.choice(ENV_LOOKUPS.get(syntax.name, ENV_LOOKUPS["env"]))]


def code_reference(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    return [rng.choice(CODE_REFERENCES.get(syntax.name, CODE_REFERENCES["python"]))]


def uuid_value(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    words = rng.choice((("request", "id"), ("token", "id"), ("api", "key", "id"), ("tenant", "id")))
    return _assign(syntax, rng, words, uuid4(rng))


def git_sha(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    sha = hexstr(rng, 40)
    return rng.choice(
        (
            [f"      - uses: actions/checkout@{sha}  # v4"],
            _assign(syntax, rng, ("commit", "sha"), sha),
            _assign(syntax, rng, ("revision",), sha),
        )
    )


def content_hash(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    return rng.choice(
        (
            _assign(syntax, rng, ("checksum",), f"sha256:{hexstr(rng, 64)}"),
            [f"    image: registry.acme.io/{rng.choice(WORDS)}@sha256:{hexstr(rng, 64)}"],
            _assign(syntax, rng, ("etag",), hexstr(rng, 32)),
            [f'<script src="/app.js" integrity="sha384-{b64(rng, 48)}" crossorigin></script>'],
        )
    )


def test_fixture(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    return _assign(syntax, rng, rng.choice(GENERIC_NAMES), rng.choice(FIXTURES))


def bad_checksum(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    checked = [rule for rule in rules if rule.checksum]
    rule = rng.choice(checked)
    verify = VERIFIERS[rule.checksum or ""]
    while True:
        secret = sample_secret(rule, generate(rule, rng)) or ""
        broken = secret[:-1] + rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz")
        if not verify(broken) and sample_secret(rule, broken) == broken:
            return _assign(syntax, rng, tuple(rule.id.split("-")[:3]), broken)


def public_key(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    if rng.random() < 0.5:
        return _pem("PUBLIC KEY", rng, 294)
    kind = rng.choice(
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ")
    )
    return [f"{kind}{b64(rng, 36 if 'ed25519' in kind else 380)} {rng.choice(WORDS)}@build-host"]


def certificate(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    return _pem("CERTIFICATE", rng, rng.choice((600, 900, 1200)))


def data_uri(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    payload = "iVBORw0KGgoAAAANSUhEUgAA" + b64(rng, rng.randint(150, 1500))
    return rng.choice(
        (
            [f'  background-image: url("data:image/png;base64,{payload}");'],
            [f"![logo](data:image/png;base64,{payload})"],
            [f'  "icon": "data:image/png;base64,{payload}",'],
        )
    )


def request_id(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    return rng.choice(
        (
            [f"X-Request-Id: {hexstr(rng, 32)}"],
            [f'  "requestId": "req_{alnum(rng, 24)}",'],
            [f"12:04:11 INFO trace_id={hexstr(rng, 32)} span_id={hexstr(rng, 16)} done"],
            [f'  "correlationId": "{b64(rng, 18)}",'],
        )
    )


def css_hash(rng: random.Random, syntax: Syntax, rules: list[Rule]) -> Lines:
    return [
        f'<div class="css-{alnum(rng, 7).lower()} sc-{alnum(rng, 6)} {alnum(rng, 6)}" '
        f'data-reactid="{hexstr(rng, 12)}">'
    ]


MAKERS: dict[str, Callable[[random.Random, Syntax, list[Rule]], Lines]] = {
    "doc-example": doc_example,
    "placeholder": placeholder,
    "env-lookup": env_lookup,
    "code-reference": code_reference,
    "uuid": uuid_value,
    "git-sha": git_sha,
    "content-hash": content_hash,
    "test-fixture": test_fixture,
    "bad-checksum": bad_checksum,
    "public-key": public_key,
    "certificate": certificate,
    "data-uri": data_uri,
    "request-id": request_id,
    "css-hash": css_hash,
}


def lockfile(rng: random.Random) -> tuple[str, Lines, list[int]]:
    """A lockfile: (file name, lines, indexes of the lines holding hashes)."""
    names = ["js-tokens", "secret-handshake", "keytar", "api-key-auth", "oauth-token-store"]
    names += [f"{rng.choice(WORDS)}-{rng.choice(WORDS)}" for _ in range(rng.randint(20, 60))]
    kind = rng.randrange(3)
    lines: Lines = []
    hashes: list[int] = []
    if kind == 0:
        lines += ["{", '  "name": "web",', '  "lockfileVersion": 3,', '  "packages": {']
        for name in names:
            version = f"{rng.randint(0, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
            lines += [
                f'    "node_modules/{name}": {{',
                f'      "version": "{version}",',
                f'      "resolved": "https://registry.npmjs.org/{name}/-/{name}-{version}.tgz",',
            ]
            hashes.append(len(lines))
            lines += [f'      "integrity": "sha512-{b64(rng, 64)}",', "    },"]
        lines += ["  }", "}"]
        return "package-lock.json", lines, hashes
    if kind == 1:
        for name in names:
            lines += [
                "[[package]]",
                f'name = "{name}"',
                f'version = "{rng.randint(0, 9)}.0"',
                "files = [",
            ]
            for _ in range(2):
                hashes.append(len(lines))
                lines.append(
                    f'    {{file = "{name}-1.0.tar.gz", hash = "sha256:{hexstr(rng, 64)}"}},'
                )
            lines += ["]", ""]
        return "poetry.lock", lines, hashes
    for name in names:
        module = f"github.com/acme/{name}"
        hashes.append(len(lines))
        lines.append(f"{module} v1.{rng.randint(0, 9)}.0 h1:{b64(rng, 32)}")
        hashes.append(len(lines))
        lines.append(f"{module} v1.{rng.randint(0, 9)}.0/go.mod h1:{b64(rng, 32)}")
    return "go.sum", lines, hashes
