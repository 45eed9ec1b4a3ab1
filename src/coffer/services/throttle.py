"""Rate limits with the ``limits`` library: in Redis when ``COFFER_REDIS_URL`` is set (so
every node shares the counters), in this process's memory otherwise.

When Redis cannot be reached the limits still hold, per node: counting falls back to this
process's memory (so across N nodes a client may get up to N times a limit), a warning is
logged once per outage, ``degraded`` is True (``/readyz`` shows Redis down), and Redis is
tried again every few seconds. Limits are never silently dropped.

Each rule is a named limit (``"10/minute"``) applied per key (an address, an identity, an
e-mail address). ``hit`` counts one request and raises RateLimited when the limit is
exceeded; ``check`` only asks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from coffer.domain.errors import ConfigError, RateLimited

_log = logging.getLogger("coffer.throttle")
OFF = "off"


def parse_rate(text: str, *, variable: str) -> RateLimitItem | None:
    """Returns the limit ``text`` means (``"10/minute"``, ``"5 per 15 minutes"``), or None for
    ``off``; raises ConfigError naming ``variable`` otherwise."""
    if text.strip().lower() == OFF:
        return None
    try:
        return parse(text)
    except ValueError:
        raise ConfigError(
            f"{variable} must be a rate such as 10/minute or 5 per 15 minutes, or off; got {text!r}"
        ) from None


@dataclass(frozen=True)
class RateRules:
    """The limits coffer applies; None switches a rule off."""

    api_per_ip: RateLimitItem | None
    api_per_identity: RateLimitItem | None
    login_per_ip: RateLimitItem | None
    login_failures_per_account: RateLimitItem | None


REDIS_TIMEOUT_SECONDS = 0.5
RETRY_REDIS_SECONDS = 5.0


class Throttle:
    """Counts requests against the rules and refuses those over a limit."""

    def __init__(self, rules: RateRules, storage_uri: str = "memory://") -> None:
        self.rules = rules
        self._local = FixedWindowRateLimiter(storage_from_string("memory://"))
        self._shared: FixedWindowRateLimiter | None = None
        if not storage_uri.startswith("memory://"):
            self._shared = FixedWindowRateLimiter(
                storage_from_string(
                    storage_uri,
                    socket_timeout=REDIS_TIMEOUT_SECONDS,
                    socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                )
            )
        self._shared_down_until = 0.0

    @property
    def degraded(self) -> bool:
        """True while the shared counters are unreachable and this node counts alone."""
        return self._shared is not None and time.monotonic() < self._shared_down_until

    @property
    def _limiter(self) -> FixedWindowRateLimiter:
        if self._shared is None or self.degraded:
            return self._local
        return self._shared

    def _count(self, item: RateLimitItem, rule: str, key: str, *, hit: bool) -> bool:
        limiter = self._limiter
        try:
            return limiter.hit(item, rule, key) if hit else limiter.test(item, rule, key)
        except Exception as exc:  # any Redis failure: count locally instead
            if limiter is self._local:
                raise
            _log.warning(
                "rate-limit counters in Redis unreachable (%s): counting on this node "
                "alone for %.0f s",
                type(exc).__name__,
                RETRY_REDIS_SECONDS,
            )
            self._shared_down_until = time.monotonic() + RETRY_REDIS_SECONDS
            return self._count(item, rule, key, hit=hit)

    def hit(self, rule: str, key: str, *, message: str | None = None) -> None:
        """Counts one request for ``key`` under ``rule``; raises RateLimited (with the seconds
        until the window resets) when that exceeds the limit."""
        item: RateLimitItem | None = getattr(self.rules, rule)
        if item is None:
            return
        if not self._count(item, rule, key, hit=True):
            raise self._limited(item, rule, key, message)

    def check(self, rule: str, key: str, *, message: str | None = None) -> None:
        """Raises RateLimited when ``key`` is already over ``rule``'s limit; counts nothing."""
        item: RateLimitItem | None = getattr(self.rules, rule)
        if item is None:
            return
        if not self._count(item, rule, key, hit=False):
            raise self._limited(item, rule, key, message)

    def reset(self) -> None:
        """Forgets every counter (used by tests)."""
        self._local.storage.reset()
        if self._shared is not None:
            self._shared.storage.reset()

    def _limited(
        self, item: RateLimitItem, rule: str, key: str, message: str | None
    ) -> RateLimited:
        try:
            reset_at, _remaining = self._limiter.get_window_stats(item, rule, key)
        except Exception:  # noqa: BLE001 - Redis went away in between: a window's length
            reset_at = time.time() + item.get_expiry()
        retry_after = int(reset_at - time.time()) + 1
        return RateLimited(
            message or f"too many requests; retry in {retry_after} seconds",
            retry_after=retry_after,
        )
