"""Typed settings from ``COFFER_*`` variables, validated once at start-up.

Every variable coffer reads is listed in ``VARIABLES`` with its default and meaning; the README's
configuration table is this list. Nothing is read at import: call ``Settings.from_env()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from coffer.domain.errors import ConfigError

DEFAULT_PORT = 8390
DEFAULT_HOST = "127.0.0.1"

VARIABLES: dict[str, tuple[str, str]] = {
    "COFFER_DIR": ("./.coffer", "Vault directory: SQLite database and root key file."),
    "COFFER_DATABASE_URL": (
        "sqlite:///$COFFER_DIR/coffer.db",
        "SQLAlchemy URL; use postgresql+psycopg://user@host/db for PostgreSQL.",
    ),
    "COFFER_ROOT_KEY": ("(unset)", "Root key as base64 of 32 bytes; overrides the key file."),
    "COFFER_ROOT_KEY_FILE": ("$COFFER_DIR/root.key", "Root key file (mode 0600)."),
    "COFFER_HOST": (DEFAULT_HOST, "Address the server listens on."),
    "COFFER_PORT": (str(DEFAULT_PORT), "Port the server listens on."),
    "COFFER_MAX_VALUE_BYTES": ("65536", "Largest secret value accepted, in bytes."),
    "COFFER_MAX_BODY_BYTES": ("1048576", "Largest HTTP request body accepted, in bytes."),
    "COFFER_LOG_LEVEL": ("info", "debug, info, warning or error."),
    "COFFER_ACCESS_LOG": ("false", "Log one line per HTTP request (never bodies)."),
    "COFFER_ADDR": (f"http://{DEFAULT_HOST}:{DEFAULT_PORT}", "CLI: server address."),
    "COFFER_TOKEN": ("(unset)", "CLI: API token; overrides `coffer login`."),
    "COFFER_CONFIG": ("~/.config/coffer/config.json", "CLI: file written by `coffer login`."),
}

_LOG_LEVELS = ("debug", "info", "warning", "error")


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
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    max_value_bytes: int = 65536
    max_body_bytes: int = 1048576
    log_level: str = "info"
    access_log: bool = False

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
            host=env.get("COFFER_HOST") or DEFAULT_HOST,
            port=_int(env, "COFFER_PORT", DEFAULT_PORT, minimum=1, maximum=65535),
            max_value_bytes=_int(env, "COFFER_MAX_VALUE_BYTES", 65536, minimum=1, maximum=1 << 24),
            max_body_bytes=_int(
                env, "COFFER_MAX_BODY_BYTES", 1048576, minimum=1024, maximum=1 << 28
            ),
            log_level=level,
            access_log=_bool(env, "COFFER_ACCESS_LOG", False),
        )

    def with_overrides(self, **changes: object) -> Settings:
        """Returns a copy with the given fields changed (used by CLI flags and tests)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_sqlite(self) -> bool:
        """True when the database is an embedded SQLite file."""
        return self.database_url.startswith("sqlite")
