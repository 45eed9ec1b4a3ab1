"""Request-scoped dependencies: the services, the runner for blocking calls, and the
authenticated caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from coffer.domain.errors import Unauthenticated
from coffer.domain.models import CallContext
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


def get_runner(request: Request) -> BlockingRunner:
    """Returns the app's runner for blocking calls."""
    runner: BlockingRunner = request.app.state.runner
    return runner


def get_services(request: Request) -> Services:
    """Returns the services the app was built with."""
    services: Services = request.app.state.services
    return services


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated("the Authorization header must use the Bearer scheme")
    return token.strip() or None


async def get_caller(request: Request) -> CallContext:
    """Authenticates the bearer token; raises Unauthenticated (401) when it is not valid."""
    services: Services = request.app.state.services
    runner: BlockingRunner = request.app.state.runner
    actor = await runner(services.auth.authenticate, _bearer(request))
    return CallContext(
        actor=actor,
        source_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


Caller = Annotated[CallContext, Depends(get_caller)]
ServicesDep = Annotated[Services, Depends(get_services)]
Run = Annotated[BlockingRunner, Depends(get_runner)]
