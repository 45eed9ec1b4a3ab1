"""Random building blocks for the scanner corpus: identifiers, names, filler values and the
generic secrets planted by ``tests.scanner_corpus``. Everything takes the caller's seeded
``random.Random``, so a corpus is the same for the same seed."""

from __future__ import annotations

import base64
import random
import string
import uuid

WORDS = (
    "account", "order", "invoice", "customer", "payment", "shipment", "report", "session",
    "profile", "widget", "catalog", "basket", "ledger", "tenant", "region", "bucket", "queue",
    "worker", "schedule", "metric", "billing", "search", "export", "import", "upload", "cache",
    "message", "channel", "webhook", "sync", "audit", "record", "entry", "batch", "stream",
    "window", "layout", "router", "handler", "client", "server", "store", "item", "price",
    "discount", "coupon", "address", "country", "currency", "timezone", "locale", "project",
)  # fmt: skip
VERBS = (
    "load", "save", "fetch", "build", "parse", "render", "update", "delete", "create", "list",
    "merge", "apply", "check", "compute", "format", "resolve", "send", "publish", "collect",
)  # fmt: skip
HOSTS = (
    "api.internal.acme.io", "db.prod.acme.io", "cache.acme.local", "queue.acme.local",
    "svc.cluster.local", "metrics.acme.io", "auth.acme.io", "files.acme.io",
)  # fmt: skip
SENTENCES = (
    "This service reads its settings from the environment at start-up.",
    "Run the migrations before deploying a new release to production.",
    "The worker retries failed jobs with an exponential back-off.",
    "Requests above the limit get a 429 answer and a Retry-After header.",
    "Each tenant has its own schema; the router picks it from the host name.",
    "Logs go to standard output in JSON, one event a line.",
    "Use the staging cluster for load tests, never production.",
    "The cache keeps entries for five minutes and is cleared on deploy.",
    "Invoices are generated nightly and mailed the next morning.",
    "See the runbook for the steps to restore a backup.",
)  # fmt: skip
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
PASSWORD_CHARS = ALNUM + "!#$%&()*+-./:?@[]^_{|}~"

# Names under which people store credentials, as word tuples (styled per syntax).
GENERIC_NAMES = (
    ("db", "password"), ("database", "password"), ("password",), ("admin", "password"),
    ("api", "key"), ("api", "token"), ("auth", "token"), ("access", "token"),
    ("client", "secret"), ("app", "secret"), ("secret", "key"), ("jwt", "secret"),
    ("session", "secret"), ("signing", "key"), ("encryption", "key"), ("private", "key"),
    ("smtp", "password"), ("redis", "password"), ("service", "token"), ("webhook", "secret"),
    ("access", "key"), ("refresh", "token"), ("bot", "token"), ("master", "password"),
)  # fmt: skip


def ident(rng: random.Random) -> str:
    """A snake_case identifier of one or two words."""
    if rng.random() < 0.5:
        return rng.choice(WORDS)
    return f"{rng.choice(VERBS)}_{rng.choice(WORDS)}"


def camel(words: tuple[str, ...]) -> str:
    """``("api", "key")`` -> ``apiKey``."""
    return words[0] + "".join(w.capitalize() for w in words[1:])


def style_name(words: tuple[str, ...], style: str) -> str:
    """The name in one style: upper, snake, camel, pascal, kebab or dotted."""
    if style == "upper":
        return "_".join(words).upper()
    if style == "camel":
        return camel(words)
    if style == "pascal":
        return "".join(w.capitalize() for w in words)
    if style == "kebab":
        return "-".join(words)
    if style == "dotted":
        return ".".join(words)
    return "_".join(words)


def alnum(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALNUM) for _ in range(n))


def hexstr(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def b64(rng: random.Random, n_bytes: int) -> str:
    return base64.b64encode(rng.randbytes(n_bytes)).decode("ascii")


def uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generic_secret(rng: random.Random) -> str:
    """A credential value of the shapes people use: random passwords with symbols, random
    alphanumeric keys, base64 and hex keys, prefixed service keys."""
    shape = rng.randrange(6)
    if shape == 0:
        # Passwords: at least one letter, digit and symbol, no quote, space, ';', ',' or '\'.
        while True:
            value = "".join(rng.choice(PASSWORD_CHARS) for _ in range(rng.randint(12, 24)))
            if (
                any(c.isdigit() for c in value)
                and any(c.isalpha() for c in value)
                and value[0] not in "$%{"
            ):
                return value
    if shape == 1:
        return alnum(rng, rng.randint(20, 40))
    if shape == 2:
        return b64(rng, rng.choice((24, 30, 32, 48)))
    if shape == 3:
        return hexstr(rng, rng.choice((32, 40, 48, 64)))
    if shape == 4:
        return f"{rng.choice(('sk', 'key', 'tok', 'svc'))}-{alnum(rng, rng.randint(24, 36))}"
    return "-".join(alnum(rng, 8) for _ in range(rng.randint(3, 5)))
