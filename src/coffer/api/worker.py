"""The app of one server worker process when ``COFFER_WORKERS`` is above 1.

uvicorn starts each worker as a fresh process and calls ``create_worker_app`` there, so each
worker opens the vault itself (its own database pool, keys in its own memory, its own
caches) from the same ``COFFER_*`` environment as the parent. Workers share nothing in
memory: each is a node of its own, kept in step with the others exactly as separate
machines are (cache epochs, job leases, shared rate-limit counters).
"""

from __future__ import annotations

from starlette.types import ASGIApp


def create_worker_app() -> ASGIApp:
    """Builds this worker's services and app from the environment."""
    from coffer.api.server import app_of
    from coffer.bootstrap import build_services
    from coffer.config import Settings

    settings = Settings.from_env()
    return app_of(build_services(settings), settings)
