"""The client's address, believed from ``X-Forwarded-For`` only behind trusted proxies.

Rate limits, IP allow-lists and audit entries all use ``scope["client"]``. Behind a load
balancer that is the balancer's address, so this middleware replaces it with the real
client's: the right-most address in ``X-Forwarded-For`` that is not itself a trusted proxy.
When the direct peer is not a trusted proxy, the header is ignored (anyone can send it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from coffer.domain.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(items: Iterable[str]) -> tuple[Network, ...]:
    """Returns the networks named by ``COFFER_TRUSTED_PROXIES``; raises ConfigError."""
    networks: list[Network] = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"COFFER_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR network"
            ) from None
    return tuple(networks)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in net for net in networks)


def real_client(peer: str, forwarded_for: str | None, networks: tuple[Network, ...]) -> str:
    """Returns the client address for a request from ``peer`` carrying ``forwarded_for``."""
    if not networks or forwarded_for is None or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return hops[0] if hops else peer


class TrustedProxyMiddleware:
    """Rewrites ``scope["client"]`` from ``X-Forwarded-For`` and ``scope["scheme"]`` from
    ``X-Forwarded-Proto`` when a trusted proxy sent them (so cookies are ``Secure`` and HSTS
    is sent behind a TLS-terminating proxy)."""

    def __init__(self, app: ASGIApp, networks: tuple[Network, ...]) -> None:
        self.app = app
        self.networks = networks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(as_forwarded(scope, self.networks), receive, send)


def as_forwarded(scope: Scope, networks: tuple[Network, ...]) -> Scope:
    """Returns ``scope`` with ``client`` and ``scheme`` taken from ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` when a trusted proxy sent them; ``scope`` itself otherwise."""
    client = scope.get("client")
    if not (networks and scope["type"] == "http" and client and _trusted(client[0], networks)):
        return scope
    forwarded, proto = None, None
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded = value.decode("latin-1")
        elif name == b"x-forwarded-proto":
            proto = value.decode("latin-1").strip().lower()
    changes: dict[str, object] = {}
    if forwarded is not None:
        changes["client"] = (real_client(client[0], forwarded, networks), client[1])
    if proto in ("http", "https"):
        changes["scheme"] = proto
    return {**scope, **changes} if changes else scope
