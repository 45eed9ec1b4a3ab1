"""Where the CLI finds its server and token: flags > COFFER_ADDR/COFFER_TOKEN > config file;
and the CA bundle that signs the server's certificate (COFFER_CA_CERT)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from coffer.config import DEFAULT_HOST, DEFAULT_PORT
from coffer.domain.errors import ConfigError

DEFAULT_ADDR = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def config_path() -> Path:
    """Returns COFFER_CONFIG, else $XDG_CONFIG_HOME/coffer/config.json, else ~/.config/..."""
    explicit = os.environ.get("COFFER_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "coffer" / "config.json"


@dataclass(frozen=True)
class ClientSettings:
    """The server address and token the CLI uses, and the CA bundle it trusts (None: the
    system's)."""

    addr: str
    token: str | None
    ca_cert: str | None = None

    def __repr__(self) -> str:
        token = "***" if self.token else None
        return f"ClientSettings(addr={self.addr!r}, token={token}, ca_cert={self.ca_cert!r})"


def _read_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the CLI config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the CLI config file {path} must hold a JSON object")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def load_client_settings() -> ClientSettings:
    """Returns the address and token from the environment, falling back to the config file."""
    stored = _read_file(config_path())
    addr = os.environ.get("COFFER_ADDR") or stored.get("addr") or DEFAULT_ADDR
    token = os.environ.get("COFFER_TOKEN") or stored.get("token") or None
    ca_cert = os.environ.get("COFFER_CA_CERT") or None
    return ClientSettings(addr=addr.rstrip("/"), token=token, ca_cert=ca_cert)


def saved_token() -> str | None:
    """Returns the token in the config file (not COFFER_TOKEN's), if any."""
    return _read_file(config_path()).get("token") or None


def save_client_settings(settings: ClientSettings) -> Path:
    """Writes the config file with mode 0600 (directory 0700) and returns its path."""
    return _write_file({"addr": settings.addr, "token": settings.token or ""})


def forget_token() -> Path | None:
    """Removes the token from the config file, keeping the address; returns the file's path,
    or None when there was no token to remove."""
    stored = _read_file(config_path())
    if not stored.get("token"):
        return None
    stored.pop("token")
    return _write_file(stored)


def _write_file(data: dict[str, str]) -> Path:
    path = config_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    payload = json.dumps(data, indent=2)
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(payload + "\n")
    temp.replace(path)
    return path
