"""Request-scoped dependencies: the services, and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from coffer.domain.errors import Unauthenticated
from coffer.domain.models import CallContext
from coffer.services.container import Services


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


def get_caller(request: Request) -> CallContext:
    """Authenticates the bearer token; raises Unauthenticated (401) when it is not valid."""
    services: Services = request.app.state.services
    actor = services.auth.authenticate(_bearer(request))
    return CallContext(
        actor=actor,
        source_ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


Caller = Annotated[CallContext, Depends(get_caller)]
ServicesDep = Annotated[Services, Depends(get_services)]
