"""Request-scoped dependencies: the services, the runner for blocking calls, and the
authenticated caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from coffer.domain.access_requests import validate_reason
from coffer.domain.errors import AccessDenied, Unauthenticated
from coffer.domain.models import Actor, CallContext
from coffer.services.container import Services

P = ParamSpec("P")
R = TypeVar("R")


class BlockingRunner:
    """Runs a blocking service call from async code.

    On SQLite the call runs inline on the event loop: the database is a local file with one
    connection and one writer, so calls are short and serialised anyway, and a thread hop would
    only add latency. On PostgreSQL it runs in the thread pool so network round trips overlap.
    """

    def __init__(self, *, inline: bool) -> None:
        self.inline = inline

    async def __call__(self, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.inline:
            return func(*args, **kwargs)
        return await run_in_threadpool(func, *args, **kwargs)

    @staticmethod
    async def in_thread(func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Runs a CPU-heavy call (password hashing) in the thread pool on every backend, so
        the event loop keeps answering reads meanwhile."""
        return await run_in_threadpool(func, *args, **kwargs)


def get_runner(request: Request) -> BlockingRunner:
    """Returns the app's runner for blocking calls."""
    runner: BlockingRunner = request.app.state.runner
    return runner


def get_services(request: Request) -> Services:
    """Returns the services the app was built with."""
    services: Services = request.app.state.services
    return services


SESSION_COOKIE = "coffer_session"
CSRF_HEADER = "x-requested-with"
CSRF_VALUE = "coffer"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME_SITE = frozenset({"same-origin", "none"})


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated("the Authorization header must use the Bearer scheme")
    return token.strip() or None


def check_csrf(request: Request) -> None:
    """Refuses a cookie-authenticated change that a browser could have sent cross-site: it
    must carry ``X-Requested-With: coffer`` (a custom header, which a cross-site form or
    simple request cannot set) and must not be marked cross-site by ``Sec-Fetch-Site``."""
    if request.method in _SAFE_METHODS:
        return
    if request.headers.get(CSRF_HEADER, "").lower() != CSRF_VALUE:
        raise AccessDenied("cookie-authenticated changes need the header X-Requested-With: coffer")
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in _SAME_SITE:
        raise AccessDenied(f"cross-site request refused (Sec-Fetch-Site: {fetch_site})")


def call_context(request: Request, actor: Actor) -> CallContext:
    """The context of a request made by ``actor``, with the reason its ``reason`` query
    parameter states (raises InvalidInput naming ``reason`` when it breaks the rules of
    ``validate_reason``)."""
    reason = request.query_params.get("reason")
    return CallContext(
        actor=actor,
        source_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        reason=validate_reason(reason) if reason is not None else None,
    )


async def get_caller(request: Request) -> CallContext:
    """Authenticates the bearer token, or else the session cookie (checking CSRF for
    changes); raises Unauthenticated (401), AccessDenied (403) or RateLimited (429)."""
    services: Services = request.app.state.services
    runner: BlockingRunner = request.app.state.runner
    token = _bearer(request)
    from_cookie = False
    if token is None and SESSION_COOKIE in request.cookies:
        token, from_cookie = request.cookies[SESSION_COOKIE], True
        check_csrf(request)
    actor = await runner(services.auth.authenticate, token, from_cookie=from_cookie)
    services.throttle.hit("api_per_identity", actor.id)
    return call_context(request, actor)


Caller = Annotated[CallContext, Depends(get_caller)]
ServicesDep = Annotated[Services, Depends(get_services)]
Run = Annotated[BlockingRunner, Depends(get_runner)]
