"""Rate limits with the ``limits`` library: in Redis when ``COFFER_REDIS_URL`` is set (so
every node shares the counters), in this process's memory otherwise.

Each rule is a named limit (``"10/minute"``) applied per key (an address, an identity, an
e-mail address). ``hit`` counts one request and raises RateLimited when the limit is
exceeded; ``check`` only asks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from coffer.domain.errors import ConfigError, RateLimited

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


class Throttle:
    """Counts requests against the rules and refuses those over a limit."""

    def __init__(self, rules: RateRules, storage_uri: str = "memory://") -> None:
        self.rules = rules
        self._limiter = FixedWindowRateLimiter(storage_from_string(storage_uri))

    def hit(self, rule: str, key: str, *, message: str | None = None) -> None:
        """Counts one request for ``key`` under ``rule``; raises RateLimited (with the seconds
        until the window resets) when that exceeds the limit."""
        item: RateLimitItem | None = getattr(self.rules, rule)
        if item is None:
            return
        if not self._limiter.hit(item, rule, key):
            raise self._limited(item, rule, key, message)

    def check(self, rule: str, key: str, *, message: str | None = None) -> None:
        """Raises RateLimited when ``key`` is already over ``rule``'s limit; counts nothing."""
        item: RateLimitItem | None = getattr(self.rules, rule)
        if item is None:
            return
        if not self._limiter.test(item, rule, key):
            raise self._limited(item, rule, key, message)

    def reset(self) -> None:
        """Forgets every counter (used by tests)."""
        self._limiter.storage.reset()

    def _limited(
        self, item: RateLimitItem, rule: str, key: str, message: str | None
    ) -> RateLimited:
        reset_at, _remaining = self._limiter.get_window_stats(item, rule, key)
        retry_after = int(reset_at - time.time()) + 1
        return RateLimited(
            message or f"too many requests; retry in {retry_after} seconds",
            retry_after=retry_after,
        )
