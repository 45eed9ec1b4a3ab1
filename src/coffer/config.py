"""Typed settings from ``COFFER_*`` variables, validated once at start-up.

Every variable coffer reads is listed in ``VARIABLES`` with its default and meaning; the README's
configuration table is this list. Nothing is read at import: call ``Settings.from_env()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict

from coffer.domain.durations import parse_duration
from coffer.domain.errors import ConfigError, InvalidInput

OWASP_ARGON2_MEMORY_KIB = 19456
OWASP_ARGON2_TIME_COST = 2

DEFAULT_PORT = 8390
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
ROOT_PROVIDERS = ("local", "pkcs11", "awskms")

VARIABLES: dict[str, tuple[str, str]] = {
    "COFFER_DIR": ("./.coffer", "Vault directory: SQLite database and root key file."),
    "COFFER_DATABASE_URL": (
        "sqlite:///$COFFER_DIR/coffer.db",
        "SQLAlchemy URL; use postgresql+psycopg://user@host/db for PostgreSQL.",
    ),
    "COFFER_ROOT_KEY": ("(unset)", "Root key as base64 of 32 bytes; overrides the key file."),
    "COFFER_ROOT_KEY_FILE": ("$COFFER_DIR/root.key", "Root key file (mode 0600)."),
    "COFFER_ROOT_PROVIDER": (
        "local",
        "Root key provider for init and rotate-root: local, pkcs11 or awskms.",
    ),
    "COFFER_PKCS11_MODULE": (DEFAULT_PKCS11_MODULE, "PKCS#11 module (pkcs11 provider)."),
    "COFFER_PKCS11_TOKEN": ("(unset)", "Label of the HSM token holding the root key."),
    "COFFER_PKCS11_PIN": ("(unset)", "User PIN of that token."),
    "COFFER_PKCS11_KEY_LABEL": ("coffer-root", "Label of the root AES key in the token."),
    "COFFER_KMS_KEY_ID": ("(unset)", "AWS KMS key id, ARN or alias (awskms provider)."),
    "COFFER_KMS_REGION": ("$AWS_REGION or us-east-1", "AWS region of that key."),
    "COFFER_KMS_ENDPOINT": ("(unset)", "KMS endpoint URL (a VPC endpoint, or a test server)."),
    "COFFER_KMS_TIMEOUT": ("5", "Seconds before a KMS call is given up (never a hang)."),
    "COFFER_HOST": (DEFAULT_HOST, "Address the server listens on."),
    "COFFER_PORT": (str(DEFAULT_PORT), "Port the server listens on."),
    "COFFER_MAX_VALUE_BYTES": ("65536", "Largest secret value accepted, in bytes."),
    "COFFER_MAX_BODY_BYTES": ("1048576", "Largest HTTP request body accepted, in bytes."),
    "COFFER_LOG_LEVEL": ("info", "debug, info, warning or error."),
    "COFFER_ACCESS_LOG": ("false", "Log one line per HTTP request (never bodies)."),
    "COFFER_TLS_CERT": ("(unset)", "PEM certificate: serve HTTPS (with COFFER_TLS_KEY)."),
    "COFFER_TLS_KEY": ("(unset)", "PEM private key for COFFER_TLS_CERT."),
    "COFFER_TRUSTED_PROXIES": (
        "(none)",
        "Comma-separated proxy addresses/CIDRs whose X-Forwarded-For is believed.",
    ),
    "COFFER_REDIS_URL": (
        "(unset)",
        "redis://host:port/db: rate-limit counters and cache invalidation shared by every node.",
    ),
    "COFFER_WORKERS": ("1", "Server worker processes on this machine (each one a full node)."),
    "COFFER_NODE_ID": ("host:pid", "This node's name in job leases and logs."),
    "COFFER_CACHE_SECONDS": (
        "30",
        "Longest a node keeps a token's identity or a secret's ciphertext cached (0: no cache).",
    ),
    "COFFER_JOB_LEASE_SECONDS": (
        "30",
        "A background job's lease: another node takes the job this long after its holder died.",
    ),
    "COFFER_RATE_LIMIT_IP": ("6000/minute", "API requests per client address, or off."),
    "COFFER_RATE_LIMIT_IDENTITY": ("3000/minute", "API requests per identity, or off."),
    "COFFER_LOGIN_RATE_LIMIT": ("20/minute", "Login attempts per client address."),
    "COFFER_LOGIN_FAILURE_LIMIT": (
        "5 per 15 minutes",
        "Failed logins per account before it is locked for the rest of the window.",
    ),
    "COFFER_CLI_TOKEN_TTL": ("90d", "Default lifetime of a `coffer login` token."),
    "COFFER_AUDIT_RETENTION_DAYS": (
        "0",
        "Prune audit entries older than this many days (0 keeps everything).",
    ),
    "COFFER_AUDIT_CHECKPOINT_ENTRIES": ("1000", "Sign an audit checkpoint every N entries."),
    "COFFER_AUDIT_CHECKPOINT_SECONDS": (
        "60",
        "...and at most this many seconds after a new entry.",
    ),
    "COFFER_AUDIT_SEAL_INTERVAL_MS": ("1000", "How often new audit entries join the tree."),
    "COFFER_PRUNE_INTERVAL": (
        "60",
        "Seconds between runs of the pruner that destroys expired secrets (0: never).",
    ),
    "COFFER_ROTATION_CHECK_SECONDS": (
        "3600",
        "Seconds between runs of the job that sends rotation.due/rotation.overdue (0: never).",
    ),
    "COFFER_AUDIT_STREAMS": (
        "(none)",
        "Comma-separated SIEM sinks: syslog+tcp://host:port, syslog+udp://..., https://...",
    ),
    "COFFER_OUTBOUND_ALLOW": (
        "(none)",
        "Hosts, addresses or CIDRs that webhooks may reach although private or loopback.",
    ),
    "COFFER_PRODUCTION_ENVIRONMENTS": (
        "production,prod",
        "Environments whose reads are watched for anomalies.",
    ),
    "COFFER_ANOMALY_READ_BURST": (
        "100/minute",
        "Reads by one identity above this rate record anomaly.detected.",
    ),
    "COFFER_SESSION_IDLE": ("1h", "Browser session idle expiry."),
    "COFFER_SESSION_MAX": ("12h", "Browser session absolute expiry."),
    "COFFER_INVITATION_TTL": ("7d", "How long an invitation can be accepted."),
    "COFFER_ARGON2_MEMORY_KIB": ("19456", "Argon2id memory (KiB); never below OWASP's 19456."),
    "COFFER_ARGON2_TIME_COST": ("2", "Argon2id iterations; never below 2."),
    "COFFER_HASH_CONCURRENCY": ("1", "Password hashes computed at once (the rest queue)."),
    "COFFER_ADDR": (f"http://{DEFAULT_HOST}:{DEFAULT_PORT}", "CLI: server address."),
    "COFFER_TOKEN": ("(unset)", "CLI: API token; overrides `coffer login`."),
    "COFFER_CONFIG": ("~/.config/coffer/config.json", "CLI: file written by `coffer login`."),
    "COFFER_CA_CERT": ("(unset)", "CLI: CA bundle that signs the server's TLS certificate."),
}

_LOG_LEVELS = ("debug", "info", "warning", "error")


def _duration(env: Mapping[str, str], name: str, default: str) -> int:
    raw = env.get(name) or default
    try:
        return parse_duration(raw, field=name, maximum=10 * 365 * 86400)
    except InvalidInput as exc:
        raise ConfigError(exc.message) from None


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name) or ""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else None


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    """Server-side settings. Build with ``from_env``; tests may use ``replace``."""

    directory: Path = Path(".coffer")
    database_url: str = ""
    root_key_b64: str | None = field(default=None, repr=False)
    root_key_file: Path = Path(".coffer/root.key")
    root_provider: str = "local"
    pkcs11_module: Path = Path(DEFAULT_PKCS11_MODULE)
    pkcs11_token: str | None = None
    pkcs11_pin: str | None = field(default=None, repr=False)
    pkcs11_key_label: str = "coffer-root"
    kms_key_id: str | None = None
    kms_region: str = "us-east-1"
    kms_endpoint: str | None = None
    kms_timeout: float = 5.0
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_value_bytes: int = 65536
    max_body_bytes: int = 1048576
    log_level: str = "info"
    access_log: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    trusted_proxies: tuple[str, ...] = ()
    redis_url: str | None = field(default=None, repr=False)
    rate_limit_ip: str = "6000/minute"
    rate_limit_identity: str = "3000/minute"
    login_rate_limit: str = "20/minute"
    login_failure_limit: str = "5 per 15 minutes"
    cli_token_ttl: int = 90 * 86400
    session_idle: int = 3600
    session_max: int = 12 * 3600
    invitation_ttl: int = 7 * 86400
    argon2_memory_kib: int = OWASP_ARGON2_MEMORY_KIB
    argon2_time_cost: int = OWASP_ARGON2_TIME_COST
    hash_concurrency: int = 1
    audit_retention_days: int = 0
    audit_checkpoint_entries: int = 1000
    audit_checkpoint_seconds: int = 60
    audit_seal_interval: float = 1.0
    prune_interval: int = 60
    rotation_check_seconds: int = 3600
    audit_streams: tuple[str, ...] = field(default=(), repr=False)
    outbound_allow: tuple[str, ...] = ()
    production_environments: tuple[str, ...] = ("production", "prod")
    anomaly_read_burst: str = "100/minute"
    workers: int = 1
    node_id: str = ""
    cache_seconds: int = 30
    job_lease_seconds: int = 30

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, directory: Path | None = None
    ) -> Settings:
        """Returns settings from ``env`` (default ``os.environ``); an explicit ``directory``
        (the CLI's ``--dir``) wins over ``COFFER_DIR``. Raises ConfigError naming the variable."""
        env = os.environ if env is None else env
        vault_dir = directory or Path(env.get("COFFER_DIR") or ".coffer")
        url = env.get("COFFER_DATABASE_URL") or f"sqlite:///{vault_dir / 'coffer.db'}"
        if not (url.startswith("sqlite") or url.startswith("postgresql")):
            raise ConfigError(
                "COFFER_DATABASE_URL must start with sqlite:// or postgresql+psycopg://, "
                f"got scheme {url.split(':', 1)[0]!r}"
            )
        level = (env.get("COFFER_LOG_LEVEL") or "info").lower()
        if level not in _LOG_LEVELS:
            raise ConfigError(f"COFFER_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}")
        return cls(
            directory=vault_dir,
            database_url=url,
            root_key_b64=env.get("COFFER_ROOT_KEY") or None,
            root_key_file=Path(env.get("COFFER_ROOT_KEY_FILE") or vault_dir / "root.key"),
            **_root_key_settings(env),
            host=env.get("COFFER_HOST") or DEFAULT_HOST,
            port=_int(env, "COFFER_PORT", DEFAULT_PORT, minimum=1, maximum=65535),
            max_value_bytes=_int(env, "COFFER_MAX_VALUE_BYTES", 65536, minimum=1, maximum=1 << 24),
            max_body_bytes=_int(
                env, "COFFER_MAX_BODY_BYTES", 1048576, minimum=1024, maximum=1 << 28
            ),
            log_level=level,
            access_log=_bool(env, "COFFER_ACCESS_LOG", False),
            **_security_settings(env),
            **_audit_settings(env),
            **_node_settings(env),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """Returns a copy with the given fields changed (used by CLI flags and tests)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_sqlite(self) -> bool:
        """True when the database is an embedded SQLite file."""
        return self.database_url.startswith("sqlite")


class _RootKeySettings(TypedDict):
    root_provider: str
    pkcs11_module: Path
    pkcs11_token: str | None
    pkcs11_pin: str | None
    pkcs11_key_label: str
    kms_key_id: str | None
    kms_region: str
    kms_endpoint: str | None
    kms_timeout: float


def _root_key_settings(env: Mapping[str, str]) -> _RootKeySettings:
    """The root key provider's settings; raises ConfigError naming the variable. Whether a
    provider's own variables are all set is checked when that provider is used."""
    provider = (env.get("COFFER_ROOT_PROVIDER") or "local").strip().lower()
    if provider not in ROOT_PROVIDERS:
        raise ConfigError(f"COFFER_ROOT_PROVIDER must be one of {', '.join(ROOT_PROVIDERS)}")
    endpoint = env.get("COFFER_KMS_ENDPOINT") or None
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError("COFFER_KMS_ENDPOINT must be an http:// or https:// URL")
    return {
        "root_provider": provider,
        "pkcs11_module": Path(env.get("COFFER_PKCS11_MODULE") or DEFAULT_PKCS11_MODULE),
        "pkcs11_token": env.get("COFFER_PKCS11_TOKEN") or None,
        "pkcs11_pin": env.get("COFFER_PKCS11_PIN") or None,
        "pkcs11_key_label": env.get("COFFER_PKCS11_KEY_LABEL") or "coffer-root",
        "kms_key_id": env.get("COFFER_KMS_KEY_ID") or None,
        "kms_region": env.get("COFFER_KMS_REGION") or env.get("AWS_REGION") or "us-east-1",
        "kms_endpoint": endpoint,
        "kms_timeout": float(_int(env, "COFFER_KMS_TIMEOUT", 5, minimum=1, maximum=120)),
    }


class _SecuritySettings(TypedDict):
    tls_cert: Path | None
    tls_key: Path | None
    trusted_proxies: tuple[str, ...]
    redis_url: str | None
    rate_limit_ip: str
    rate_limit_identity: str
    login_rate_limit: str
    login_failure_limit: str
    cli_token_ttl: int
    session_idle: int
    session_max: int
    invitation_ttl: int
    argon2_memory_kib: int
    argon2_time_cost: int
    hash_concurrency: int


def _security_settings(env: Mapping[str, str]) -> _SecuritySettings:
    """The identity, TLS and rate-limit settings; raises ConfigError naming the variable."""
    tls_cert = _optional_path(env, "COFFER_TLS_CERT")
    tls_key = _optional_path(env, "COFFER_TLS_KEY")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("COFFER_TLS_CERT and COFFER_TLS_KEY must be set together")
    redis_url = env.get("COFFER_REDIS_URL") or None
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("COFFER_REDIS_URL must start with redis://, rediss:// or unix://")
    return {
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "trusted_proxies": _list(env, "COFFER_TRUSTED_PROXIES"),
        "redis_url": redis_url,
        "rate_limit_ip": env.get("COFFER_RATE_LIMIT_IP") or "6000/minute",
        "rate_limit_identity": env.get("COFFER_RATE_LIMIT_IDENTITY") or "3000/minute",
        "login_rate_limit": env.get("COFFER_LOGIN_RATE_LIMIT") or "20/minute",
        "login_failure_limit": env.get("COFFER_LOGIN_FAILURE_LIMIT") or "5 per 15 minutes",
        "cli_token_ttl": _duration(env, "COFFER_CLI_TOKEN_TTL", "90d"),
        "session_idle": _duration(env, "COFFER_SESSION_IDLE", "1h"),
        "session_max": _duration(env, "COFFER_SESSION_MAX", "12h"),
        "invitation_ttl": _duration(env, "COFFER_INVITATION_TTL", "7d"),
        "argon2_memory_kib": _int(
            env,
            "COFFER_ARGON2_MEMORY_KIB",
            OWASP_ARGON2_MEMORY_KIB,
            minimum=OWASP_ARGON2_MEMORY_KIB,
            maximum=4 * 1024 * 1024,
        ),
        "argon2_time_cost": _int(
            env, "COFFER_ARGON2_TIME_COST", OWASP_ARGON2_TIME_COST, minimum=2, maximum=64
        ),
        "hash_concurrency": _int(env, "COFFER_HASH_CONCURRENCY", 1, minimum=1, maximum=64),
    }


class _AuditSettings(TypedDict):
    audit_retention_days: int
    audit_checkpoint_entries: int
    audit_checkpoint_seconds: int
    audit_seal_interval: float
    prune_interval: int
    rotation_check_seconds: int
    audit_streams: tuple[str, ...]
    outbound_allow: tuple[str, ...]
    production_environments: tuple[str, ...]
    anomaly_read_burst: str


def _audit_settings(env: Mapping[str, str]) -> _AuditSettings:
    """The audit log, streaming, webhook and anomaly settings; raises ConfigError naming the
    variable."""
    seal_ms = _int(env, "COFFER_AUDIT_SEAL_INTERVAL_MS", 1000, minimum=10, maximum=60_000)
    return {
        "audit_retention_days": _int(
            env, "COFFER_AUDIT_RETENTION_DAYS", 0, minimum=0, maximum=100 * 365
        ),
        "audit_checkpoint_entries": _int(
            env, "COFFER_AUDIT_CHECKPOINT_ENTRIES", 1000, minimum=1, maximum=1_000_000
        ),
        "audit_checkpoint_seconds": _int(
            env, "COFFER_AUDIT_CHECKPOINT_SECONDS", 60, minimum=1, maximum=86400
        ),
        "audit_seal_interval": seal_ms / 1000,
        "prune_interval": _int(env, "COFFER_PRUNE_INTERVAL", 60, minimum=0, maximum=86400),
        "rotation_check_seconds": _int(
            env, "COFFER_ROTATION_CHECK_SECONDS", 3600, minimum=0, maximum=7 * 86400
        ),
        "audit_streams": _list(env, "COFFER_AUDIT_STREAMS"),
        "outbound_allow": _list(env, "COFFER_OUTBOUND_ALLOW"),
        "production_environments": _list(env, "COFFER_PRODUCTION_ENVIRONMENTS")
        or ("production", "prod"),
        "anomaly_read_burst": env.get("COFFER_ANOMALY_READ_BURST") or "100/minute",
    }


class _NodeSettings(TypedDict):
    workers: int
    node_id: str
    cache_seconds: int
    job_lease_seconds: int


def _node_settings(env: Mapping[str, str]) -> _NodeSettings:
    return {
        "workers": _int(env, "COFFER_WORKERS", 1, minimum=1, maximum=64),
        "node_id": (env.get("COFFER_NODE_ID") or "").strip()[:128],
        "cache_seconds": _int(env, "COFFER_CACHE_SECONDS", 30, minimum=0, maximum=3600),
        "job_lease_seconds": _int(env, "COFFER_JOB_LEASE_SECONDS", 30, minimum=2, maximum=3600),
    }
