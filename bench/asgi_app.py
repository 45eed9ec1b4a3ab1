"""An ASGI application factory for serving coffer under any ASGI server (benchmarks only).

``coffer server`` runs uvicorn with an application object; a server that starts several worker
processes (``uvicorn --workers 2``, ``granian --workers 2``, ``hypercorn -w 2``) needs an import
string instead, so that each worker builds its own app. ``app()`` builds it from the environment
(``COFFER_DIR``, ``COFFER_DATABASE_URL``, the rate limits...: ``Settings.from_env``) exactly as
``coffer server`` does: ``build_services`` then ``create_app``. The background jobs start and stop
with the ASGI lifespan (the FastAPI app inside does that); the services' connections are
released when the worker process exits. A sealed (Shamir) vault is not supported here.

    uvicorn --factory --app-dir bench asgi_app:app --workers 2
    granian --interface asgi --factory --working-dir bench asgi_app:app --workers 2
    hypercorn --worker-class uvloop -w 2 'asgi_app:app()'   # with bench/ on PYTHONPATH
"""

from __future__ import annotations

import atexit
import logging

from starlette.types import ASGIApp

from coffer.api.app import create_app
from coffer.bootstrap import build_services
from coffer.config import Settings


def app() -> ASGIApp:
    """Returns coffer's ASGI application over the vault the environment names."""
    settings = Settings.from_env()
    # as coffer server does: httpx logs each outbound URL at INFO (a webhook URL can hold a token)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    services = build_services(settings)
    atexit.register(services.close)
    return create_app(
        services,
        max_body_bytes=settings.max_body_bytes,
        trusted_proxies=settings.trusted_proxies,
    )
