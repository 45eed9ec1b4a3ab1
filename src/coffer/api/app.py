"""The ASGI application: routes, error handlers and the body-size limit."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from coffer import __version__
from coffer.api import http_metrics
from coffer.api.body_limit import BodyLimitMiddleware
from coffer.api.client_address import TrustedProxyMiddleware, parse_trusted_proxies
from coffer.api.context import BlockingRunner
from coffer.api.errors import install_error_handlers
from coffer.api.hot_path import HotPathMiddleware
from coffer.api.rate_limit import RateLimitMiddleware
from coffer.api.routes import (
    access_requests,
    approvals,
    audit,
    auth,
    compliance,
    environments,
    ephemeral,
    exposures,
    inventory,
    key_rotation,
    machines,
    metrics,
    mfa,
    offboarding,
    projects,
    reports,
    reviews,
    rotation,
    secrets,
    shares,
    system,
    team,
    tokens,
    transfer,
    webhooks,
)
from coffer.api.security_headers import SecurityHeadersMiddleware
from coffer.services.container import Services


def create_fastapi(services: Services, *, inline_db: bool) -> FastAPI:
    """Returns the FastAPI app (OpenAPI at /openapi.json, docs at /docs) over ``services``."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Everything built so far lives as long as the server: keep it out of the garbage
        # collector's full passes, whose pause grows with the heap (tail latency).
        gc.collect()
        gc.freeze()
        services.background.start()
        try:
            yield
        finally:
            services.background.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="coffer",
        version=__version__,
        description="Self-hosted secrets manager. Authenticate with `Authorization: Bearer`.",
    )
    app.state.services = services
    app.state.runner = BlockingRunner(inline=inline_db)
    install_error_handlers(app)
    for module in (
        system,
        auth,
        tokens,
        team,
        machines,
        mfa,
        projects,
        key_rotation,
        environments,
        secrets,
        ephemeral,
        shares,
        transfer,
        audit,
        webhooks,
        exposures,
        reports,
        inventory,
        rotation,
        access_requests,
        approvals,
        reviews,
        offboarding,
        compliance,
        metrics,
    ):
        app.include_router(module.router)
    return app


def create_app(
    services: Services, *, max_body_bytes: int, trusted_proxies: tuple[str, ...] = ()
) -> ASGIApp:
    """Returns the app ready for an ASGI server. From the outside in: the HTTP metrics, the
    hot path of plain secret reads and writes (doing itself what the layers below would),
    the real client address (behind trusted proxies), protective headers, the per-address
    rate limit, the body-size limit, then FastAPI."""
    inline_db = services.engine.dialect.name == "sqlite"
    app = create_fastapi(services, inline_db=inline_db)
    proxies = parse_trusted_proxies(trusted_proxies)
    limited = RateLimitMiddleware(BodyLimitMiddleware(app, limit=max_body_bytes), services.throttle)
    stack = TrustedProxyMiddleware(SecurityHeadersMiddleware(limited), proxies)
    fast = HotPathMiddleware(
        stack, services, app.state.runner, proxies, max_body_bytes=max_body_bytes
    )
    return http_metrics.install(app, fast)  # outermost: times everything below
