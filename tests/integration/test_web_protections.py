"""Web protections seen from outside: security headers, the per-address and per-identity
rate limits (in memory and in a real Redis), and the trusted-proxy client address."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.api.app import create_app
from coffer.api.client_address import parse_trusted_proxies, real_client
from coffer.bootstrap import build_services
from coffer.config import Settings
from coffer.domain.errors import ConfigError, RateLimited
from coffer.services.throttle import RateRules, Throttle, parse_rate
from coffer.storage.tables import audit_log
from tests.conftest import Vault

REDIS_URL = os.environ.get("COFFER_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _client(
    vault: Vault, settings: Settings, trusted_proxies: tuple[str, ...] = ()
) -> Iterator[TestClient]:
    services = build_services(settings)
    app = create_app(
        services, max_body_bytes=settings.max_body_bytes, trusted_proxies=trusted_proxies
    )
    headers = {"Authorization": f"Bearer {vault.token}"}
    try:
        with TestClient(app, headers=headers, client=("10.0.0.5", 50000)) as client:
            yield client
    finally:
        services.close()


def test_api_responses_carry_security_headers(api: TestClient) -> None:
    """Every API answer forbids framing, sniffing, referrers and caching."""
    response = api.get("/api/v1/projects")
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers


def test_errors_and_health_carry_headers_too(api: TestClient) -> None:
    """A 404 and /healthz get the same protection (the docs page a looser CSP)."""
    for path in ("/api/v1/nope", "/healthz"):
        assert "frame-ancestors 'none'" in api.get(path).headers["content-security-policy"]
    docs = api.get("/docs")
    assert "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


def test_hsts_only_under_tls(vault: Vault) -> None:
    """Strict-Transport-Security is sent on HTTPS requests only."""
    app = create_app(vault.services, max_body_bytes=vault.settings.max_body_bytes)
    with TestClient(app, base_url="https://127.0.0.1") as client:
        hsts = client.get("/healthz").headers["strict-transport-security"]
    assert hsts.startswith("max-age=")


def test_per_address_limit_answers_429_with_retry_after(vault: Vault) -> None:
    """Over COFFER_RATE_LIMIT_IP the API answers 429 with Retry-After; /healthz is spared."""
    settings = vault.settings.with_overrides(rate_limit_ip="3/minute")
    for client in _client(vault, settings):
        statuses = [client.get("/api/v1/projects").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = client.get("/api/v1/projects")
        assert limited.json()["error"]["code"] == "rate_limited"
        # The minute's window opened at the first request, moments ago.
        assert 50 <= int(limited.headers["retry-after"]) <= 61
        assert (
            f"retry in {limited.headers['retry-after']} seconds"
            in limited.json()["error"]["message"]
        )
        assert client.get("/healthz").status_code == 200


def test_per_identity_limit_covers_the_hot_read_path(vault: Vault) -> None:
    """Plain secret reads count against the identity's limit like every other request."""
    settings = vault.settings.with_overrides(rate_limit_identity="3/minute")
    for client in _client(vault, settings):
        assert client.post("/api/v1/projects", json={"name": "app"}).status_code == 201
        path = "/api/v1/projects/app/environments/development/secrets/k"
        assert client.put(path, json={"value": "v"}).status_code == 200
        assert client.get(path).status_code == 200
        limited = client.get(path)
        assert limited.status_code == 429
        assert "retry-after" in limited.headers


def test_bad_rate_setting_is_refused_at_start(vault: Vault) -> None:
    """A rate limit that does not parse stops start-up naming the variable."""
    with pytest.raises(ConfigError, match="COFFER_RATE_LIMIT_IP"):
        build_services(vault.settings.with_overrides(rate_limit_ip="lots"))


def test_redis_counters_are_shared_between_throttles() -> None:
    """Two throttles on one Redis (two nodes) share the count, so a limit holds across nodes."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Redis tests: no Redis at {REDIS_URL}")
        pytest.skip(f"Redis backend not tested: no Redis at {REDIS_URL}")
    rules = RateRules(
        api_per_ip=parse_rate("3/minute", variable="X"),
        api_per_identity=None,
        login_per_ip=None,
        login_failures_per_account=None,
    )
    node_a, node_b = Throttle(rules, REDIS_URL), Throttle(rules, REDIS_URL)
    key = f"203.0.113.{uuid.uuid4().int % 250}-{uuid.uuid4().hex}"
    node_a.hit("api_per_ip", key)
    node_b.hit("api_per_ip", key)
    node_a.hit("api_per_ip", key)
    with pytest.raises(RateLimited) as limited:
        node_b.hit("api_per_ip", key)
    assert limited.value.retry_after >= 1


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("10.0.0.5", "198.51.100.7", ["10.0.0.0/8"], "198.51.100.7"),
        ("10.0.0.5", "203.0.113.9, 198.51.100.7, 10.0.0.4", ["10.0.0.0/8"], "198.51.100.7"),
        ("192.0.2.1", "198.51.100.7", ["10.0.0.0/8"], "192.0.2.1"),
        ("10.0.0.5", "198.51.100.7", [], "10.0.0.5"),
        ("10.0.0.5", "not-an-ip", ["10.0.0.0/8"], "10.0.0.5"),
    ],
)
def test_real_client_believes_only_trusted_proxies(
    peer: str, forwarded: str, trusted: list[str], expected: str
) -> None:
    """X-Forwarded-For is used only when the direct peer is a trusted proxy, right to left."""
    assert real_client(peer, forwarded, parse_trusted_proxies(trusted)) == expected


def test_forwarded_address_reaches_the_audit_log(vault: Vault) -> None:
    """Behind a trusted proxy the audit entry records the real client, not the proxy."""
    for client in _client(vault, vault.settings, trusted_proxies=("10.0.0.0/8",)):
        response = client.post(
            "/api/v1/projects", json={"name": "app"}, headers={"X-Forwarded-For": "198.51.100.7"}
        )
        assert response.status_code == 201
    with vault.services.engine.connect() as conn:
        ips = (
            conn.execute(
                sa.select(audit_log.c.source_ip).where(audit_log.c.action == "project.created")
            )
            .scalars()
            .all()
        )
    assert ips == ["198.51.100.7"]


def test_bad_trusted_proxy_setting_is_a_config_error() -> None:
    """A proxy entry that is not an address or network is refused, naming the variable."""
    with pytest.raises(ConfigError, match="COFFER_TRUSTED_PROXIES"):
        parse_trusted_proxies(["proxy.example"])


def test_forwarded_proto_from_a_trusted_proxy_makes_cookies_secure(vault: Vault) -> None:
    """Behind a TLS-terminating trusted proxy, HSTS is sent; an untrusted peer's claim is
    ignored."""
    for client in _client(vault, vault.settings, trusted_proxies=("10.0.0.0/8",)):
        proxied = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert "strict-transport-security" in proxied.headers
    for client in _client(vault, vault.settings, trusted_proxies=("192.0.2.0/24",)):
        spoofed = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert "strict-transport-security" not in spoofed.headers
