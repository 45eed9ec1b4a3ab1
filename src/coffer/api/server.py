"""Runs the app under uvicorn with coffer's settings: address, TLS, logging."""

from __future__ import annotations

import logging
import os
import tempfile

from starlette.types import ASGIApp

from coffer.api.app import create_app
from coffer.api.sealed import SealedGate
from coffer.bootstrap import build_services
from coffer.config import Settings
from coffer.crypto.providers.configured import RootProviders
from coffer.domain.errors import ConfigError
from coffer.domain.root_keys import RootKeyRecord
from coffer.services.container import Services

_log = logging.getLogger("coffer.server")


def serve(services: Services, settings: Settings) -> None:
    """Serves the API until interrupted; HTTPS when the settings name a certificate and key.
    Raises ConfigError when the certificate or key cannot be read. With ``COFFER_WORKERS``
    above 1, ``services`` (built to check the vault opens) are closed and each worker
    process builds its own (``api.worker``)."""
    if settings.workers == 1:
        _run(app_of(services, settings), settings)
        return
    services.close()
    if settings.redis_url is None:
        _log.warning(
            "COFFER_WORKERS=%d without COFFER_REDIS_URL: each worker counts rate limits and "
            "login failures alone (a client may get %d times a limit); set COFFER_REDIS_URL "
            "to share them",
            settings.workers,
            settings.workers,
        )
    os.environ["COFFER_DIR"] = str(settings.directory)  # the workers' settings, as --dir gave
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="coffer-metrics-")
    _run("coffer.api.worker:create_worker_app", settings)


def app_of(services: Services, settings: Settings) -> ASGIApp:
    return create_app(
        services,
        max_body_bytes=settings.max_body_bytes,
        trusted_proxies=settings.trusted_proxies,
    )


def serve_sealed(settings: Settings, providers: RootProviders, record: RootKeyRecord) -> None:
    """Serves a vault whose root key is split into Shamir shares: sealed until `coffer
    unseal` gives enough of them, then the whole API (background jobs start then). Raises
    ConfigError for several workers (each would need the shares)."""
    if settings.workers > 1:
        raise ConfigError(
            "COFFER_WORKERS must be 1 for a vault sealed with Shamir shares (each worker "
            "would need the shares); run more nodes instead"
        )
    opened: list[Services] = []

    def open_app() -> ASGIApp:
        services = build_services(settings, providers)
        opened.append(services)
        services.background.start()
        return app_of(services, settings)

    try:
        _run(SealedGate(providers.shamir(), record, open_app), settings)
    finally:
        for services in opened:
            services.close()


def _run(app: ASGIApp | str, settings: Settings) -> None:
    import uvicorn

    check_tls_files(settings)
    # httpx logs each outbound URL at INFO; a webhook URL's path can hold a token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    uvicorn.run(
        app,
        factory=isinstance(app, str),
        workers=settings.workers if isinstance(app, str) else None,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        server_header=False,
        # coffer applies COFFER_TRUSTED_PROXIES itself; uvicorn must not rewrite the client.
        proxy_headers=False,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
    )


def server_address(settings: Settings) -> str:
    """The URL clients use to reach this server."""
    scheme = "https" if settings.tls_cert else "http"
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{scheme}://{host}:{settings.port}"


def check_tls_files(settings: Settings) -> None:
    """Raises ConfigError naming a TLS certificate or key file that is not there."""
    for path in (settings.tls_cert, settings.tls_key):
        if path is not None and not path.is_file():
            raise ConfigError(f"TLS file {path} does not exist or is not a file")
