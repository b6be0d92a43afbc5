"""Token-bucket rate limits, kept in the gateway process (each replica limits on its own).

Anonymous callers are limited per client address. Carriers' callbacks and the payment provider's notifications come
from a few addresses carrying every merchant's traffic, so they are limited by the caller they name instead: the
callback path (one per carrier or provider), with a budget sized for a whole platform's lunch rush.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucketLimiter:
    def __init__(
        self, rate: float, burst: int, *, max_keys: int = 100_000, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.now = now
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> int | None:
        """Spends one token for `key`; returns None if allowed, else the seconds to wait (for Retry-After)."""
        now = self.now()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return None if allowed else max(1, math.ceil((1.0 - tokens) / self.rate))


class AdmissionLimits:
    """Which bucket a request spends from: the callback's own caller, or the client address."""

    def __init__(
        self, ip: TokenBucketLimiter, callback: TokenBucketLimiter, is_callback: Callable[[str], bool]
    ) -> None:
        self.ip = ip
        self.callback = callback
        self.is_callback = is_callback

    def take(self, path: str, client_address: str) -> tuple[int | None, str]:
        """Spends one token; returns the seconds to wait (None if allowed) and who was limited, for the problem."""
        if self.is_callback(path):
            return self.callback.take(path), "Too many callbacks from this caller"
        return self.ip.take(client_address), "Too many requests from this address"
