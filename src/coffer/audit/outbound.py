"""The SSRF guard for URLs coffer sends to on a user's behalf (webhooks, HTTP audit sinks).

``check_outbound_url`` refuses a URL whose host is, or resolves to, anything but a public
address: loopback, private, link-local, carrier-grade NAT, unspecified, multicast, reserved
and other special-purpose ranges, the same inside IPv4-mapped, 6to4 and NAT64 IPv6 addresses,
and cloud metadata services. The operator opens exceptions with an allow-list
(``COFFER_OUTBOUND_ALLOW``) of host names, addresses and CIDR networks.

A check holds only for the moment it was made: DNS can answer differently a second later
(DNS rebinding). Callers must check again right before every send, and should connect to one
of ``OutboundTarget.addresses`` rather than resolve the name a second time.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from coffer.domain.errors import ConfigError, InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Iterable[str]]

ALLOW_VARIABLE = "COFFER_OUTBOUND_ALLOW"
_FIELD = "url"
_HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*"
                        r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)  # fmt: skip

_METADATA_NAMES = frozenset({"metadata.google.internal"})
# AWS/GCP/Azure/OpenStack IMDS, AWS over IPv6, Alibaba Cloud, Azure WireServer.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "168.63.129.16")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_PRIVATE = tuple(
    ipaddress.ip_network(text)
    for text in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA = "a cloud metadata address"


@dataclass(frozen=True)
class OutboundTarget:
    """A URL that passed ``check_outbound_url``: its host (lower case, no brackets), port and
    the addresses the host resolved to at that moment. Valid only until the next send: check
    again before each one (DNS rebinding)."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class OutboundAllowList:
    """Parsed allow-list entries: host names (lower case, no trailing dot) and networks (a
    single address is a /32 or /128 network)."""

    names: frozenset[str]
    networks: tuple[IPNetwork, ...]

    def permits_name(self, host: str) -> bool:
        """True when ``host`` is named by a host-name entry."""
        return host.rstrip(".").lower() in self.names

    def permits_address(self, address: IPAddress, *, exact: bool = False) -> bool:
        """True when an entry's network holds ``address``; with ``exact``, only an entry for
        that one address counts."""
        return any(
            address in network and (not exact or network.num_addresses == 1)
            for network in self.networks
            if network.version == address.version
        )


def parse_allow_list(entries: Iterable[str]) -> OutboundAllowList:
    """Returns the allow-list of ``entries`` (host names, IP addresses or CIDR networks such as
    ``hooks.internal``, ``127.0.0.1``, ``10.0.0.0/8``). Raises ConfigError naming the first
    entry that is none of these (or a network with host bits set)."""
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for raw in entries:
        entry = raw.strip()
        try:
            networks.append(ipaddress.ip_network(entry))
            continue
        except ValueError:
            pass
        if "/" not in entry and ":" not in entry and _HOST_NAME.fullmatch(entry.rstrip(".")):
            names.add(entry.rstrip(".").lower())
            continue
        raise ConfigError(
            f"{ALLOW_VARIABLE} entry {entry!r} is not a host name, an IP address or a CIDR "
            "network (without host bits)"
        )
    return OutboundAllowList(frozenset(names), tuple(networks))


def check_outbound_url(
    url: str, *, allow: tuple[str, ...], resolve: Resolver | None = None
) -> OutboundTarget:
    """Returns the target of ``url`` when coffer may send to it.

    The URL must be http or https with a host, no user name or password, a port in 1..65535
    and no spaces or control characters. Its host is resolved (``resolve`` defaults to
    ``socket.getaddrinfo``) and every address must be public, unless ``allow`` names the host
    or holds the address. Cloud metadata addresses are permitted only by an entry for that
    exact address. Raises InvalidInput on field ``url`` naming the rule that was broken,
    including when the host does not resolve; raises ConfigError for a bad ``allow`` entry."""
    allowed = parse_allow_list(allow)
    host, port = _split(url)
    if host in _METADATA_NAMES and not allowed.permits_name(host):
        raise _refused(f"{host} is a cloud metadata service")
    addresses = _addresses(host, port, resolve or _getaddrinfo)
    named = allowed.permits_name(host)
    for address in addresses:
        judged = _judged(address)
        reason = _forbidden_reason(judged)
        if reason is None or _excepted(allowed, named, reason, {address, judged}):
            continue
        shown = str(address) if judged == address else f"{address} ({judged})"
        if _ip(host) is None:
            raise _refused(f"{host} resolves to {shown}, {reason}")
        raise _refused(f"{shown} is {reason}")
    return OutboundTarget(url, host, port, tuple(str(address) for address in addresses))


def _excepted(
    allowed: OutboundAllowList, named: bool, reason: str, addresses: set[IPAddress]
) -> bool:
    if reason == _METADATA:
        return any(allowed.permits_address(address, exact=True) for address in addresses)
    return named or any(allowed.permits_address(address) for address in addresses)


def _split(url: str) -> tuple[str, int]:
    if any(char <= " " or char == "\x7f" for char in url):
        raise InvalidInput("url must not contain spaces or control characters", field=_FIELD)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidInput("url must start with http:// or https://", field=_FIELD)
    if "@" in parts.netloc:
        raise InvalidInput("url must not contain a user name or password", field=_FIELD)
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidInput("url must name a host", field=_FIELD)
    if _ip(host) is None and not _valid_host_name(host):
        raise InvalidInput("url: the host is not a valid host name", field=_FIELD)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        return host, 443 if scheme == "https" else 80
    if not 1 <= port <= 65535:
        raise InvalidInput("url: port must be between 1 and 65535", field=_FIELD)
    return host, port


def _valid_host_name(host: str) -> bool:
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return _HOST_NAME.fullmatch(ascii_host) is not None


def _addresses(host: str, port: int, resolve: Resolver) -> list[IPAddress]:
    literal = _ip(host)
    if literal is not None:
        return [literal]
    try:
        texts = list(resolve(host, port))
    except (OSError, UnicodeError):
        texts = []
    addresses = [address for address in map(_ip, texts) if address is not None]
    if not addresses:
        raise InvalidInput(f"url: host {host} does not resolve", field=_FIELD)
    return addresses


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _judged(address: IPAddress) -> IPAddress:
    """Returns the address that ``address`` reaches: the IPv4 address embedded in an
    IPv4-mapped, 6to4 or NAT64 address, else ``address`` without its IPv6 scope."""
    if not isinstance(address, ipaddress.IPv6Address):
        return address
    bare = ipaddress.IPv6Address(int(address))
    return _embedded_ipv4(bare) or bare


def _forbidden_reason(address: IPAddress) -> str | None:
    """Returns why ``address`` may not be sent to ("a private address", ...), or None when it
    is public."""
    if address in _METADATA_ADDRESSES:
        return _METADATA
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified or address in _THIS_NETWORK:
        return "an unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _CGNAT:
        return "a carrier-grade NAT address"
    if any(address in network for network in _PRIVATE if network.version == address.version):
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "a special-purpose address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _refused(rule: str) -> InvalidInput:
    return InvalidInput(
        f"url: {rule}; add it to {ALLOW_VARIABLE} to permit it",
        field=_FIELD,
    )
