"""The SSRF guard on webhook and HTTP sink URLs."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from coffer.audit.outbound import Resolver, check_outbound_url
from coffer.domain.errors import ConfigError, InvalidInput


def resolver(*addresses: str) -> Resolver:
    """A stand-in for DNS that answers every name with ``addresses``."""

    def resolve(host: str, port: int) -> Iterable[str]:
        if not addresses:
            raise OSError("no such host")
        return addresses

    return resolve


def refusal(url: str, allow: tuple[str, ...] = (), resolve: Resolver | None = None) -> str:
    """Returns the message of the InvalidInput (on field ``url``) that ``url`` is refused with."""
    with pytest.raises(InvalidInput) as caught:
        check_outbound_url(url, allow=allow, resolve=resolve)
    assert caught.value.field == "url"
    return caught.value.message


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.9.9.9", "a loopback address"),
        ("[::1]", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("[fd12::1]", "a private address"),
        ("169.254.1.1", "a link-local address"),
        ("[fe80::1]", "a link-local address"),
        ("0.0.0.0", "an unspecified address"),  # noqa: S104 - a target under test, not a bind
        ("0.1.2.3", "an unspecified address"),
        ("[::]", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("[ff02::1]", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("192.0.2.1", "a special-purpose address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("[fd00:ec2::254]", "a cloud metadata address"),
    ],
)
def test_refuses_each_address_class(host: str, kind: str) -> None:
    """A literal address of a non-public class is refused with the class and the way out."""
    address = host.strip("[]")
    assert refusal(f"http://{host}/hook") == (
        f"url: {address} is {kind}; add it to COFFER_OUTBOUND_ALLOW to permit it"
    )


@pytest.mark.parametrize(
    ("host", "embedded", "kind"),
    [
        ("::ffff:10.0.0.1", "10.0.0.1", "a private address"),
        ("::ffff:127.0.0.1", "127.0.0.1", "a loopback address"),
        ("2002:a9fe:a9fe::", "169.254.169.254", "a cloud metadata address"),
        ("64:ff9b::7f00:1", "127.0.0.1", "a loopback address"),
    ],
)
def test_refuses_ipv4_hidden_in_ipv6(host: str, embedded: str, kind: str) -> None:
    """IPv4-mapped, 6to4 and NAT64 addresses are judged by the IPv4 address they reach."""
    assert f"({embedded}) is {kind}" in refusal(f"https://[{host}]/")


def test_refuses_localhost_by_resolution() -> None:
    """``localhost`` is refused because it resolves to loopback."""
    message = refusal("http://localhost:8080/hook")
    assert message.startswith("url: localhost resolves to ")
    assert "a loopback address" in message


def test_refuses_a_name_when_any_address_is_private() -> None:
    """One private answer among public ones is enough to refuse a name."""
    message = refusal("https://hooks.example.com/", resolve=resolver("93.184.215.14", "10.9.8.7"))
    assert message == (
        "url: hooks.example.com resolves to 10.9.8.7, a private address; "
        "add it to COFFER_OUTBOUND_ALLOW to permit it"
    )


def test_refuses_metadata_host_name_without_resolving() -> None:
    """metadata.google.internal is refused by name, whatever it resolves to."""
    message = refusal("http://metadata.google.internal/computeMetadata/v1/", resolve=resolver())
    assert "metadata.google.internal is a cloud metadata service" in message


def test_unresolvable_host() -> None:
    """A host that does not resolve is refused with that reason."""
    assert refusal("https://nowhere.example/", resolve=resolver()) == (
        "url: host nowhere.example does not resolve"
    )


def test_public_address_passes() -> None:
    """A public name gives its host, port and the addresses it resolved to."""
    target = check_outbound_url(
        "https://hooks.example.com:8443/in", allow=(), resolve=resolver("93.184.215.14")
    )
    assert (target.host, target.port, target.addresses) == (
        "hooks.example.com",
        8443,
        ("93.184.215.14",),
    )
    assert target.url == "https://hooks.example.com:8443/in"


@pytest.mark.parametrize(
    ("url", "allow"),
    [
        ("http://127.0.0.1:9000/", ("127.0.0.1",)),
        ("http://10.20.30.40/", ("10.0.0.0/8",)),
        ("http://[fd12::1]/", ("fd00::/8",)),
        ("http://[::ffff:10.0.0.1]/", ("10.0.0.1",)),
        ("http://localhost:9000/", ("localhost",)),
        ("http://169.254.169.254/", ("169.254.169.254",)),
    ],
)
def test_allow_list_permits(url: str, allow: tuple[str, ...]) -> None:
    """An address, a network or a host name in the allow-list permits the target."""
    assert check_outbound_url(url, allow=allow).addresses


def test_allow_list_by_host_name_covers_its_private_addresses() -> None:
    """Naming a host permits whatever private addresses it resolves to."""
    target = check_outbound_url(
        "https://hooks.internal/", allow=("HOOKS.internal.",), resolve=resolver("10.0.0.5")
    )
    assert target.addresses == ("10.0.0.5",)


def test_allow_list_does_not_leak_to_other_addresses() -> None:
    """An allowed network permits nothing outside it."""
    assert "10.1.2.3 is a private address" in refusal("http://10.1.2.3/", ("192.168.0.0/16",))


def test_metadata_address_needs_an_exact_entry() -> None:
    """A network that merely contains the metadata address does not open it."""
    assert "cloud metadata" in refusal("http://169.254.169.254/", ("169.254.0.0/16",))
    assert "cloud metadata" in refusal("http://169.254.169.254/", ("0.0.0.0/0",))


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://example.com/", "url must start with http:// or https://"),
        ("file:///etc/passwd", "url must start with http:// or https://"),
        ("gopher://127.0.0.1:6379/_", "url must start with http:// or https://"),
        ("example.com/hook", "url must start with http:// or https://"),
        ("https://user:pw@example.com/", "url must not contain a user name or password"),
        ("https://user@example.com/", "url must not contain a user name or password"),
        ("https://example.com\\@127.0.0.1/", "url must not contain a user name or password"),
        ("https:///path", "url must name a host"),
        ("https://example.com:0/", "url: port must be between 1 and 65535"),
        ("https://example.com:65536/", "url: port must be between 1 and 65535"),
        ("https://example.com:http/", "url: port must be between 1 and 65535"),
        ("https://exa\nmple.com/", "url must not contain spaces or control characters"),
        ("https://exa mple.com/", "url must not contain spaces or control characters"),
        ("https://exa_mple..com/", "url: the host is not a valid host name"),
    ],
)
def test_malformed_urls(url: str, rule: str) -> None:
    """A URL that breaks a rule is refused before any lookup, naming the rule."""
    assert refusal(url, resolve=resolver("93.184.215.14")) == rule


@pytest.mark.parametrize("entry", ["", "10.0.0.1/8", "10.0.0.0/33", "not a host", "::g", "a/b"])
def test_bad_allow_entries(entry: str) -> None:
    """An allow-list entry that is no host, address or network is a configuration error
    naming the entry."""
    with pytest.raises(ConfigError) as caught:
        check_outbound_url("https://example.com/", allow=(entry,), resolve=resolver("1.1.1.1"))
    assert f"COFFER_OUTBOUND_ALLOW entry {entry!r}" in caught.value.message
